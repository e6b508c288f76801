"""What a session produced, read from the memory items: its messages and reflections."""

from __future__ import annotations

from datetime import datetime

from session_buddy.adapters.storage._base import Access, ItemFilter, MemoryItem, StorageBase
from session_buddy.core.quality import SessionActivity
from session_buddy.core.sessions.state import SessionState

REFLECTION_KINDS = ["reflection", "insight"]
PAGE = 500


def messages_filter(state: SessionState, access: Access | None = None) -> ItemFilter:
    """The session's messages that ``access`` lets through (None: all)."""
    return ItemFilter(session_id=state.id, kinds=["conversation"], access=access)


async def all_messages(
    storage: StorageBase, state: SessionState, access: Access | None = None
) -> list[MemoryItem]:
    """Every message of the session ``access`` lets through (None: all), oldest first."""
    messages: list[MemoryItem] = []
    offset = 0
    while True:
        page = await storage.list_items(
            messages_filter(state, access), limit=PAGE, offset=offset, newest_first=False
        )
        messages += page
        if len(page) < PAGE:
            return messages
        offset += PAGE


async def reflection_count(
    storage: StorageBase, state: SessionState, access: Access | None = None
) -> int:
    """Reflections and insights of the session (or of its project since it began) that
    ``access`` lets through (None: all)."""
    by_session = await storage.count_items(
        ItemFilter(session_id=state.id, kinds=REFLECTION_KINDS, access=access)
    )
    if not state.project:
        return by_session
    by_project = await storage.count_items(
        ItemFilter(
            projects=[state.project], kinds=REFLECTION_KINDS, after=state.started_at, access=access
        )
    )
    return max(by_session, by_project)


async def session_reflections(
    storage: StorageBase, state: SessionState, limit: int = 50, access: Access | None = None
) -> list[MemoryItem]:
    """Reflections and insights stored in the session, or in its project since it began;
    those ``access`` lets through (None: all; on a shared store the project's include a
    teammate's)."""
    seen: dict[str, MemoryItem] = {}
    flt = ItemFilter(session_id=state.id, kinds=REFLECTION_KINDS, access=access)
    for item in await storage.list_items(flt, limit=limit):
        seen[item.id] = item
    if state.project:
        flt = ItemFilter(
            projects=[state.project], kinds=REFLECTION_KINDS, after=state.started_at, access=access
        )
        for item in await storage.list_items(flt, limit=limit):
            seen.setdefault(item.id, item)
    return sorted(seen.values(), key=lambda i: i.created_at)


async def session_activity(
    storage: StorageBase, state: SessionState, at: datetime, access: Access | None = None
) -> SessionActivity:
    last = state.last_checkpoint_at or state.started_at
    return SessionActivity(
        messages=await storage.count_items(messages_filter(state, access)),
        reflections=await reflection_count(storage, state, access),
        seconds_since_checkpoint=max(0.0, (at - last).total_seconds()),
        checkpoints=state.checkpoints,
    )
