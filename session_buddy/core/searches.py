"""Ways of asking memory that the tools offer on top of :meth:`MemoryService.search`.

No MCP in here.

* :func:`search_favouring` - a hybrid search that puts hits with code (or about errors)
  first: it searches four times wider, then moves the hits matching :data:`FAVOURED`'s
  pattern ahead of the others, each group keeping its order.
* :func:`summarise` - what a search found, counted: relevant hits (confidence high or
  medium) by kind and project, their time span, the best few excerpts.
* :func:`items_in_span` - the items of a time span, newest first, as hits (score 1.0,
  confidence high, the full content), for a time-range question without a query.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from session_buddy.core.memory import MemoryService, SearchHit, SearchResponse
from session_buddy.core.temporal import TimeRange

__all__ = ["FAVOURED", "Favour", "items_in_span", "search_favouring", "summarise"]

Favour = Literal["code", "errors"]
#: how many hits a search may return at most (the tools' limit)
MAX_LIMIT = 100

CODE_RE = re.compile(r"```|^\s{4}\S|\bdef |\bclass |\bfunction\b|=>|;\s*$|\{\s*$", re.M)
ERROR_RE = re.compile(
    r"error|exception|traceback|failed|failure|panic|segfault|errno|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\bE\d{3,}\b",
    re.I,
)
FAVOURED: dict[Favour, re.Pattern[str]] = {"code": CODE_RE, "errors": ERROR_RE}


async def search_favouring(
    memory: MemoryService, query: str, favour: Favour, *, project: str | None, limit: int
) -> SearchResponse:
    """Search wider, then put hits matching the pattern first (stable within each group);
    the answer has no further page."""
    pattern = FAVOURED[favour]
    wide = await memory.search(
        query, projects=[project] if project else None, limit=min(MAX_LIMIT, limit * 4)
    )
    matching = [h for h in wide.hits if pattern.search(h.content)]
    others = [h for h in wide.hits if not pattern.search(h.content)]
    wide.hits = (matching + others)[:limit]
    wide.has_more = False
    return wide


def summarise(query: str, found: SearchResponse) -> dict[str, Any]:
    """Counts of what a search found (module doc)."""
    relevant = [h for h in found.hits if h.confidence in ("high", "medium")]
    by_kind: dict[str, int] = {}
    by_project: dict[str, int] = {}
    for h in relevant:
        by_kind[h.kind] = by_kind.get(h.kind, 0) + 1
        key = h.project or "(none)"
        by_project[key] = by_project.get(key, 0) + 1
    dates = sorted(h.created_at.isoformat() for h in relevant)
    return {
        "query": query,
        "confidence": found.confidence,
        "relevant": len(relevant),
        "weak": len(found.hits) - len(relevant),
        "by_kind": by_kind,
        "by_project": by_project,
        "first": dates[0] if dates else None,
        "last": dates[-1] if dates else None,
        "top": [
            {
                "id": h.id,
                "kind": h.kind,
                "project": h.project,
                "excerpt": h.content[:240],
                "confidence": h.confidence,
            }
            for h in (relevant or found.hits)[:5]
        ],
        "degraded": found.degraded,
    }


async def items_in_span(
    memory: MemoryService, span: TimeRange, *, project: str | None, limit: int
) -> SearchResponse:
    """The items of a time span, newest first, as hits (module doc)."""
    items = await memory.list_recent(
        projects=[project] if project else None,
        after=span.after,
        before=span.before,
        limit=limit,
    )
    hits = [SearchHit.of(i, None, score=1.0, fused_score=1.0, confidence="high") for i in items]
    return SearchResponse(hits=hits, mode="list", confidence="high" if hits else "none")
