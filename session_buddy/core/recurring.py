"""Patterns across sessions: recurring errors, files that keep breaking, topics that come back.

* **Recurring errors**: error signatures (:mod:`session_buddy.core.errorfix`) seen in two or
  more sessions, with how often they were fixed and the last fix.
* **Files that keep breaking**: files in fixes, and the files of failing tests (error records
  and stored test runs), in two or more sessions.
* **Topics that come back**: the project's insights and reflections clustered by their stored
  vectors (average-linkage agglomerative clustering, merging while the mean cosine of two
  clusters is at least :data:`TOPIC_COSINE`); a topic is a cluster of two or more items from
  two or more sessions (or days, for items without a session), named by its most central item.

Reads only what is stored (no embedding at answer time). No MCP in here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from session_buddy.adapters.storage._base import (
    Access,
    ItemFilter,
    MemoryItem,
    Record,
    StorageBase,
)
from session_buddy.core.errorfix import ErrorMemory, fix_view
from session_buddy.core.failures import file_of_test, one_line
from session_buddy.core.testresults import COLLECTION as TEST_RESULTS

#: mean cosine (all-MiniLM-L6-v2) above which two clusters are one topic
TOPIC_COSINE = 0.55
#: insights and reflections clustered (newest first)
TOPIC_ITEMS = 500
#: sessions (of errors or files) that make a pattern
MIN_SESSIONS = 2


def cluster(vectors: np.ndarray, threshold: float = TOPIC_COSINE) -> list[list[int]]:
    """Average-linkage clusters of L2-normalised row vectors (each a list of row numbers,
    largest first): clusters merge while their mean pairwise cosine is >= ``threshold``.
    Each row's nearest cluster is kept, so a merge costs O(n), not a search of the matrix."""
    n = len(vectors)
    if n == 0:
        return []
    sims = (vectors @ vectors.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    sizes = np.ones(n)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    best, nearest = sims.max(axis=1), sims.argmax(axis=1)
    while len(members) > 1:
        a = int(np.argmax(best))
        if best[a] < threshold:
            break
        b = int(nearest[a])
        merged = (sizes[a] * sims[a] + sizes[b] * sims[b]) / (sizes[a] + sizes[b])
        sims[a], sims[:, a] = merged, merged
        sims[b], sims[:, b] = -np.inf, -np.inf
        sims[a, a] = -np.inf
        sizes[a] += sizes[b]
        members[a] += members.pop(b)
        best[b] = -np.inf
        # rows whose nearest was a or b look again (a merge never brings clusters closer
        # than the nearer of the two); every row may now find a nearer than before
        stale = np.flatnonzero((nearest == a) | (nearest == b))
        best[stale], nearest[stale] = sims[stale].max(axis=1), sims[stale].argmax(axis=1)
        closer = sims[:, a] > best
        best[closer], nearest[closer] = sims[closer, a], a
        best[b] = -np.inf
    return sorted(members.values(), key=len, reverse=True)


def recurring_errors(records: Sequence[Record], limit: int) -> tuple[list[dict[str, Any]], int]:
    """Signatures seen in two or more sessions, most sessions first; and how many there are."""
    by_signature: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_signature[str(record.data.get("signature"))].append(record)
    found = []
    for signature, group in by_signature.items():
        sessions = {r.data.get("session_id") for r in group}
        if len(sessions) < MIN_SESSIONS:
            continue
        fixed = [r for r in group if r.status == "fixed"]
        last = max(group, key=lambda r: str(r.data.get("last_seen") or ""))
        entry: dict[str, Any] = {
            "error": signature,
            "sessions": len(sessions),
            "occurrences": sum(int(r.data.get("occurrences") or 1) for r in group),
            "fixed": len(fixed),
            "last_seen": last.data.get("last_seen"),
        }
        projects = sorted({r.project for r in group if r.project})
        if len(projects) > 1:
            entry["projects"] = projects
        if fixed:
            newest = max(fixed, key=lambda r: str(r.data.get("fixed_at") or ""))
            fix = fix_view(newest)
            entry["last_fix"] = {
                "fixed_by": one_line(str(fix.get("fixed_by") or ""), 160),
                "files": (fix.get("files") or [])[:3],
            }
        found.append(entry)
    found.sort(key=lambda e: (e["sessions"], e["occurrences"], str(e["last_seen"])), reverse=True)
    return found[:limit], len(found)


def breaking_files(
    records: Sequence[Record], runs: Sequence[Record], limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Files in fixes or failing tests in two or more sessions; and how many there are."""
    sessions: dict[str, set[str]] = defaultdict(set)
    fixes: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for record in records:
        session = str(record.data.get("session_id"))
        for path in record.data.get("files") or []:
            sessions[path].add(session)
            fixes[path] += 1
        test_file = file_of_test(str(record.data.get("signature") or ""))
        if test_file:
            sessions[test_file].add(str(record.data.get("sb_session") or session))
            failures[test_file] += 1
    for run in runs:
        for test in run.data.get("failing") or []:
            if "::" in str(test):
                path = str(test).split("::", 1)[0]
                sessions[path].add(str(run.data.get("session_id")))
                failures[path] += 1
    ranked = sorted(
        (p for p, s in sessions.items() if len(s) >= MIN_SESSIONS),
        key=lambda p: (len(sessions[p]), fixes[p] + failures[p]),
        reverse=True,
    )
    found = [
        {
            "file": p,
            "sessions": len(sessions[p]),
            "in_fixes": fixes[p],
            "failing_tests": failures[p],
        }
        for p in ranked
    ]
    return found[:limit], len(found)


def topics(
    items: Sequence[MemoryItem], vectors: dict[str, np.ndarray], limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Clusters of items that come back in two or more sessions; and how many there are."""
    kept = [i for i in items if i.id in vectors]
    if len(kept) < 2:
        return [], 0
    raw = np.stack([vectors[i.id] for i in kept]).astype(np.float32)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    matrix = (raw / np.where(norms == 0, 1, norms)).astype(np.float32)
    found = []
    for rows in cluster(matrix):
        group = [kept[r] for r in rows]
        when = {i.session_id or i.created_at.date().isoformat() for i in group}
        if len(group) < 2 or len(when) < MIN_SESSIONS:
            continue
        centre = matrix[rows].mean(axis=0)
        central = group[int(np.argmax(matrix[rows] @ centre))]
        found.append(
            {
                "topic": one_line(central.content, 160),
                "items": len(group),
                "sessions": len(when),
                "kinds": dict(Counter(i.kind for i in group)),
                "first": min(i.created_at for i in group).isoformat(),
                "last": max(i.created_at for i in group).isoformat(),
                "ids": [i.id for i in sorted(group, key=lambda i: i.created_at, reverse=True)][:3],
            }
        )
    found.sort(key=lambda t: (t["sessions"], t["items"], t["last"]), reverse=True)
    return found[:limit], len(found)


async def find_patterns(
    storage: StorageBase,
    project: str | None,
    since: datetime | None,
    limit: int = 5,
    access: Access | None = None,
) -> dict[str, Any]:
    """Recurring errors, files that keep breaking and topics that come back (``limit`` of
    each, with the totals), from the errors and items ``access`` lets through (None: all)."""
    authors = None if access is None else access.authors
    records = await ErrorMemory(storage, authors=authors).records(project, since)
    runs = [
        r
        for r in await storage.list_records(TEST_RESULTS, project=project, limit=2000)
        if since is None or r.created_at >= since
    ]
    flt = ItemFilter(
        projects=[project] if project else None,
        kinds=["insight", "reflection"],
        after=since,
        access=access,
    )
    items = await storage.list_items(flt, limit=TOPIC_ITEMS, newest_first=True)
    vectors = await storage.get_vectors([i.id for i in items])
    errors, n_errors = recurring_errors(records, limit)
    files, n_files = breaking_files(records, runs, limit)
    found_topics, n_topics = topics(items, vectors, limit)
    return {
        "project": project,
        "since": since.isoformat() if since else None,
        "recurring_errors": errors,
        "breaking_files": files,
        "topics": found_topics,
        "totals": {
            "recurring_errors": n_errors,
            "breaking_files": n_files,
            "topics": n_topics,
            "errors_recorded": len(records),
            "fixed": sum(1 for r in records if r.status == "fixed"),
            "items_clustered": len(vectors),
        },
    }
