"""Recurring patterns and useful insights across related projects (``get_project_insights``).

No MCP in here. **Useful insights**: the reflections and insights of related projects
(the current one left out), by tier weight x recency (a 30-day half-life). **Recurring
patterns**: items of two or more projects (the current one included) that share an
identifier (an error code such as ``ERR_CONN_4021``, an exception name such as
``ConnectionResetError``, an errno such as ``ECONNREFUSED``) or whose texts are
near-duplicates (cosine >= 0.80 of their embeddings), linked transitively.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from session_buddy.adapters.embeddings._base import EmbeddingsBase
from session_buddy.adapters.storage._base import MemoryItem, utcnow
from session_buddy.errors import EmbeddingError

#: usefulness of an insight halves every this many days
INSIGHT_HALF_LIFE_DAYS = 30.0
#: near-duplicate threshold for recurring patterns (all-MiniLM-L6-v2 cosine)
PATTERN_COSINE = 0.80

#: identifiers that make two items "the same problem": error codes, exception names, errnos
_IDENTIFIER = re.compile(
    r"\b(?:[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]"  # ERR_CONN_4021, SQLITE_BUSY
    r"|[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning|Fault)"  # ConnectionResetError
    r"|E[A-Z]{4,}"  # ECONNREFUSED, ENOENT-like errnos
    r"|[A-Z]{1,4}\d{3,5})\b"  # E1101, TS2345, HTTP-ish codes with a prefix
)
#: identifiers too common to mean anything on their own
_COMMON_IDENTIFIERS = frozenset({"Error", "Exception", "Warning", "TODO_", "EOF"})


def identifiers(text: str) -> set[str]:
    """Distinctive identifiers of a text (error codes, exception names, errnos)."""
    return {m for m in _IDENTIFIER.findall(text) if m not in _COMMON_IDENTIFIERS}


def rank_useful(
    items: list[MemoryItem],
    tiers: dict[str, tuple[str, float]],
    canonical: Callable[[MemoryItem], str],
    now: datetime | None = None,
) -> list[tuple[float, MemoryItem]]:
    """(usefulness, item) of the items of related projects (``tiers``: project -> (tier,
    weight); the current tier left out), most useful first, then newest."""
    now = now or utcnow()
    useful: list[tuple[float, MemoryItem]] = []
    for item in items:
        tier = tiers.get(canonical(item))
        if tier is None or tier[0] == "current":
            continue
        age_days = max(0.0, (now - item.created_at).total_seconds() / 86400)
        recency = 0.5 ** (age_days / INSIGHT_HALF_LIFE_DAYS)
        useful.append((tier[1] * recency, item))
    useful.sort(key=lambda u: (-u[0], -u[1].created_at.timestamp()))
    return useful


async def _vectors(emb: EmbeddingsBase, texts: list[str]) -> np.ndarray | None:
    if not texts or emb.state == "disabled" or not emb.available:
        return None
    try:
        return np.asarray(await emb.embed(texts), dtype=np.float32)
    except EmbeddingError:
        return None


async def recurring_patterns(
    items: list[MemoryItem], canonical: Callable[[MemoryItem], str], embeddings: EmbeddingsBase
) -> list[dict[str, Any]]:
    """Groups of items from two or more projects about the same thing."""
    if len({canonical(i) for i in items}) < 2:
        return []
    parent = list(range(len(items)))
    evidence: dict[int, set[str]] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def link(a: int, b: int, why: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
            evidence.setdefault(ra, set()).update(evidence.pop(rb, set()))
        evidence.setdefault(find(a), set()).add(why)

    first_with: dict[str, int] = {}
    for index, item in enumerate(items):
        for ident in sorted(identifiers(item.content)):
            if ident in first_with:
                other = first_with[ident]
                if canonical(items[other]) != canonical(item) or find(other) != find(index):
                    link(other, index, f"shared identifier {ident}")
            else:
                first_with[ident] = index
    vectors = await _vectors(embeddings, [i.content[:2000] for i in items])
    if vectors is not None:
        sims = vectors @ vectors.T
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                cos = float(sims[a, b])
                if cos >= PATTERN_COSINE and canonical(items[a]) != canonical(items[b]):
                    link(a, b, f"similar text (cosine {cos:.2f})")
    clusters: dict[int, list[int]] = {}
    for index in range(len(items)):
        clusters.setdefault(find(index), []).append(index)
    out: list[dict[str, Any]] = []
    for root, members in clusters.items():
        projects = sorted({canonical(items[i]) for i in members})
        if len(projects) < 2:
            continue
        newest = max(members, key=lambda i: items[i].created_at)
        out.append(
            {
                "summary": items[newest].content[:300],
                "projects": projects,
                "evidence": sorted(evidence.get(root, set()))[:10],
                "items": [
                    {
                        "id": items[i].id,
                        "project": canonical(items[i]),
                        "excerpt": items[i].content[:200],
                        "created_at": items[i].created_at.isoformat(),
                    }
                    for i in sorted(members, key=lambda i: items[i].created_at, reverse=True)
                ][:10],
            }
        )
    out.sort(key=lambda p: (-len(p["projects"]), -len(p["items"])))
    return out
