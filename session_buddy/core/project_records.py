"""The ``projects`` records: the one write path for every service that changes them.

A project's record holds what ``ProjectService`` manages (path, description, explicit) and
what sessions report (their folder, the latest session and handoff). Both write through
:class:`ProjectRecords`, in one ``modify_record`` step each, so on a shared PostgreSQL a
session ending never loses an alias or description written at the same moment (and the
other way round).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from session_buddy.adapters.storage._base import Record, StorageBase, utcnow

PROJECTS = "projects"


@dataclass
class SessionFacts:
    """What sessions recorded about a project: its folder, latest session and handoff."""

    path: str | None
    last_session_id: str | None
    latest_handoff: str | None


class ProjectRecords:
    def __init__(self, storage: StorageBase) -> None:
        self.storage = storage

    async def change(
        self, name: str, change: Callable[[Record | None], Record | None]
    ) -> Record | None:
        """Read, change and write a project's record in one step (see ``modify_record``)."""
        return await self.storage.modify_record(PROJECTS, name, change)

    async def record_session(
        self,
        name: str,
        path: str | None,
        *,
        last_session_id: str | None = None,
        latest_handoff: str | None = None,
    ) -> None:
        """A session of the project started or ended: note its folder, the session and the
        handoff (the record is created when new)."""

        def note(current: Record | None) -> Record:
            at = utcnow()
            record = current or Record(
                collection=PROJECTS, id=name, project=name, data={}, created_at=at
            )
            if path:
                record.data["path"] = path
            if last_session_id is not None:
                record.data["last_session_id"] = last_session_id
            if latest_handoff is not None:
                record.data["latest_handoff"] = latest_handoff
            record.data["last_seen"] = at.isoformat()
            record.updated_at = at
            return record

        await self.change(name, note)

    async def session_facts(self, name: str) -> SessionFacts | None:
        record = await self.storage.get_record(PROJECTS, name)
        if record is None:
            return None

        def text(key: str) -> str | None:
            value = record.data.get(key)
            return value if isinstance(value, str) else None

        return SessionFacts(text("path"), text("last_session_id"), text("latest_handoff"))
