"""SessionService: the one entry point the tools use, over the parts of this package.

It wires the parts (typed state and its store, the current session of each client, the
lifecycle, the brief and handoff documents, the records API, the hook spool) and applies
spooled hook events before each lifecycle call. Its dependencies arrive through
:meth:`SessionService.from_container`; it writes ``sessions`` and ``quality`` records and
reports to ``projects`` records through
:class:`~session_buddy.core.project_records.ProjectRecords`, the one write path
``ProjectService`` uses too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from session_buddy.adapters.storage._base import StorageBase
from session_buddy.core.capture import CaptureService
from session_buddy.core.events import EventBus, bus_from
from session_buddy.core.memory import MemoryService
from session_buddy.core.project import analyze_project
from session_buddy.core.project_records import ProjectRecords
from session_buddy.core.sessions.brief import Brief, HandoffDocs
from session_buddy.core.sessions.current import CurrentSessions, client_context
from session_buddy.core.sessions.lifecycle import (
    CheckpointResult,
    EndNotes,
    EndResult,
    Lifecycle,
    StatusResult,
)
from session_buddy.core.sessions.records import (
    AddedMessage,
    DeletedSession,
    MessagePage,
    SessionExport,
    SessionPage,
    SessionRecords,
)
from session_buddy.core.sessions.spool import SpoolApplier
from session_buddy.core.sessions.state import SessionState, SessionStore
from session_buddy.errors import ConfigurationError, ValidationError
from session_buddy.paths import SessionPaths
from session_buddy.settings import SessionBuddySettings


@dataclass
class SessionOptions:
    """Settings of the lifecycle (``settings.sessions``)."""

    handoff_dir: str | None = None  # relative to the project root, or absolute
    git_commit: bool = False  # checkpoint commits without being asked

    @classmethod
    def from_settings(cls, settings: SessionBuddySettings) -> SessionOptions:
        section = settings.sessions
        return cls(
            handoff_dir=str(section.handoff_dir) if section.handoff_dir else None,
            git_commit=bool(section.git_commit),
        )


class SessionService:
    def __init__(
        self,
        storage: StorageBase,
        memory: MemoryService,
        settings: SessionBuddySettings,
        paths: SessionPaths,
        projects: ProjectRecords,
        capture: CaptureService | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.paths = paths
        self.options = SessionOptions.from_settings(settings)
        self.store = SessionStore(storage)
        self.current = CurrentSessions()
        self.docs = HandoffDocs(paths.data, self.options.handoff_dir, projects, self.store, memory)
        self.lifecycle = Lifecycle(
            self.store,
            self.current,
            self.docs,
            projects,
            capture,
            git_commit_always=self.options.git_commit,
            events=events,
        )
        self.records = SessionRecords(self.store, memory, self.current)
        self.spool = SpoolApplier(paths.data, self.store, self.lifecycle)

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> SessionService:
        try:
            capture: CaptureService | None = resolve(CaptureService)
        except ConfigurationError:
            capture = None
        storage = resolve(StorageBase)
        service = cls(
            storage,
            resolve(MemoryService),
            resolve(SessionBuddySettings),
            resolve(SessionPaths),
            ProjectRecords(storage),  # the write path of projects records ProjectService uses
            capture,
            bus_from(resolve),
        )
        try:
            from session_buddy.adapters.shutdown._base import ShutdownBase

            # Apply hook events (a SessionEnd written as Claude Code closes) before storage closes.
            resolve(ShutdownBase).register(
                "sessions-spool", service.spool.at_shutdown, priority=60, timeout_s=10.0
            )
        except ConfigurationError:
            pass
        return service

    # -- the calling client's current session -----------------------------------------------

    def current_session_id(self) -> str | None:
        current = self.current.get(client_context().key)
        return current.session_id if current else None

    def current_project(self) -> str | None:
        """The project of the calling client's current session (memory tools default to it)."""
        current = self.current.get(client_context().key)
        return current.project if current else None

    # -- lifecycle (hook events first) ------------------------------------------------------

    async def process_spool(self) -> int:
        return await self.spool.process()

    async def start(self, working_directory: str | None = None) -> Brief:
        applied = await self.spool.process()
        brief = await self.lifecycle.start(working_directory)
        brief.spool_events_applied = applied
        return brief

    async def checkpoint(
        self, session_id: str | None = None, name: str | None = None, git_commit: bool = False
    ) -> CheckpointResult:
        await self.spool.process()
        return await self.lifecycle.checkpoint(session_id, name, git_commit)

    async def end(self, session_id: str | None = None, notes: EndNotes | None = None) -> EndResult:
        await self.spool.process()
        return await self.lifecycle.end(session_id, notes)

    async def status(self) -> StatusResult:
        applied = await self.spool.process()
        result = await self.lifecycle.status()
        result.spool_events_applied = applied
        result.spool_pending = self.spool.pending()
        return result

    # -- the records API --------------------------------------------------------------------

    async def create_session(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        working_directory: str | None = None,
    ) -> SessionState:
        """A session record; with ``working_directory`` (a remote caller says where it works:
        it has no client folder here), for the project there, told about it like ``start``."""
        if working_directory is None:
            return await self.records.create_session(name, metadata)
        if not os.path.isabs(working_directory):
            raise ValidationError(
                f"`working_directory` must be an absolute path, not {working_directory[:200]!r}"
            )
        info = await asyncio.to_thread(analyze_project, working_directory)
        state = await self.records.create_session(
            name, metadata, project=info, folder=working_directory
        )
        await self.lifecycle.projects.record_session(info.name, info.path, last_session_id=state.id)
        return state

    async def get_session(self, session_id: str) -> SessionState:
        return await self.records.get_session(session_id)

    async def update_session(
        self, session_id: str, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> SessionState:
        return await self.records.update_session(session_id, name, metadata)

    async def list_sessions(
        self,
        project: str | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SessionPage:
        return await self.records.list_sessions(project, status, limit, cursor)

    async def delete_session(self, session_id: str) -> DeletedSession:
        return await self.records.delete_session(session_id)

    async def add_message(self, session_id: str, role: str, content: str) -> AddedMessage:
        return await self.records.add_message(session_id, role, content)

    async def get_messages(
        self, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> MessagePage:
        return await self.records.get_messages(session_id, limit, cursor)

    async def export_session(self, session_id: str, format: str = "json") -> SessionExport:
        return await self.records.export_session(session_id, format)

    # -- handoff documents (resources) ------------------------------------------------------

    async def read_handoff_for_session(self, session_id: str) -> str:
        mine = self.records.owners.mine()  # another user's: like an unknown id
        return await self.docs.read_for_session(await self.store.get(session_id, mine))

    async def read_latest_handoff(self, project: str) -> str:
        return await self.docs.read_latest(project)
