"""What each dashboard page shows, read through the same core services as the tools.

Every function here takes the query parameters of its page and returns the template's
context (plain dicts and lists); :mod:`session_buddy.server.dashboard.routes` renders them.
Nothing here writes: the changes (edit, delete, undo, mark) are in the routes, one core call
each.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from session_buddy import __version__, di
from session_buddy.adapters.storage._base import KINDS, ItemFilter, MemoryItem, StorageBase
from session_buddy.core.memory import MemoryService
from session_buddy.core.temporal import parse_datetime
from session_buddy.errors import SessionBuddyError, ValidationError

PAGE_SIZE = 25
SEARCH_LIMIT = 20
MODES = ("hybrid", "semantic", "keyword")
#: tags the "mark" buttons add (and remove again)
MARKS = ("wrong", "outdated")
#: the project list of the filters is read at most this often (a count by project of a
#: large store is the slowest thing a page would do)
PROJECTS_TTL_S = 10.0


@dataclass
class Filters:
    """The filters of the search and memories pages, as given (strings, "" for none)."""

    q: str = ""
    project: str = ""
    kind: str = ""
    tags: str = ""
    after: str = ""
    before: str = ""
    mode: str = "hybrid"
    page: int = 1

    @classmethod
    def of(cls, params: Any) -> Filters:
        def text(name: str) -> str:
            return str(params.get(name) or "").strip()[:500]

        try:
            page = max(1, min(100_000, int(params.get("page") or 1)))
        except ValueError:
            page = 1
        mode = text("mode") or "hybrid"
        return cls(
            q=text("q"),
            project=text("project"),
            kind=text("kind") if text("kind") in KINDS else "",
            tags=text("tags"),
            after=text("after"),
            before=text("before"),
            mode=mode if mode in MODES else "hybrid",
            page=page,
        )

    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.tags.split(",") if t.strip()]

    def time(self, name: str) -> datetime | None:
        value = getattr(self, name)
        if not value:
            return None
        try:
            return parse_datetime(value)
        except ValidationError:
            raise ValidationError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


_projects: tuple[float, list[str]] = (0.0, [])


async def project_names() -> list[str]:
    """The stored projects (for the filters), cached for :data:`PROJECTS_TTL_S`."""
    global _projects
    if time.monotonic() - _projects[0] < PROJECTS_TTL_S:
        return _projects[1]
    stats = await di.get(StorageBase).stats()
    names = sorted(p for p in stats.by_project if p)
    _projects = (time.monotonic(), names)
    return names


def source_of(item: MemoryItem | Any) -> dict[str, Any]:
    """Where an item came from: transcript file and line, session."""
    meta = item.metadata or {}
    transcript = meta.get("transcript")
    return {
        "transcript": str(transcript) if transcript else None,
        "transcript_name": Path(str(transcript)).name if transcript else None,
        "line": meta.get("line"),
        "session_id": item.session_id,
        "source": meta.get("source"),
    }


def item_view(item: MemoryItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "content": item.content,
        "project": item.project,
        "session_id": item.session_id,
        "role": item.role,
        "tags": list(item.tags),
        "author": item.author,
        "created_at": item.created_at.isoformat(timespec="seconds"),
        "updated_at": item.updated_at.isoformat(timespec="seconds"),
        "marks": [m for m in MARKS if m in item.tags],
        "source": source_of(item),
        "metadata": json.dumps(item.metadata, indent=1, default=str)[:2000],
    }


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


async def search_page(f: Filters) -> dict[str, Any]:
    """The search as the agent searches (MemoryService.search: hybrid, access rules, decay),
    with every hit's full text and its source."""
    out: dict[str, Any] = {"filters": f, "hits": [], "response": None, "error": None}
    out["projects"], out["kinds"], out["modes"] = await project_names(), KINDS, MODES
    if not f.q:
        return out
    memory = di.get(MemoryService)
    try:
        response = await memory.search(
            f.q,
            projects=[f.project] if f.project else None,
            kinds=[f.kind] if f.kind else None,
            tags=f.tag_list() or None,
            after=f.time("after"),
            before=f.time("before"),
            mode=f.mode,  # type: ignore[arg-type]
            limit=SEARCH_LIMIT,
            offset=(f.page - 1) * SEARCH_LIMIT,
        )
    except SessionBuddyError as exc:
        out["error"] = str(exc)
        return out
    full = {i.id: i for i in await memory.storage.get_items([h.id for h in response.hits])}
    for hit in response.hits:
        item = full.get(hit.id)
        view = item_view(item) if item is not None else {"id": hit.id, "content": hit.content}
        view.update(
            score=_score(hit.score),
            fused=_score(hit.fused_score),
            semantic=_score(hit.semantic_score),
            keyword=_score(hit.keyword_score),
            confidence=hit.confidence,
        )
        out["hits"].append(view)
    out["response"] = {
        "mode": response.mode,
        "confidence": response.confidence,
        "degraded": response.degraded,
        "has_more": response.has_more,
    }
    return out


async def memories_page(f: Filters) -> dict[str, Any]:
    """Memories by project and kind, newest first, a page at a time (what the acting user
    may see)."""
    memory = di.get(MemoryService)
    projects = [f.project] if f.project else None
    kinds = [f.kind] if f.kind else None
    tags = f.tag_list() or None
    access = await memory.access()
    items, total = await asyncio.gather(
        memory.list_recent(
            projects=projects,
            kinds=kinds,
            tags=tags,
            limit=PAGE_SIZE,
            offset=(f.page - 1) * PAGE_SIZE,
        ),
        memory.storage.count_items(
            ItemFilter(projects=projects, kinds=kinds, tags=tags, access=access)
        ),
    )
    return {
        "filters": f,
        "items": [item_view(i) for i in items],
        "total": total,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "projects": await project_names(),
        "kinds": KINDS,
    }


async def memory_page(item_id: str) -> dict[str, Any]:
    item = await di.get(MemoryService).get(item_id)
    return {"item": item_view(item), "marks": MARKS}


async def live_fragment() -> dict[str, Any]:
    """The newest memories and checkpoints (polled by every page)."""
    memory = di.get(MemoryService)
    storage = di.get(StorageBase)
    items, checkpoints = await asyncio.gather(
        memory.list_recent(limit=5), storage.list_records("quality", limit=3)
    )
    access = await memory.access()
    return {
        "items": [item_view(i) for i in items if access is None or access.allows(i.author, i.id)],
        "checkpoints": [
            {
                "at": r.created_at.isoformat(timespec="seconds"),
                "project": r.project,
                "score": r.data.get("score"),
                "session_id": r.data.get("session_id"),
                "name": r.data.get("name"),
            }
            for r in checkpoints
        ],
    }


def service_facts() -> dict[str, Any]:
    """This process: version, pid, uptime."""
    from session_buddy.server.dashboard import STARTED

    return {"version": __version__, "pid": os.getpid(), "uptime_s": time.time() - STARTED}
