"""The typed state of sessions and checkpoints, and their storage in ``records``.

Collections:

- ``sessions``: one :class:`SessionState` per session (``status`` active|ended, ``project`` =
  project name);
- ``quality``: one :class:`CheckpointEntry` per checkpoint (the score history of a project,
  newest first).

The stored JSON keeps the keys older versions wrote (``data.ended_at`` is an ISO string...),
and keys this version does not know are kept as they were (``extra``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from session_buddy.adapters.storage._base import Record, StorageBase
from session_buddy.errors import NotFound, ValidationError

SESSIONS = "sessions"
QUALITY = "quality"
STATUSES = ("active", "ended")


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


#: data keys stored as ISO time strings
_TIMES = ("last_checkpoint_at", "ended_at")
#: fields that are columns of the record, not keys of its data
_COLUMNS = ("id", "project", "status", "started_at", "updated_at", "extra")


@dataclass
class SessionState:
    """One session (a ``sessions`` record)."""

    id: str
    project: str | None = None
    status: str = "active"
    started_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    name: str | None = None
    project_path: str | None = None
    working_directory: str | None = None
    checkpoints: int = 0
    message_count: int = 0
    last_score: int | None = None
    last_checkpoint_at: datetime | None = None
    ended_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None  # start | hook | api
    claimed: bool = True  # a hook-opened session not yet adopted by `start` is unclaimed
    origin_adopted_by: str | None = None
    claude_session_id: str | None = None
    transcript_path: str | None = None
    handoff_path: str | None = None
    client: str | None = None  # the key of the client that opened or adopted it
    start_head: str | None = None  # the commit checked out when it began (git only)
    owner: str | None = None  # who opened it (None: stored before owners, the install's user)
    extra: dict[str, Any] = field(default_factory=dict)

    def owned_by(self, mine: frozenset[str | None] | None) -> bool:
        """Whether one of the owners ``mine`` owns it (None: anyone may see it)."""
        return mine is None or self.owner in mine

    @property
    def active(self) -> bool:
        return self.status == "active"

    @classmethod
    def new(cls, **values: Any) -> SessionState:
        at = values.pop("started_at", None) or now()
        return cls(id=uuid.uuid4().hex, started_at=at, updated_at=at, **values)

    @classmethod
    def from_record(cls, record: Record) -> SessionState:
        d = dict(record.data)
        metadata = d.pop("metadata", None)
        return cls(
            id=record.id,
            project=record.project,
            status=record.status or "active",
            started_at=record.created_at,
            updated_at=record.updated_at,
            name=_str(d.pop("name", None)),
            project_path=_str(d.pop("project_path", None)),
            working_directory=_str(d.pop("working_directory", None)),
            checkpoints=_int(d.pop("checkpoints", 0)),
            message_count=_int(d.pop("message_count", 0)),
            last_score=_opt_int(d.pop("last_score", None)),
            last_checkpoint_at=parse_time(d.pop("last_checkpoint_at", None)),
            ended_at=parse_time(d.pop("ended_at", None)),
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
            origin=_str(d.pop("origin", None)),
            claimed=bool(d.pop("claimed", True)),
            origin_adopted_by=_str(d.pop("origin_adopted_by", None)),
            claude_session_id=_str(d.pop("claude_session_id", None)),
            transcript_path=_str(d.pop("transcript_path", None)),
            handoff_path=_str(d.pop("handoff_path", None)),
            client=_str(d.pop("client", None)),
            start_head=_str(d.pop("start_head", None)),
            owner=_str(d.pop("owner", None)) or None,
            extra=d,
        )

    def to_record(self) -> Record:
        data: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name in _COLUMNS:
                continue
            value = getattr(self, f.name)
            data[f.name] = iso(value) if f.name in _TIMES else value
        data["metadata"] = dict(self.metadata)
        return Record(
            collection=SESSIONS,
            id=self.id,
            data=data,
            project=self.project,
            status=self.status,
            created_at=self.started_at,
            updated_at=self.updated_at,
        )

    def view(self, at: datetime | None = None) -> dict[str, Any]:
        """The public shape of a session (what the tools answer)."""
        end = self.ended_at or at or now()
        return {
            "id": self.id,
            "name": self.name,
            "project": self.project,
            "project_path": self.project_path,
            "status": self.status,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_s": round((end - self.started_at).total_seconds()),
            "last_checkpoint_at": iso(self.last_checkpoint_at),
            "checkpoints": self.checkpoints,
            "last_score": self.last_score,
            "message_count": self.message_count,
            "metadata": dict(self.metadata),
            "origin": self.origin,
            "claude_session_id": self.claude_session_id,
            "handoff_path": self.handoff_path,
        }


@dataclass
class CheckpointEntry:
    """One checkpoint (a ``quality`` record): the score and what it was made of."""

    id: str
    session_id: str | None
    project: str | None
    at: datetime
    name: str | None = None
    score: int | None = None
    previous_score: int | None = None
    delta: int | None = None
    quality: dict[str, Any] = field(default_factory=dict)  # QualityScore.to_dict()
    git_commit: dict[str, Any] | None = None

    @property
    def recommendations(self) -> list[str]:
        return list(self.quality.get("recommendations") or [])

    @classmethod
    def from_record(cls, record: Record) -> CheckpointEntry:
        d = record.data
        quality = d.get("quality")
        commit = d.get("git_commit")
        return cls(
            id=record.id,
            session_id=_str(d.get("session_id")),
            project=record.project,
            at=record.created_at,
            name=_str(d.get("name")),
            score=_opt_int(d.get("score")),
            previous_score=_opt_int(d.get("previous_score")),
            delta=_opt_int(d.get("delta")),
            quality=dict(quality) if isinstance(quality, dict) else {},
            git_commit=dict(commit) if isinstance(commit, dict) else None,
        )

    def to_record(self) -> Record:
        return Record(
            collection=QUALITY,
            id=self.id,
            project=self.project,
            data={
                "session_id": self.session_id,
                "name": self.name,
                "score": self.score,
                "previous_score": self.previous_score,
                "delta": self.delta,
                "quality": self.quality,
                "git_commit": self.git_commit,
            },
            created_at=self.at,
            updated_at=self.at,
        )


class SessionStore:
    """Typed access to the ``sessions`` and ``quality`` collections (their one writer)."""

    def __init__(self, storage: StorageBase) -> None:
        self.storage = storage

    async def find(self, session_id: str) -> SessionState | None:
        record = await self.storage.get_record(SESSIONS, session_id)
        return SessionState.from_record(record) if record is not None else None

    async def get(self, session_id: str, mine: frozenset[str | None] | None = None) -> SessionState:
        """The session; ``mine``: only one with one of these owners (None: any). Another
        owner's session answers exactly like an unknown id (it does not reveal it exists)."""
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValidationError("session_id must be a non-empty string")
        found = await self.find(session_id.strip())
        if found is None or not found.owned_by(mine):
            raise NotFound(
                f"No session with id {session_id!r} (list_sessions shows the existing ones)"
            )
        return found

    async def add(self, state: SessionState) -> SessionState:
        await self.storage.put_record(state.to_record())
        return state

    async def change(
        self, session_id: str, change: Callable[[SessionState], SessionState | None]
    ) -> SessionState:
        """Read, change and write one session as one step (no update lost to another
        writer). ``change`` returns the new state, or None to write nothing."""

        def step(current: Record | None) -> Record | None:
            if current is None:
                raise NotFound(f"No session with id {session_id!r}")
            changed = change(SessionState.from_record(current))
            if changed is None:
                return None
            return replace(changed, updated_at=now()).to_record()

        record = await self.storage.modify_record(SESSIONS, session_id, step)
        if record is None:
            raise NotFound(f"No session with id {session_id!r}")
        return SessionState.from_record(record)

    async def delete(self, session_id: str) -> None:
        await self.storage.delete_record(SESSIONS, session_id)

    async def page(
        self,
        *,
        project: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[SessionState]:
        records = await self.storage.list_records(
            SESSIONS, project=project, status=status, limit=limit, offset=offset
        )
        return [SessionState.from_record(r) for r in records]

    async def owned_page(
        self,
        mine: frozenset[str | None] | None,
        *,
        project: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[SessionState], int | None]:
        """Up to ``limit`` sessions with one of the owners ``mine`` (None: any), newest first
        from position ``offset`` of all of them, and the position to go on from (None: no
        more). Read page by page: another user's newer sessions do not take their places."""
        if mine is None:
            states = await self.page(project=project, status=status, limit=limit + 1, offset=offset)
            return states[:limit], offset + limit if len(states) > limit else None
        found: list[SessionState] = []
        batch = max(limit + 1, 200)
        while True:
            states = await self.page(project=project, status=status, limit=batch, offset=offset)
            for n, state in enumerate(states):
                if state.owned_by(mine):
                    if len(found) == limit:
                        return found, offset + n
                    found.append(state)
            if len(states) < batch:
                return found, None
            offset += len(states)

    async def by_claude_id(self, claude_id: str) -> SessionState | None:
        offset = 0
        while True:
            page = await self.page(limit=200, offset=offset)
            for state in page:
                if state.claude_session_id == claude_id:
                    return state
            if len(page) < 200:
                return None
            offset += 200

    async def add_checkpoint(self, entry: CheckpointEntry) -> None:
        await self.storage.put_record(entry.to_record())

    async def checkpoints(
        self, project: str | None, *, limit: int = 1, newest_first: bool = True
    ) -> list[CheckpointEntry]:
        records = await self.storage.list_records(
            QUALITY, project=project, limit=limit, newest_first=newest_first
        )
        return [CheckpointEntry.from_record(r) for r in records]

    async def last_checkpoint(self, state: SessionState) -> CheckpointEntry | None:
        """The latest checkpoint of the session's project (of the session without one)."""
        if state.project:
            found = await self.checkpoints(state.project, limit=1)
            return found[0] if found else None
        mine = [c for c in await self.checkpoints(None, limit=50) if c.session_id == state.id]
        return mine[0] if mine else None
