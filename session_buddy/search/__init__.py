"""Search: the in-process keyword (BM25) and vector indexes, and hybrid fusion.

:class:`SearchIndex` is what the memory and DuckDB storage backends keep beside their data
(rebuilt at start, updated with every write); :mod:`.hybrid` fuses the rankers' answers and
rates their confidence for any backend.
"""

from __future__ import annotations

from session_buddy.search.index import IndexEntry, SearchIndex
from session_buddy.search.tokens import query_terms, tokenize

__all__ = ["IndexEntry", "SearchIndex", "query_terms", "tokenize"]
