"""The session lifecycle: start, checkpoint, end and status, for the calling client.

"The current session" is the calling client's (:mod:`session_buddy.core.sessions.current`):
an explicit id, else the client's current session, else its newest active session in the
client's folder (after a service restart), else an unowned one there (opened by a hook).
"This project" is the client's folder, never the service process's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from session_buddy.core import events as ev
from session_buddy.core.analytics import AnalyticsService
from session_buddy.core.errorfix import ErrorMemory
from session_buddy.core.git import checkpoint_commit
from session_buddy.core.handoff import (
    HandoffInputs,
    HandoffMessage,
    HandoffReflection,
    compose_handoff,
    handoff_filename,
    project_root_of,
    system_folder,
)
from session_buddy.core.project import ProjectInfo, analyze_project, default_directory
from session_buddy.core.quality import SessionActivity, compute_quality
from session_buddy.core.sessions import evidence
from session_buddy.core.sessions.activity import (
    messages_filter,
    session_activity,
    session_reflections,
)
from session_buddy.core.sessions.brief import Brief, HandoffDocs, handoff_uri_for_session
from session_buddy.core.sessions.current import ClientContext, CurrentSessions, client_context
from session_buddy.core.sessions.owners import SessionOwners
from session_buddy.core.sessions.state import (
    CheckpointEntry,
    SessionState,
    SessionStore,
    iso,
    now,
)
from session_buddy.core.testresults import TestResultService
from session_buddy.errors import GitError, NotFound, ValidationError

if TYPE_CHECKING:
    from session_buddy.core.capture import CaptureService
    from session_buddy.core.project_records import ProjectRecords

log = logging.getLogger(__name__)

#: a session opened by a SessionStart hook is adopted by `start` within this time
ADOPT_WINDOW_S = 12 * 3600
HANDOFF_MESSAGES = 2000


#: bounds of what ``end`` is told (the handoff shows it whole)
SUMMARY_CHARS = 4000
NOTE_ITEMS = 50
NOTE_CHARS = 1000


def _note_list(name: str, value: list[str] | None) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > NOTE_ITEMS:
        raise ValidationError(f"{name} must be a list of at most {NOTE_ITEMS} short sentences")
    items = []
    for item in value:
        if not isinstance(item, str) or len(item) > NOTE_CHARS:
            raise ValidationError(
                f"{name} items must be text of at most {NOTE_CHARS} characters each"
            )
        if item.strip() and item.strip() not in items:
            items.append(item.strip())
    return items


@dataclass
class EndNotes:
    """What the agent says as it ends a session (``end``'s optional arguments)."""

    summary: str | None = None
    decisions: list[str] | None = None
    next_steps: list[str] | None = None

    def metadata(self) -> dict[str, Any]:
        """The notes as session metadata keys (validated; empty ones left out)."""
        out: dict[str, Any] = {}
        if self.summary is not None:
            if not isinstance(self.summary, str) or len(self.summary) > SUMMARY_CHARS:
                raise ValidationError(f"summary must be text of at most {SUMMARY_CHARS} characters")
            if self.summary.strip():
                out["summary"] = self.summary.strip()
        for name in ("decisions", "next_steps"):
            items = _note_list(name, getattr(self, name))
            if items:
                out[name] = items
        return out


def merge_notes(metadata: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` notes over the session's metadata: the summary replaces the one recorded,
    list items come first, followed by the ones recorded before (each once)."""
    merged = dict(metadata)
    for key, value in given.items():
        before = merged.get(key)
        if isinstance(value, list):
            earlier = before if isinstance(before, list) else [before] if before else []
            merged[key] = value + [v for v in earlier if v not in value]
        else:
            merged[key] = value
    return merged


@dataclass
class CheckpointResult:
    entry: CheckpointEntry
    session: SessionState  # after the checkpoint
    insights_captured: int = 0

    def to_dict(self) -> dict[str, Any]:
        e, q = self.entry, self.entry.quality
        return {
            "checkpoint_id": e.id,
            "session_id": e.session_id,
            "project": e.project,
            "name": e.name,
            "at": iso(e.at),
            "score": e.score,
            "previous_score": e.previous_score,
            "delta": e.delta,
            "earned": q.get("earned"),
            "possible": q.get("possible"),
            "unknown": q.get("unknown"),
            "recommendations": q.get("recommendations"),
            "breakdown": q.get("breakdown"),
            "git_commit": e.git_commit,
            "insights_captured": self.insights_captured,
        }


@dataclass
class EndResult:
    session: SessionState
    final: CheckpointResult | None = None  # None when it had ended before

    def to_dict(self) -> dict[str, Any]:
        s = self.session
        out: dict[str, Any] = {
            "session_id": s.id,
            "status": "ended",
            "already_ended": self.final is None,
            "handoff_path": s.handoff_path,
            "handoff_uri": handoff_uri_for_session(s.id),
        }
        if self.final is not None:
            out["insights_captured"] = self.final.insights_captured
            out["final_checkpoint"] = self.final.to_dict()
        out["session"] = s.view()
        return out


@dataclass
class StatusResult:
    session: SessionState | None
    activity: SessionActivity | None = None
    last: CheckpointEntry | None = None
    spool_events_applied: int = 0
    spool_pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session": None,
            "spool_events_applied": self.spool_events_applied,
            "spool_pending": self.spool_pending,
        }
        if self.session is None or self.activity is None:
            out["message"] = "No active session: call start to open one."
            return out
        view = self.session.view()
        out["session"] = view
        out["duration_s"] = view["duration_s"]
        out["counts"] = {
            "messages": self.activity.messages,
            "reflections": self.activity.reflections,
            "checkpoints": self.activity.checkpoints,
        }
        last = self.last
        out["last_score"] = (
            {"score": last.score, "at": iso(last.at), "delta": last.delta} if last else None
        )
        return out


@dataclass
class _Checkpointed:
    result: CheckpointResult
    info: ProjectInfo | None


class Lifecycle:
    def __init__(
        self,
        store: SessionStore,
        current: CurrentSessions,
        docs: HandoffDocs,
        projects: ProjectRecords,
        capture: CaptureService | None,
        *,
        git_commit_always: bool = False,
        events: ev.EventBus | None = None,
    ) -> None:
        self.events = events or ev.EventBus()
        self.store = store
        self.current = current
        self.docs = docs
        self.projects = projects
        self.capture = capture
        self.git_commit_always = git_commit_always
        self.owners = SessionOwners(docs.memory)

    # -- whose session ----------------------------------------------------------------------

    def remember(self, client: ClientContext, state: SessionState) -> None:
        self.current.set(client.key, state.id, state.project)

    async def resolve(self, session_id: str | None) -> SessionState:
        """An explicit id, else the calling client's current session (see the module doc)."""
        mine = self.owners.mine()
        if session_id:  # another user's session answers like an unknown id
            return await self.store.get(session_id, mine)
        client = client_context()
        current = self.current.get(client.key)
        if current is not None:
            found = await self.store.find(current.session_id)
            if found is not None and found.owned_by(mine):
                return found
            self.current.clear(client.key)
        found = await self._active_in_folder(client)
        if found is None:
            raise NotFound("No active session: call start first (or pass a session_id)")
        self.remember(client, found)
        return found

    async def _active_in_folder(self, client: ClientContext) -> SessionState | None:
        if not client.directory:
            return None
        root = str(await asyncio.to_thread(project_root_of, client.directory))
        active, _ = await self.store.owned_page(self.owners.mine(), status="active", limit=50)
        here = [s for s in active if s.project_path == root]
        mine = [s for s in here if s.client == client.key]
        unowned = [s for s in here if s.client is None]
        found = mine or unowned
        return found[0] if found else None

    # -- start --------------------------------------------------------------------------------

    async def start(self, working_directory: str | None = None) -> Brief:
        """Open (or adopt, or resume) the client's session for the project; the brief."""
        client = client_context()
        folder = working_directory or default_directory()
        refused = await asyncio.to_thread(system_folder, folder)
        if refused:
            raise ValidationError(
                f"working_directory {folder} is refused: {refused}; pass a folder inside a project"
            )
        info = await asyncio.to_thread(analyze_project, folder)
        state, how = await self._resumable(client, info), "resumed"
        if state is None:
            state, how = await self._adopt(client, info), "adopted"
        if state is None:
            state, how = await self._open(client, info, folder), "created"
        self.remember(client, state)
        await self.projects.record_session(info.name, info.path, last_session_id=state.id)
        if how != "resumed":
            self.events.emit(
                ev.SESSION_STARTED,
                session_id=state.id,
                project=state.project,
                how=how,
                client=client.key,
            )
        return await self.docs.brief(state, info, how)

    async def _resumable(self, client: ClientContext, info: ProjectInfo) -> SessionState | None:
        """The client's active session in this project: its current one, or (after a
        service restart, the bridge keeps its id) the one it opened here."""
        current = self.current.get(client.key)
        mine = self.owners.mine()
        if current is not None:
            found = await self.store.find(current.session_id)
            if found is None or not found.owned_by(mine):
                return None  # (another user's: one client key, another acting user)
            return found if found.active and found.project_path == info.path else None
        active, _ = await self.store.owned_page(mine, project=info.name, status="active", limit=50)
        for state in active:
            if state.client == client.key and state.project_path == info.path:
                return state
        return None

    async def _adopt(self, client: ClientContext, info: ProjectInfo) -> SessionState | None:
        """An active, unclaimed session opened by a SessionStart hook in this project."""
        at = now()
        mine = self.owners.mine()
        active, _ = await self.store.owned_page(mine, project=info.name, status="active", limit=20)
        for state in active:
            if (
                state.origin == "hook"
                and not state.claimed
                and state.project_path == info.path
                and (at - state.started_at).total_seconds() < ADOPT_WINDOW_S
            ):

                def claim(s: SessionState) -> SessionState | None:
                    if s.claimed:  # another client adopted it first
                        return None
                    return replace(s, claimed=True, origin_adopted_by="start", client=client.key)

                adopted = await self.store.change(state.id, claim)
                if adopted.client == client.key:
                    return adopted
        return None

    async def _open(self, client: ClientContext, info: ProjectInfo, folder: str) -> SessionState:
        return await self.store.add(
            SessionState.new(
                name=info.name,
                project=info.name,
                project_path=info.path,
                working_directory=folder,
                origin="start",
                client=client.key,
                owner=self.owners.creator(),
                start_head=info.git.head if info.git is not None else None,
            )
        )

    # -- checkpoint ---------------------------------------------------------------------------

    async def checkpoint(
        self, session_id: str | None, name: str | None, git_commit: bool
    ) -> CheckpointResult:
        state = await self.resolve(session_id)
        if not state.active:
            raise ValidationError(
                f"Session {state.id} has ended; start a new session to checkpoint"
            )
        done = await self.run_checkpoint(
            state, name, git_commit=git_commit, explicit_git=git_commit
        )
        return done.result

    async def run_checkpoint(
        self, state: SessionState, name: str | None, *, git_commit: bool, explicit_git: bool
    ) -> _Checkpointed:
        """Score the session (after indexing its transcript, so captured insights count),
        commit when asked, and record the checkpoint. The project is analysed once."""
        captured = await self._capture_insights(state)
        at = now()
        info = await asyncio.to_thread(_project_info, state)
        quality = compute_quality(
            info,
            await session_activity(
                self.store.storage, state, at, access=await self.owners.access_of(state)
            ),
            now=at.timestamp(),
        )
        project = state.project or (info.name if info else None)
        await self._record_tests(state, info, project)
        previous = await self.store.last_checkpoint(replace(state, project=project))
        previous_score = previous.score if previous else None
        commit = None
        if git_commit or self.git_commit_always:
            commit = await self._commit(state, project, quality.score, explicit=explicit_git)
        entry = CheckpointEntry(
            id=uuid.uuid4().hex,
            session_id=state.id,
            project=project,
            at=at,
            name=name,
            score=quality.score,
            previous_score=previous_score,
            delta=quality.score - previous_score
            if quality.score is not None and previous_score is not None
            else None,
            quality=quality.to_dict(),
            git_commit=commit,
        )
        await self.store.add_checkpoint(entry)
        state = await self.store.change(
            state.id,
            lambda s: replace(
                s, checkpoints=s.checkpoints + 1, last_checkpoint_at=at, last_score=quality.score
            ),
        )
        self.events.emit(
            ev.SESSION_CHECKPOINT,
            session_id=state.id,
            project=project,
            checkpoint_id=entry.id,
            name=name,
            score=entry.score,
            delta=entry.delta,
            insights_captured=captured,
        )
        return _Checkpointed(CheckpointResult(entry, state, captured), info)

    async def _record_tests(
        self, state: SessionState, info: ProjectInfo | None, project: str | None
    ) -> None:
        """The runners' reports the analysis found, stored once with this session and commit;
        then the failures and fixes of the session's runs (core.errorfix)."""
        storage = self.store.storage
        await TestResultService(storage).pickup_project(info, session_id=state.id, project=project)
        try:
            await ErrorMemory(storage, self.docs.memory.settings).learn_tests(
                state.id, project, state.project_path, state.claude_session_id
            )
        except Exception as exc:  # the checkpoint goes on without it
            log.warning("learning from the test results failed: %s", exc)

    async def _commit(
        self, state: SessionState, project: str | None, score: int | None, *, explicit: bool
    ) -> dict[str, Any]:
        try:
            if not state.project_path:
                raise GitError("Cannot checkpoint: this session has no project folder")
            result = await asyncio.to_thread(
                checkpoint_commit, state.project_path, project or "session", score
            )
        except GitError as exc:
            if explicit:
                raise
            return {"committed": False, "error": str(exc)}
        return {
            "committed": result.committed,
            "sha": result.sha,
            "message": result.message,
            "files": result.files,
            "skipped_reason": result.skipped_reason,
            "untracked_not_committed": result.untracked_left,
        }

    async def _capture_insights(self, state: SessionState) -> int:
        """Index the session's Claude Code transcript; how many insights it held."""
        if self.capture is None:
            return 0
        try:
            report = await self.capture.capture_session(
                state.claude_session_id, state.transcript_path, state.project_path
            )
        except Exception as exc:  # the checkpoint and the handoff go on without it
            log.warning("transcript capture failed: %s", exc)
            return 0
        insights = report.get("insights", 0)
        return insights if isinstance(insights, int) else 0

    # -- status -------------------------------------------------------------------------------

    async def status(self) -> StatusResult:
        try:
            state = await self.resolve(None)
        except NotFound:
            return StatusResult(None)
        activity = await session_activity(
            self.store.storage, state, now(), access=await self.owners.access_of(state)
        )
        last = await self.store.last_checkpoint(state) if state.project else None
        return StatusResult(state, activity, last)

    # -- end ----------------------------------------------------------------------------------

    async def end(self, session_id: str | None, notes: EndNotes | None = None) -> EndResult:
        """End the session; ``notes`` (summary, decisions, next steps) go into its handoff
        ahead of the evidence."""
        state = await self.resolve(session_id)
        if not state.active:
            return EndResult(state)
        if notes is not None and notes.metadata():
            given = notes.metadata()
            state = await self.store.change(
                state.id, lambda s: replace(s, metadata=merge_notes(s.metadata, given))
            )
        return await self.finish(state)

    async def finish(self, state: SessionState, *, ended_at: datetime | None = None) -> EndResult:
        """A final checkpoint (transcript captured and project analysed once), the handoff
        written, the session ended and the project told."""
        final = await self.run_checkpoint(state, "final", git_commit=False, explicit_git=False)
        state = final.result.session
        ended = ended_at or now()
        inputs = await self._handoff_inputs(state, final, ended)
        # the project's score and pass-rate trend: a section and an SVG chart beside the handoff
        inputs.trend, chart = await AnalyticsService(self.store.storage).handoff_trend(
            state.project, handoff_filename(state.id, ended)
        )
        markdown = compose_handoff(inputs)
        path = str(await asyncio.to_thread(self.docs.write, state, markdown, ended, chart))
        state = await self.store.change(
            state.id, lambda s: replace(s, status="ended", ended_at=ended, handoff_path=path)
        )
        if state.project:
            await self.projects.record_session(
                state.project, state.project_path, latest_handoff=path, last_session_id=state.id
            )
        self.current.forget_session(state.id)
        self.events.emit(
            ev.SESSION_ENDED,
            session_id=state.id,
            project=state.project,
            score=final.result.entry.score,
            checkpoints=state.checkpoints,
            handoff_path=path,
        )
        return EndResult(state, final.result)

    async def _handoff_inputs(
        self, state: SessionState, final: _Checkpointed, ended: datetime
    ) -> HandoffInputs:
        storage = self.store.storage
        # what the session's owner may see (a hook event is applied by whoever calls next)
        access = await self.owners.access_of(state)
        messages = await storage.list_items(
            messages_filter(state, access), limit=HANDOFF_MESSAGES, newest_first=False
        )
        reflections = await session_reflections(storage, state, access=access)
        git, transcript, runs = await evidence.gather(
            storage, state, final.info, transcripts=self.capture is not None
        )
        commit = final.result.entry.git_commit or {}
        if commit.get("committed"):  # the final checkpoint committed after the analysis
            git.tracked_changes, git.head = [], commit.get("sha") or git.head
        return HandoffInputs(
            project=state.project or "no-project",
            session_id=state.id,
            session_name=state.name,
            started_at=state.started_at,
            ended_at=ended,
            metadata=state.metadata,
            messages=[HandoffMessage(m.role, m.content) for m in messages],
            reflections=[HandoffReflection(r.id, r.content, r.tags, r.kind) for r in reflections],
            checkpoints=state.checkpoints,
            git=git,
            transcript=transcript,
            tests=runs,
            quality=final.result.entry.quality,
            delta=final.result.entry.delta,
        )


def _project_info(state: SessionState) -> ProjectInfo | None:
    path = state.project_path
    if not path or not Path(path).is_dir():
        return None
    return analyze_project(path)
