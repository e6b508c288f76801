"""The session-records API (for integrations): sessions as containers of messages.

Messages are conversations in memory (searchable, in the session's project); reflections are
memory items too, and stay when a session is deleted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from session_buddy.adapters.storage._base import MemoryItem
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.project import ProjectInfo
from session_buddy.core.sessions.activity import (
    all_messages,
    messages_filter,
    session_reflections,
)
from session_buddy.core.sessions.current import CurrentSessions
from session_buddy.core.sessions.owners import SessionOwners, own_access
from session_buddy.core.sessions.state import STATUSES, SessionState, SessionStore, iso
from session_buddy.errors import ValidationError

MESSAGE_ROLES = ("user", "assistant", "system")
EXPORT_FORMATS = ("json", "markdown")
MAX_PAGE = 500


def page_offset(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    try:
        offset = int(cursor)
    except ValueError:
        raise ValidationError(
            f"cursor {cursor!r} is not valid; pass the next_cursor of a previous answer"
        ) from None
    if offset < 0:
        raise ValidationError("cursor must not be negative")
    return offset


def page_limit(limit: int, maximum: int = MAX_PAGE) -> int:
    if limit < 1 or limit > maximum:
        raise ValidationError(f"limit must be between 1 and {maximum}, not {limit}")
    return limit


def message_view(item: MemoryItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "role": item.role,
        "content": item.content,
        "created_at": iso(item.created_at),
        "metadata": item.metadata,
    }


def _reflection_view(item: MemoryItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "content": item.content,
        "tags": item.tags,
        "created_at": iso(item.created_at),
    }


def render_export_markdown(
    view: dict[str, Any],
    messages: list[MemoryItem],
    reflections: list[MemoryItem],
    checkpoints: list[dict[str, Any]],
) -> str:
    """A session as a Markdown document (a pure function of what ``export`` gathered)."""
    last = view["last_score"]
    lines = [
        f"# Session {view['name'] or view['id']}",
        "",
        f"- id: `{view['id']}`",
        f"- project: {view['project'] or '-'}",
        f"- status: {view['status']}",
        f"- started: {view['started_at']}"
        + (f"; ended: {view['ended_at']}" if view["ended_at"] else ""),
        f"- last score: {last if last is not None else '-'}",
    ]
    if view["metadata"]:
        lines.append(f"- metadata: `{json.dumps(view['metadata'], ensure_ascii=False)}`")
    lines += ["", "## Messages", ""]
    for m in messages:
        lines += [f"### {m.role or 'message'} · {iso(m.created_at)}", "", m.content, ""]
    if not messages:
        lines += ["_No messages._", ""]
    lines += ["## Reflections", ""]
    lines += [f"- `{r.id}`: {' '.join(r.content.split())[:300]}" for r in reflections] or [
        "_None._"
    ]
    lines += ["", "## Checkpoints", ""]
    lines += [
        f"- {c['at']}: {c['score']}/100 ({c['name'] or 'checkpoint'})" for c in checkpoints
    ] or ["_None._"]
    return "\n".join(lines) + "\n"


@dataclass
class SessionPage:
    sessions: list[SessionState]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": [s.view() for s in self.sessions], "next_cursor": self.next_cursor}


@dataclass
class MessagePage:
    session_id: str
    messages: list[MemoryItem]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "messages": [message_view(i) for i in self.messages],
            "next_cursor": self.next_cursor,
        }


@dataclass
class AddedMessage:
    id: str
    session_id: str
    created: bool
    embedded: bool
    message_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeletedSession:
    session_id: str
    messages_deleted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "deleted": True,
            "messages_deleted": self.messages_deleted,
        }


@dataclass
class SessionExport:
    session_id: str
    format: str
    content: str
    messages: int
    reflections: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SessionRecords:
    def __init__(
        self, store: SessionStore, memory: MemoryService, current: CurrentSessions
    ) -> None:
        self.store = store
        self.memory = memory
        self.current = current
        self.owners = SessionOwners(memory)

    async def _mine(self, session_id: str) -> SessionState:
        """The session, if the caller may see it: another user's answers like an unknown id."""
        return await self.store.get(session_id, self.owners.mine())

    async def create_session(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        project: ProjectInfo | None = None,
        folder: str | None = None,
    ) -> SessionState:
        """A session record (origin ``api``). ``project``: the analysed project of a remote
        caller's ``working_directory`` (``folder``), whose checkpoints analyse it and whose
        end writes the handoff for it; else ``metadata["project"]`` names one, or none."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("name must be a non-empty string")
        metadata = dict(metadata or {})
        named = metadata.get("project") if isinstance(metadata.get("project"), str) else None
        state = SessionState.new(
            name=name.strip(),
            project=project.name if project else named,
            project_path=project.path if project else None,
            working_directory=folder if project else None,
            metadata=metadata,
            origin="api",
            owner=self.owners.creator(),
        )
        return await self.store.add(state)

    async def get_session(self, session_id: str) -> SessionState:
        """The session, with its message count counted from the stored messages (those the
        caller may see)."""
        state = await self._mine(session_id)
        access = await self.memory.access()
        count = await self.store.storage.count_items(messages_filter(state, access))
        return replace(state, message_count=count)

    async def update_session(
        self, session_id: str, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> SessionState:
        if name is not None and not name.strip():
            raise ValidationError("name must not be empty")
        state = await self._mine(session_id)

        def change(s: SessionState) -> SessionState:
            merged = dict(s.metadata)
            for key, value in (metadata or {}).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return replace(s, name=name.strip() if name is not None else s.name, metadata=merged)

        return await self.store.change(state.id, change)

    async def list_sessions(
        self,
        project: str | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SessionPage:
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        limit = page_limit(limit)
        offset = page_offset(cursor)
        page, more = await self.store.owned_page(
            self.owners.mine(), project=project, status=status, limit=limit, offset=offset
        )
        return SessionPage(page, str(more) if more is not None else None)

    async def delete_session(self, session_id: str) -> DeletedSession:
        """Delete the session and its messages the caller owns (with access control, a
        teammate's message, even one shared with the caller's team, stays theirs)."""
        state = await self._mine(session_id)
        storage = self.store.storage
        owned = messages_filter(state, own_access(await self.memory.access()))
        deleted = 0
        while True:
            batch = await storage.list_items(owned, limit=500)
            if not batch:
                break
            count = await storage.delete_items([i.id for i in batch])
            deleted += count
            if count == 0:
                break
        await self.store.delete(state.id)
        self.current.forget_session(state.id)
        return DeletedSession(state.id, deleted)

    async def add_message(self, session_id: str, role: str, content: str) -> AddedMessage:
        if role not in MESSAGE_ROLES:
            raise ValidationError(f"role must be one of {', '.join(MESSAGE_ROLES)}, not {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ValidationError("content must be non-empty text")
        state = await self._mine(session_id)
        item = ItemInput(
            content=content,
            kind="conversation",
            role=role,
            session_id=state.id,
            project=state.project,
        )
        stored = (await self.memory.store([item]))[0]
        if stored.created:
            state = await self.store.change(
                state.id, lambda s: replace(s, message_count=s.message_count + 1)
            )
        return AddedMessage(
            stored.id, state.id, stored.created, stored.embedded, state.message_count
        )

    async def get_messages(
        self, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> MessagePage:
        state = await self._mine(session_id)
        limit = page_limit(limit)
        offset = page_offset(cursor)
        items = await self.store.storage.list_items(
            messages_filter(state, await self.memory.access()),
            limit=limit + 1,
            offset=offset,
            newest_first=False,
        )
        more = len(items) > limit
        return MessagePage(state.id, items[:limit], str(offset + limit) if more else None)

    async def export_session(self, session_id: str, format: str = "json") -> SessionExport:
        if format not in EXPORT_FORMATS:
            raise ValidationError(
                f"format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}"
            )
        state = await self._mine(session_id)
        access = await self.memory.access()
        messages = await all_messages(self.store.storage, state, access)
        reflections = await session_reflections(self.store.storage, state, limit=500, access=access)
        checkpoints = [
            {"id": c.id, "at": iso(c.at), "name": c.name, "score": c.score, "delta": c.delta}
            for c in await self.store.checkpoints(state.project, limit=500, newest_first=False)
            if c.session_id == state.id
        ]
        view = state.view()
        if format == "json":
            document = {
                "session": view,
                "messages": [message_view(m) for m in messages],
                "reflections": [_reflection_view(r) for r in reflections],
                "checkpoints": checkpoints,
            }
            content = json.dumps(document, ensure_ascii=False, indent=2)
        else:
            content = render_export_markdown(view, messages, reflections, checkpoints)
        return SessionExport(state.id, format, content, len(messages), len(reflections))
