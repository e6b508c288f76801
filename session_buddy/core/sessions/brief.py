"""The brief ``start`` returns, and the handoff documents of projects and sessions.

Where a project's handoffs live (``<project>/.claude/handoff/`` or the configured folder,
else the data dir), the latest one in short for the brief, and the full documents the
``session-buddy://handoff/...`` resources read. Composing a handoff is
:func:`session_buddy.core.handoff.compose_handoff`.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from session_buddy.core.handoff import (
    HandoffLocationError,
    latest_handoff,
    resolve_handoff_dir,
    summarize_handoff,
    write_handoff,
)
from session_buddy.core.project import ProjectInfo
from session_buddy.core.sessions.state import CheckpointEntry, SessionState, SessionStore, iso
from session_buddy.errors import ConfigurationError, NotFound

if TYPE_CHECKING:
    from session_buddy.core.memory import MemoryService
    from session_buddy.core.project_records import ProjectRecords

HANDOFF_READ_CHARS = 200_000  # of a handoff file, read for its summary
_GIT_BRIEF_KEYS = (
    "branch",
    "head",
    "detached",
    "operation",
    "tracked_changes",
    "seconds_since_last_commit",
    "last_commit_subject",
)


def handoff_uri_for_session(session_id: str) -> str:
    return f"session-buddy://sessions/{session_id}/handoff"


def handoff_uri_for_project(project: str) -> str:
    return f"session-buddy://handoff/{project}/latest"


@dataclass
class HandoffInfo:
    """The latest handoff of a project, for the brief: in short (a few hundred characters:
    the previous session's goal, what it did, open problems, next steps); the whole document
    is the resource at ``uri`` (or the file at ``path``)."""

    path: str
    uri: str | None
    summary: str


@dataclass
class Brief:
    """What ``start`` answers: the session, the project and where its work stands."""

    session: SessionState
    how: str  # created | resumed | adopted
    project: ProjectInfo
    handoff: HandoffInfo | None
    reflections: list[dict[str, Any]] = field(default_factory=list)
    last_quality: CheckpointEntry | None = None
    spool_events_applied: int = 0

    def project_view(self) -> dict[str, Any]:
        project = self.project.to_dict()
        git = project.pop("git", None) or {}
        project["git"] = None
        if git:
            shown = {k: git.get(k) for k in _GIT_BRIEF_KEYS}
            shown["untracked"] = len(git.get("untracked") or [])
            shown["conflicted"] = len(git.get("conflicted") or [])
            project["git"] = shown
        return project

    def to_dict(self) -> dict[str, Any]:
        q = self.last_quality
        return {
            "project": self.project_view(),
            "handoff": asdict(self.handoff) if self.handoff else None,
            "reflections": self.reflections,
            "last_quality": {
                "score": q.score,
                "at": iso(q.at),
                "session_id": q.session_id,
                "recommendations": q.recommendations,
            }
            if q
            else None,
            "session": self.session.view(),
            "how": self.how,
            "spool_events_applied": self.spool_events_applied,
        }


class HandoffDocs:
    """Handoff files: where they go, the latest one, reading and writing them."""

    def __init__(
        self,
        data_dir: Path,
        handoff_dir: str | None,
        projects: ProjectRecords,
        store: SessionStore,
        memory: MemoryService,
    ) -> None:
        self.data_dir = data_dir
        self.handoff_dir = handoff_dir
        self.projects = projects
        self.store = store
        self.memory = memory

    def folder(self, project_path: str | None, project: str | None) -> Path:
        try:
            return resolve_handoff_dir(project_path, self.data_dir, self.handoff_dir, project)
        except HandoffLocationError as exc:
            raise ConfigurationError(str(exc)) from None

    def latest_info(self, project_path: str | None, project: str | None) -> HandoffInfo | None:
        """The latest handoff of a project in short (blocking: run it in a thread)."""
        latest = latest_handoff(self.folder(project_path, project))
        if latest is None:
            return None
        text = latest.read_text(encoding="utf-8", errors="replace")[:HANDOFF_READ_CHARS]
        return HandoffInfo(
            path=str(latest),
            uri=handoff_uri_for_project(project) if project else None,
            summary=summarize_handoff(text),
        )

    def write(
        self, state: SessionState, markdown: str, ended: datetime, chart: str | None = None
    ) -> Path:
        """Write the session's handoff (and its trend chart, an SVG, beside it) (blocking);
        the data dir when its folder is gone."""
        path = state.project_path
        folder = self.folder(path if path and Path(path).is_dir() else None, state.project)
        return write_handoff(folder, state.id, markdown, ended, chart=chart)

    async def brief(self, state: SessionState, info: ProjectInfo, how: str) -> Brief:
        handoff = await asyncio.to_thread(self.latest_info, info.path, info.name)
        # the project's newest reflections and insights the caller may see (on a shared
        # store, not a teammate's private ones)
        reflections = await self.memory.list_recent(
            projects=info.names, kinds=["reflection", "insight"], limit=5
        )
        history = await self.store.checkpoints(info.name, limit=1)
        return Brief(
            session=state,
            how=how,
            project=info,
            handoff=handoff,
            reflections=[
                {
                    "id": r.id,
                    "kind": r.kind,
                    "content": r.content[:500],
                    "tags": r.tags,
                    "created_at": iso(r.created_at),
                }
                for r in reflections
            ],
            last_quality=history[0] if history else None,
        )

    async def read_for_session(self, state: SessionState) -> str:
        if not state.handoff_path:
            raise NotFound(
                f"Session {state.id} has no handoff yet (it is written when the session ends)"
            )
        return await asyncio.to_thread(_read, Path(state.handoff_path))

    async def read_latest(self, project: str) -> str:
        facts = await self.projects.session_facts(project)
        candidates: list[Path] = []
        folder = self.folder(facts.path if facts else None, project)
        latest = await asyncio.to_thread(latest_handoff, folder)
        if latest is not None:
            candidates.append(latest)
        if facts is not None and facts.latest_handoff:
            candidates.append(Path(facts.latest_handoff))
        for path in candidates:
            if path.is_file():
                return await asyncio.to_thread(_read, path)
        raise NotFound(f"No handoff for project {project!r} yet (end a session in it to write one)")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise NotFound(f"The handoff file {path} no longer exists") from None
