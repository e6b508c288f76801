"""Snippets: a short piece of a hit's text, centred on the words of the query it matches.

A compact search answer shows each hit as a snippet of about ``SNIPPET_CHARS`` characters
instead of its whole content: the window of the content that holds the most of the query's
terms (compared as the keyword ranker compares them: lowercased, stemmed, identifiers whole
and by their parts), widened to whole words, its whitespace collapsed, with ``…`` where text
was left out. A content without a matching word gives its beginning.
"""

from __future__ import annotations

import re

from session_buddy.search.tokens import query_terms, tokenize

__all__ = ["SNIPPET_CHARS", "snippet"]

SNIPPET_CHARS = 240
#: how far into a content matching words are looked for
SCAN_CHARS = 50_000
_WORD = re.compile(r"\w+(?:(?:[.\-/\\:]+|::)\w+)*")


def _matches(text: str, terms: set[str]) -> list[int]:
    """Where words of ``text`` that share a term with the query start (each distinct word
    tokenised once: a long content repeats its words)."""
    matching: dict[str, bool] = {}
    found: list[int] = []
    for m in _WORD.finditer(text):
        word = m.group()
        hit = matching.get(word)
        if hit is None:
            hit = matching[word] = not terms.isdisjoint(tokenize(word))
        if hit:
            found.append(m.start())
    return found


def _best_start(positions: list[int], width: int) -> int:
    """The start of the window of ``width`` holding the most positions (the first such)."""
    best, best_count, j = positions[0], 0, 0
    for i, start in enumerate(positions):
        while positions[j] < start - width // 2:
            j += 1
        count = i - j + 1
        if count > best_count:
            best, best_count = positions[j], count
    return best


def snippet(content: str, query: str, chars: int = SNIPPET_CHARS) -> str:
    """About ``chars`` characters of ``content`` around the query's matching words."""
    text = " ".join(content[:SCAN_CHARS].split())
    if len(text) <= chars and len(content) <= SCAN_CHARS:
        return text
    terms = set(query_terms(query)) if query.strip() else set()
    positions = _matches(text, terms) if terms else []
    if not positions:
        start = 0
    else:
        centre = _best_start(positions, chars)
        start = max(0, min(centre - chars // 3, len(text) - chars))
        if start > 0:  # widen to a whole word
            space = text.rfind(" ", 0, start + 1)
            start = space + 1 if space >= 0 and start - space < 30 else start
    end = min(len(text), start + chars)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start + chars // 2 else end
    piece = text[start:end].strip()
    more = end < len(text) or len(content) > SCAN_CHARS
    return f"{'…' if start > 0 else ''}{piece}{'…' if more else ''}"
