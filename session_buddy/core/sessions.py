"""The session service: lifecycle (start, checkpoint, end, status) and session records.

Records live in the storage's ``records`` API:

- ``sessions``: one per session (``status`` active|ended, ``project`` = project name);
- ``quality``: one per checkpoint (the score history of a project, newest first);
- ``projects``: one per project name (its folder, latest session and latest handoff).

Messages of a session are conversations in memory (searchable); reflections are memory items
too, and stay when a session is deleted. Events spooled by Claude Code hooks (see
:mod:`session_buddy.core.hooks`) are applied at every lifecycle call and on shutdown.
No MCP in here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from session_buddy.adapters.storage._base import ItemFilter, MemoryItem, Record, StorageBase
from session_buddy.core import hooks as hooks_core
from session_buddy.core.git import checkpoint_commit
from session_buddy.core.handoff import (
    HandoffContent,
    HandoffLocationError,
    classify_reflection,
    extract_notes,
    latest_handoff,
    project_root_of,
    render_handoff,
    resolve_handoff_dir,
    summarize_handoff,
    write_handoff,
)
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.project import (
    ProjectInfo,
    analyze_project,
    default_directory,
    run_git,
)
from session_buddy.core.quality import SessionActivity, compute_quality
from session_buddy.errors import ConfigurationError, GitError, NotFound, ValidationError
from session_buddy.paths import SessionPaths
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

SESSIONS = "sessions"
QUALITY = "quality"
PROJECTS = "projects"
MESSAGE_ROLES = ("user", "assistant", "system")
STATUSES = ("active", "ended")
EXPORT_FORMATS = ("json", "markdown")
MAX_PAGE = 500
HANDOFF_BRIEF_CHARS = 8000
#: a session opened by a SessionStart hook is adopted by `start` within this time
ADOPT_WINDOW_S = 12 * 3600


@dataclass
class SessionOptions:
    """Settings of the lifecycle (read from ``settings.sessions`` when the lead adds it)."""

    handoff_dir: str | None = None  # relative to the project root, or absolute
    git_commit: bool = False  # checkpoint commits without being asked

    @classmethod
    def from_settings(cls, settings: SessionBuddySettings) -> SessionOptions:
        section = getattr(settings, "sessions", None)
        if section is None:
            return cls()
        configured = getattr(section, "handoff_dir", None)
        return cls(
            handoff_dir=str(configured) if configured else None,
            git_commit=bool(getattr(section, "git_commit", False)),
        )


def _iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).isoformat()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _cursor(cursor: str | None) -> int:
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


def _limit(limit: int, maximum: int = MAX_PAGE) -> int:
    if limit < 1 or limit > maximum:
        raise ValidationError(f"limit must be between 1 and {maximum}, not {limit}")
    return limit


def session_view(record: Record) -> dict[str, Any]:
    """The public shape of a session record."""
    d = record.data
    started = record.created_at
    ended = _parse_time(d.get("ended_at"))
    end = ended or _now()
    return {
        "id": record.id,
        "name": d.get("name"),
        "project": record.project,
        "project_path": d.get("project_path"),
        "status": record.status,
        "started_at": _iso(started),
        "ended_at": d.get("ended_at"),
        "duration_s": round((end - started).total_seconds()),
        "last_checkpoint_at": d.get("last_checkpoint_at"),
        "checkpoints": d.get("checkpoints", 0),
        "last_score": d.get("last_score"),
        "message_count": d.get("message_count", 0),
        "metadata": d.get("metadata", {}),
        "origin": d.get("origin"),
        "claude_session_id": d.get("claude_session_id"),
        "handoff_path": d.get("handoff_path"),
    }


def message_view(item: MemoryItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "role": item.role,
        "content": item.content,
        "created_at": _iso(item.created_at),
        "metadata": item.metadata,
    }


def handoff_uri_for_session(session_id: str) -> str:
    return f"session-buddy://sessions/{session_id}/handoff"


def handoff_uri_for_project(project: str) -> str:
    return f"session-buddy://handoff/{project}/latest"


class SessionService:
    def __init__(
        self,
        storage: StorageBase,
        memory: MemoryService,
        settings: SessionBuddySettings,
        paths: SessionPaths,
    ) -> None:
        self.storage = storage
        self.memory = memory
        self.settings = settings
        self.paths = paths
        self.options = SessionOptions.from_settings(settings)
        self._current: str | None = None
        self._current_project: str | None = None
        self._spool_lock: asyncio.Lock | None = None

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> SessionService:
        service = cls(
            resolve(StorageBase),
            resolve(MemoryService),
            resolve(SessionBuddySettings),
            resolve(SessionPaths),
        )
        try:
            from session_buddy.adapters.shutdown._base import ShutdownBase

            # Apply hook events (a SessionEnd written as Claude Code closes) before storage closes.
            resolve(ShutdownBase).register(
                "sessions-spool", service._shutdown_spool, priority=60, timeout_s=10.0
            )
        except ConfigurationError:
            pass
        return service

    # -- current session --------------------------------------------------------------------

    def current_session_id(self) -> str | None:
        return self._current

    def current_project(self) -> str | None:
        """The project of this process's current session (memory tools default to it)."""
        return self._current_project

    def _set_current(self, record: Record | None) -> None:
        self._current = record.id if record else None
        self._current_project = record.project if record else None

    async def _get(self, session_id: str) -> Record:
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValidationError("session_id must be a non-empty string")
        record = await self.storage.get_record(SESSIONS, session_id.strip())
        if record is None:
            raise NotFound(
                f"No session with id {session_id!r} (list_sessions shows the existing ones)"
            )
        return record

    async def _resolve(self, session_id: str | None) -> Record:
        """An explicit id, else this process's current session, else the newest active session
        of the project in the current folder."""
        if session_id:
            return await self._get(session_id)
        if self._current:
            found = await self.storage.get_record(SESSIONS, self._current)
            if found is not None:
                return found
            self._set_current(None)
        root = str(project_root_of(self._default_directory()))
        for record in await self.storage.list_records(SESSIONS, status="active", limit=50):
            if record.data.get("project_path") == root:
                return record
        raise NotFound("No active session: call start first (or pass a session_id)")

    @staticmethod
    def _default_directory() -> str:
        return default_directory()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, working_directory: str | None = None) -> dict[str, Any]:
        """Open (or adopt, or resume) a session for the project and return the brief."""
        spool = await self.process_spool()
        folder = working_directory or self._default_directory()
        info = await asyncio.to_thread(analyze_project, folder)
        record: Record | None = None
        how = "created"
        if self._current:
            current = await self.storage.get_record(SESSIONS, self._current)
            if (
                current is not None
                and current.status == "active"
                and current.data.get("project_path") == info.path
            ):
                record, how = current, "resumed"
        if record is None:
            record = await self._adoptable(info)
            if record is not None:
                how = "adopted"
                record.data["claimed"] = True
                record.data["origin_adopted_by"] = "start"
                record.updated_at = _now()
                await self.storage.put_record(record)
        if record is None:
            record = await self._new_session(
                info.name, info.path, folder, origin="start", project=info.name
            )
        self._set_current(record)
        await self._touch_project(info.name, info.path, last_session_id=record.id)
        brief = await self._brief(record, info)
        brief.update({"session": session_view(record), "how": how, "spool_events_applied": spool})
        return brief

    async def _adoptable(self, info: ProjectInfo) -> Record | None:
        """An active, unclaimed session opened by a SessionStart hook in this project."""
        now = _now()
        for record in await self.storage.list_records(
            SESSIONS, project=info.name, status="active", limit=20
        ):
            d = record.data
            if (
                d.get("origin") == "hook"
                and not d.get("claimed")
                and d.get("project_path") == info.path
                and (now - record.created_at).total_seconds() < ADOPT_WINDOW_S
            ):
                return record
        return None

    async def _new_session(
        self,
        name: str | None,
        project_path: str | None,
        working_directory: str | None,
        *,
        origin: str,
        project: str | None = None,
        metadata: dict[str, Any] | None = None,
        claude: dict[str, Any] | None = None,
        started_at: datetime | None = None,
    ) -> Record:
        now = started_at or _now()
        data: dict[str, Any] = {
            "name": name,
            "project_path": project_path,
            "working_directory": working_directory,
            "checkpoints": 0,
            "message_count": 0,
            "last_score": None,
            "last_checkpoint_at": None,
            "ended_at": None,
            "metadata": dict(metadata or {}),
            "origin": origin,
            "claimed": origin != "hook",
        }
        if claude:
            data["claude_session_id"] = claude.get("session_id")
            data["transcript_path"] = claude.get("transcript_path")
        record = Record(
            collection=SESSIONS,
            id=uuid.uuid4().hex,
            data=data,
            project=project
            if project is not None
            else (Path(project_path).name if project_path else None),
            status="active",
            created_at=now,
            updated_at=now,
        )
        await self.storage.put_record(record)
        return record

    async def _touch_project(self, name: str, path: str | None, **fields: Any) -> None:
        record = await self.storage.get_record(PROJECTS, name)
        now = _now()
        if record is None:
            record = Record(collection=PROJECTS, id=name, data={}, project=name, created_at=now)
        if path:
            record.data["path"] = path
        record.data.update({k: v for k, v in fields.items() if v is not None})
        record.data["last_seen"] = _iso(now)
        record.updated_at = now
        await self.storage.put_record(record)

    async def _brief(self, record: Record, info: ProjectInfo) -> dict[str, Any]:
        handoff = await asyncio.to_thread(self._latest_handoff_info, info.path, info.name)
        reflections = await self.storage.list_items(
            ItemFilter(projects=info.names, kinds=["reflection", "insight"]),
            limit=5,
            newest_first=True,
        )
        history = await self.storage.list_records(QUALITY, project=info.name, limit=1)
        last_quality = None
        if history:
            h = history[0]
            last_quality = {
                "score": h.data.get("score"),
                "at": _iso(h.created_at),
                "session_id": h.data.get("session_id"),
                "recommendations": (h.data.get("quality") or {}).get("recommendations", []),
            }
        project = info.to_dict()
        git = project.pop("git", None) or {}
        project["git"] = (
            {
                k: git.get(k)
                for k in (
                    "branch",
                    "head",
                    "detached",
                    "operation",
                    "tracked_changes",
                    "seconds_since_last_commit",
                    "last_commit_subject",
                )
            }
            if git
            else None
        )
        if git:
            project["git"]["untracked"] = len(git.get("untracked") or [])
            project["git"]["conflicted"] = len(git.get("conflicted") or [])
        return {
            "project": project,
            "handoff": handoff,
            "reflections": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "content": r.content[:500],
                    "tags": r.tags,
                    "created_at": _iso(r.created_at),
                }
                for r in reflections
            ],
            "last_quality": last_quality,
        }

    def _handoff_folder(self, project_path: str | None, project: str | None) -> Path:
        try:
            return resolve_handoff_dir(
                project_path, self.paths.data, self.options.handoff_dir, project
            )
        except HandoffLocationError as exc:
            raise ConfigurationError(str(exc)) from None

    def _latest_handoff_info(
        self, project_path: str | None, project: str | None
    ) -> dict[str, Any] | None:
        folder = self._handoff_folder(project_path, project)
        latest = latest_handoff(folder)
        if latest is None:
            return None
        text = latest.read_text(encoding="utf-8", errors="replace")
        return {
            "path": str(latest),
            "uri": handoff_uri_for_project(project) if project else None,
            "summary": summarize_handoff(text),
            "content": text
            if len(text) <= HANDOFF_BRIEF_CHARS
            else text[:HANDOFF_BRIEF_CHARS] + "\n…(truncated)",
            "truncated": len(text) > HANDOFF_BRIEF_CHARS,
        }

    async def _activity(self, record: Record, now: datetime) -> SessionActivity:
        messages = await self.storage.count_items(
            ItemFilter(session_id=record.id, kinds=["conversation"])
        )
        reflections = await self._reflection_count(record)
        last = _parse_time(record.data.get("last_checkpoint_at")) or record.created_at
        return SessionActivity(
            messages=messages,
            reflections=reflections,
            seconds_since_checkpoint=max(0.0, (now - last).total_seconds()),
            checkpoints=int(record.data.get("checkpoints", 0)),
        )

    async def _reflection_count(self, record: Record) -> int:
        kinds = ["reflection", "insight"]
        by_session = await self.storage.count_items(ItemFilter(session_id=record.id, kinds=kinds))
        if not record.project:
            return by_session
        by_project = await self.storage.count_items(
            ItemFilter(projects=[record.project], kinds=kinds, after=record.created_at)
        )
        return max(by_session, by_project)

    async def _session_reflections(self, record: Record, limit: int = 50) -> list[MemoryItem]:
        kinds = ["reflection", "insight"]
        seen: dict[str, MemoryItem] = {}
        for item in await self.storage.list_items(
            ItemFilter(session_id=record.id, kinds=kinds), limit=limit
        ):
            seen[item.id] = item
        if record.project:
            flt = ItemFilter(projects=[record.project], kinds=kinds, after=record.created_at)
            for item in await self.storage.list_items(flt, limit=limit):
                seen.setdefault(item.id, item)
        return sorted(seen.values(), key=lambda i: i.created_at)

    def _project_info(self, record: Record) -> ProjectInfo | None:
        path = record.data.get("project_path")
        if not path or not Path(path).is_dir():
            return None
        return analyze_project(path)

    async def checkpoint(
        self, session_id: str | None = None, name: str | None = None, git_commit: bool = False
    ) -> dict[str, Any]:
        await self.process_spool()
        record = await self._resolve(session_id)
        if record.status == "ended":
            raise ValidationError(
                f"Session {record.id} has ended; start a new session to checkpoint"
            )
        return await self._checkpoint(record, name, git_commit=git_commit, explicit_git=git_commit)

    async def _checkpoint(
        self, record: Record, name: str | None, *, git_commit: bool, explicit_git: bool
    ) -> dict[str, Any]:
        # index the session's transcript first (issue 5), so captured insights count
        captured = await self._capture_insights(record)
        now = _now()
        info = await asyncio.to_thread(self._project_info, record)
        activity = await self._activity(record, now)
        quality = compute_quality(info, activity, now=now.timestamp())
        project = record.project or (info.name if info else None)
        previous = (
            await self.storage.list_records(QUALITY, project=project, limit=1) if project else []
        )
        if not project:
            previous = [
                r
                for r in await self.storage.list_records(QUALITY, limit=50)
                if r.data.get("session_id") == record.id
            ][:1]
        previous_score = previous[0].data.get("score") if previous else None
        delta = (
            quality.score - previous_score
            if quality.score is not None and isinstance(previous_score, int)
            else None
        )
        commit: dict[str, Any] | None = None
        if git_commit or self.options.git_commit:
            path = record.data.get("project_path")
            try:
                if not path:
                    raise GitError("Cannot checkpoint: this session has no project folder")
                result = await asyncio.to_thread(
                    checkpoint_commit, path, project or "session", quality.score
                )
                commit = {
                    "committed": result.committed,
                    "sha": result.sha,
                    "message": result.message,
                    "files": result.files,
                    "skipped_reason": result.skipped_reason,
                    "untracked_not_committed": result.untracked_left,
                }
            except GitError as exc:
                if explicit_git:
                    raise
                commit = {"committed": False, "error": str(exc)}
        checkpoint_id = uuid.uuid4().hex
        quality_dict = quality.to_dict()
        await self.storage.put_record(
            Record(
                collection=QUALITY,
                id=checkpoint_id,
                project=project,
                data={
                    "session_id": record.id,
                    "name": name,
                    "score": quality.score,
                    "previous_score": previous_score,
                    "delta": delta,
                    "quality": quality_dict,
                    "git_commit": commit,
                },
                created_at=now,
                updated_at=now,
            )
        )
        record.data["checkpoints"] = int(record.data.get("checkpoints", 0)) + 1
        record.data["last_checkpoint_at"] = _iso(now)
        record.data["last_score"] = quality.score
        record.updated_at = now
        await self.storage.put_record(record)
        return {
            "checkpoint_id": checkpoint_id,
            "session_id": record.id,
            "project": project,
            "name": name,
            "at": _iso(now),
            "score": quality.score,
            "previous_score": previous_score,
            "delta": delta,
            "earned": quality_dict["earned"],
            "possible": quality_dict["possible"],
            "unknown": quality_dict["unknown"],
            "recommendations": quality_dict["recommendations"],
            "breakdown": quality_dict["breakdown"],
            "git_commit": commit,
            "insights_captured": captured,
        }

    async def end(self, session_id: str | None = None) -> dict[str, Any]:
        await self.process_spool()
        record = await self._resolve(session_id)
        if record.status == "ended":
            return {
                "session_id": record.id,
                "status": "ended",
                "already_ended": True,
                "handoff_path": record.data.get("handoff_path"),
                "handoff_uri": handoff_uri_for_session(record.id),
                "session": session_view(record),
            }
        return await self._end(record)

    async def _end(self, record: Record, *, ended_at: datetime | None = None) -> dict[str, Any]:
        final = await self._checkpoint(record, "final", git_commit=False, explicit_git=False)
        insights = await self._capture_insights(record)
        record = await self._get(record.id)
        ended = ended_at or _now()
        path = await self._write_handoff(record, final, ended)
        record.status = "ended"
        record.data["ended_at"] = _iso(ended)
        record.data["handoff_path"] = str(path) if path else None
        record.updated_at = _now()
        await self.storage.put_record(record)
        if record.project:
            await self._touch_project(
                record.project,
                record.data.get("project_path"),
                latest_handoff=str(path) if path else None,
                last_session_id=record.id,
            )
        if self._current == record.id:
            self._set_current(None)
        return {
            "session_id": record.id,
            "status": "ended",
            "already_ended": False,
            "handoff_path": str(path) if path else None,
            "handoff_uri": handoff_uri_for_session(record.id),
            "insights_captured": insights,
            "final_checkpoint": final,
            "session": session_view(record),
        }

    async def _capture_insights(self, record: Record) -> int:
        """Index the session's Claude Code transcript and count the insights it held (the
        capture service of issue 5; skipped when it is not registered or finds nothing)."""
        try:
            from session_buddy import di
            from session_buddy.core.capture import CaptureService

            capture = di.get(CaptureService)
        except (ImportError, ConfigurationError):
            return 0
        try:
            report = await capture.capture_session(
                record.data.get("claude_session_id"),
                record.data.get("transcript_path"),
                record.data.get("project_path"),
            )
        except Exception as exc:  # the handoff is written even when capture fails
            log.warning("transcript capture at end failed: %s", exc)
            return 0
        insights = report.get("insights", 0)
        return int(insights) if isinstance(insights, int) else 0

    async def _write_handoff(
        self, record: Record, final: dict[str, Any], ended: datetime
    ) -> Path | None:
        messages = await self.storage.list_items(
            ItemFilter(session_id=record.id, kinds=["conversation"]), limit=2000, newest_first=False
        )
        reflections = await self._session_reflections(record)
        meta = record.data.get("metadata") or {}
        notes = extract_notes([m.content for m in messages if m.role in ("assistant", "user")])
        sections: dict[str, list[str]] = {
            k: [] for k in ("done", "decisions", "open_problems", "next_steps")
        }
        for key in sections:
            value = meta.get(key)
            if isinstance(value, str) and value.strip():
                sections[key].append(value.strip())
            elif isinstance(value, list):
                sections[key] += [str(v) for v in value if str(v).strip()]
        for key in ("decisions", "open_problems", "next_steps"):
            sections[key] += [n for n in notes[key] if n not in sections[key]]
        for r in reflections:
            where = classify_reflection(r.content, r.tags)
            if where:
                sections[where].append(r.content)
            else:
                sections["done"].append(f"Learned: {r.content.strip().splitlines()[0][:300]}")
        asked = [
            m.content.strip().splitlines()[0][:200]
            for m in messages
            if m.role == "user" and m.content.strip()
        ]
        sections["done"] = [f"Asked: {a}" for a in asked[:5]] + sections["done"]
        info_path = record.data.get("project_path")
        git_lines = await asyncio.to_thread(self._git_work, info_path, record.created_at)
        sections["done"] += git_lines["done"]
        sections["open_problems"] += git_lines["open"]
        for c in final.get("breakdown", []):
            if c.get("key") == "test_result" and c.get("status") == "missing":
                sections["open_problems"].append(f"Tests failing: {c.get('evidence')}")
        if not sections["next_steps"]:
            sections["next_steps"] = list(final.get("recommendations") or [])
        summary = meta.get("summary") if isinstance(meta.get("summary"), str) else None
        if not summary:
            summary = (
                f"{len(messages)} message(s), {len(reflections)} reflection(s)/insight(s) and "
                f"{record.data.get('checkpoints', 0)} checkpoint(s) in this session."
            )
        content = HandoffContent(
            project=record.project or "no-project",
            session_id=record.id,
            session_name=record.data.get("name"),
            started_at=record.created_at,
            ended_at=ended,
            branch=git_lines.get("branch"),
            head=git_lines.get("head"),
            summary=summary,
            done=sections["done"],
            decisions=sections["decisions"],
            open_problems=sections["open_problems"],
            next_steps=sections["next_steps"],
            quality={
                "score": final.get("score"),
                "breakdown": final.get("breakdown"),
                "unknown": final.get("unknown"),
            },
            delta=final.get("delta"),
            reflections=[{"id": r.id, "content": r.content, "tags": r.tags} for r in reflections],
            counts={"messages": len(messages), "reflections": len(reflections)},
        )
        markdown = render_handoff(content)
        return await asyncio.to_thread(self._write_handoff_file, info_path, record, markdown, ended)

    def _write_handoff_file(
        self, info_path: str | None, record: Record, markdown: str, ended: datetime
    ) -> Path:
        folder = self._handoff_folder(
            info_path if info_path and Path(info_path).is_dir() else None, record.project
        )
        return write_handoff(folder, record.id, markdown, ended)

    @staticmethod
    def _git_work(path: str | None, since: datetime) -> dict[str, Any]:
        """Commits made since the session began, and what is left uncommitted."""
        out: dict[str, Any] = {"done": [], "open": [], "branch": None, "head": None}
        if not path or not Path(path).is_dir():
            return out
        try:
            log_result = run_git(
                ["log", f"--since={since.isoformat()}", "--format=%h %s", "-n", "50"], path
            )
            if log_result.returncode == 0:
                out["done"] = [
                    f"Commit {line}" for line in log_result.stdout.splitlines() if line.strip()
                ]
            info = analyze_project(path)
        except Exception as exc:  # the handoff is still written without git facts
            log.debug("git facts for the handoff failed: %s", exc)
            return out
        if info.git is not None:
            out["branch"], out["head"] = info.git.branch, info.git.head
            changed = info.git.tracked_changes
            if changed:
                shown = ", ".join(changed[:10]) + (
                    f" (+{len(changed) - 10} more)" if len(changed) > 10 else ""
                )
                out["open"].append(
                    f"Uncommitted changes in {len(changed)} tracked file(s): {shown}"
                )
            if info.git.untracked:
                out["open"].append(f"{len(info.git.untracked)} untracked file(s) not in git")
            if info.git.operation:
                out["open"].append(f"A {info.git.operation} is in progress")
        return out

    async def status(self) -> dict[str, Any]:
        spool = await self.process_spool()
        try:
            record: Record | None = await self._resolve(None)
        except NotFound:
            record = None
        result: dict[str, Any] = {"session": None, "spool_events_applied": spool}
        result["spool_pending"] = hooks_core.pending_count(self.paths.data)
        if record is None:
            result["message"] = "No active session: call start to open one."
            return result
        view = session_view(record)
        activity = await self._activity(record, _now())
        result["session"] = view
        result["duration_s"] = view["duration_s"]
        result["counts"] = {
            "messages": activity.messages,
            "reflections": activity.reflections,
            "checkpoints": activity.checkpoints,
        }
        history = (
            await self.storage.list_records(QUALITY, project=record.project, limit=1)
            if record.project
            else []
        )
        result["last_score"] = (
            {
                "score": history[0].data.get("score"),
                "at": _iso(history[0].created_at),
                "delta": history[0].data.get("delta"),
            }
            if history
            else None
        )
        return result

    # -- hook events ------------------------------------------------------------------------

    async def process_spool(self) -> int:
        """Apply the events Claude Code hooks spooled; returns how many were applied."""
        if self._spool_lock is None:
            self._spool_lock = asyncio.Lock()
        async with self._spool_lock:
            events = await asyncio.to_thread(hooks_core.claim_spooled, self.paths.data)
            applied = 0
            for event in events:
                try:
                    await self._apply_event(event)
                except Exception as exc:
                    log.warning("spooled %s event failed: %s", event.event, exc)
                    await asyncio.to_thread(
                        hooks_core.fail_spooled, event.path, f"{type(exc).__name__}: {exc}"
                    )
                    continue
                await asyncio.to_thread(hooks_core.finish_spooled, event)
                applied += 1
            return applied

    async def _shutdown_spool(self) -> None:
        try:
            await self.process_spool()
        except Exception as exc:  # storage may be closed or never opened
            log.debug("spool at shutdown: %s", exc)

    async def _by_claude_id(self, claude_id: str) -> Record | None:
        offset = 0
        while True:
            page = await self.storage.list_records(SESSIONS, limit=200, offset=offset)
            for record in page:
                if record.data.get("claude_session_id") == claude_id:
                    return record
            if len(page) < 200:
                return None
            offset += 200

    async def _session_for_event(
        self, payload: dict[str, Any], at: datetime, *, create: bool
    ) -> Record | None:
        claude_id = payload.get("session_id")
        if isinstance(claude_id, str) and claude_id:
            found = await self._by_claude_id(claude_id)
            if found is not None:
                return found
        if not create:
            return None
        cwd = payload.get("cwd")
        if not isinstance(cwd, str) or not cwd or not await asyncio.to_thread(os.path.isdir, cwd):
            return None
        info = await asyncio.to_thread(analyze_project, cwd)
        return await self._new_session(
            None, info.path, cwd, origin="hook", project=info.name, claude=payload, started_at=at
        )

    async def _apply_event(self, event: hooks_core.SpooledEvent) -> None:
        at = datetime.fromtimestamp(event.received_at or time.time(), UTC)
        payload = event.payload
        if event.event == "SessionStart":
            record = await self._session_for_event(payload, at, create=True)
            if (
                record is not None
                and record.status == "ended"
                and payload.get("source") in ("resume", "compact")
            ):
                record.status = "active"
                record.data["ended_at"] = None
                record.updated_at = _now()
                await self.storage.put_record(record)
            elif record is not None and payload.get("transcript_path"):
                record.data.setdefault("transcript_path", payload.get("transcript_path"))
                await self.storage.put_record(record)
        elif event.event == "PreCompact":
            record = await self._session_for_event(payload, at, create=True)
            if record is not None and record.status == "active":
                await self._checkpoint(
                    record,
                    f"pre-compact ({payload.get('trigger', 'auto')})",
                    git_commit=False,
                    explicit_git=False,
                )
        elif event.event == "SessionEnd":
            record = await self._session_for_event(payload, at, create=True)
            if record is not None and record.status == "active":
                record.data.setdefault("metadata", {})["end_reason"] = payload.get("reason")
                await self.storage.put_record(record)
                await self._end(record, ended_at=at)
        else:
            raise ValidationError(f"unknown spooled event {event.event!r}")

    # -- session records (the ecosystem API) ------------------------------------------------

    async def create_session(
        self, name: str, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("name must be a non-empty string")
        metadata = dict(metadata or {})
        project = metadata.get("project") if isinstance(metadata.get("project"), str) else None
        record = await self._new_session(
            name.strip(), None, None, origin="api", project=project, metadata=metadata
        )
        return session_view(record)

    async def get_session(self, session_id: str) -> dict[str, Any]:
        record = await self._get(session_id)
        view = session_view(record)
        view["message_count"] = await self.storage.count_items(
            ItemFilter(session_id=record.id, kinds=["conversation"])
        )
        return view

    async def update_session(
        self, session_id: str, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        record = await self._get(session_id)
        if name is not None:
            if not name.strip():
                raise ValidationError("name must not be empty")
            record.data["name"] = name.strip()
        if metadata is not None:
            merged = dict(record.data.get("metadata") or {})
            for key, value in metadata.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            record.data["metadata"] = merged
        record.updated_at = _now()
        await self.storage.put_record(record)
        return session_view(record)

    async def list_sessions(
        self,
        project: str | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        limit = _limit(limit)
        offset = _cursor(cursor)
        page = await self.storage.list_records(
            SESSIONS, project=project, status=status, limit=limit + 1, offset=offset
        )
        more = len(page) > limit
        return {
            "sessions": [session_view(r) for r in page[:limit]],
            "next_cursor": str(offset + limit) if more else None,
        }

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        record = await self._get(session_id)
        deleted = 0
        while True:
            batch = await self.storage.list_items(
                ItemFilter(session_id=record.id, kinds=["conversation"]), limit=500
            )
            if not batch:
                break
            count = await self.storage.delete_items([i.id for i in batch])
            deleted += count
            if count == 0:
                break
        await self.storage.delete_record(SESSIONS, record.id)
        if self._current == record.id:
            self._set_current(None)
        return {"session_id": record.id, "deleted": True, "messages_deleted": deleted}

    async def add_message(self, session_id: str, role: str, content: str) -> dict[str, Any]:
        if role not in MESSAGE_ROLES:
            raise ValidationError(f"role must be one of {', '.join(MESSAGE_ROLES)}, not {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise ValidationError("content must be non-empty text")
        record = await self._get(session_id)
        results = await self.memory.store(
            [
                ItemInput(
                    content=content,
                    kind="conversation",
                    role=role,
                    session_id=record.id,
                    project=record.project,
                )
            ]
        )
        stored = results[0]
        if stored.created:
            record.data["message_count"] = int(record.data.get("message_count", 0)) + 1
            record.updated_at = _now()
            await self.storage.put_record(record)
        return {
            "id": stored.id,
            "session_id": record.id,
            "created": stored.created,
            "embedded": stored.embedded,
            "message_count": record.data.get("message_count", 0),
        }

    async def get_messages(
        self, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        record = await self._get(session_id)
        limit = _limit(limit)
        offset = _cursor(cursor)
        items = await self.storage.list_items(
            ItemFilter(session_id=record.id, kinds=["conversation"]),
            limit=limit + 1,
            offset=offset,
            newest_first=False,
        )
        more = len(items) > limit
        return {
            "session_id": record.id,
            "messages": [message_view(i) for i in items[:limit]],
            "next_cursor": str(offset + limit) if more else None,
        }

    async def export_session(self, session_id: str, format: str = "json") -> dict[str, Any]:
        if format not in EXPORT_FORMATS:
            raise ValidationError(
                f"format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}"
            )
        record = await self._get(session_id)
        messages: list[MemoryItem] = []
        offset = 0
        while True:
            page = await self.storage.list_items(
                ItemFilter(session_id=record.id, kinds=["conversation"]),
                limit=500,
                offset=offset,
                newest_first=False,
            )
            messages += page
            if len(page) < 500:
                break
            offset += 500
        reflections = await self._session_reflections(record, limit=500)
        checkpoints = [
            {
                "id": r.id,
                "at": _iso(r.created_at),
                "name": r.data.get("name"),
                "score": r.data.get("score"),
                "delta": r.data.get("delta"),
            }
            for r in await self.storage.list_records(
                QUALITY, project=record.project, limit=500, newest_first=False
            )
            if r.data.get("session_id") == record.id
        ]
        view = session_view(record)
        if format == "json":
            document = {
                "session": view,
                "messages": [message_view(m) for m in messages],
                "reflections": [
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "content": r.content,
                        "tags": r.tags,
                        "created_at": _iso(r.created_at),
                    }
                    for r in reflections
                ],
                "checkpoints": checkpoints,
            }
            content = json.dumps(document, ensure_ascii=False, indent=2)
        else:
            lines = [
                f"# Session {view['name'] or view['id']}",
                "",
                f"- id: `{view['id']}`",
                f"- project: {view['project'] or '-'}",
                f"- status: {view['status']}",
                f"- started: {view['started_at']}"
                + (f"; ended: {view['ended_at']}" if view["ended_at"] else ""),
                f"- last score: {view['last_score'] if view['last_score'] is not None else '-'}",
            ]
            if view["metadata"]:
                lines.append(f"- metadata: `{json.dumps(view['metadata'], ensure_ascii=False)}`")
            lines += ["", "## Messages", ""]
            for m in messages:
                lines += [f"### {m.role or 'message'} · {_iso(m.created_at)}", "", m.content, ""]
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
            content = "\n".join(lines) + "\n"
        return {
            "session_id": record.id,
            "format": format,
            "content": content,
            "messages": len(messages),
            "reflections": len(reflections),
        }

    # -- handoff documents (resources) -----------------------------------------------------

    async def read_handoff_for_session(self, session_id: str) -> str:
        record = await self._get(session_id)
        path = record.data.get("handoff_path")
        if not path:
            raise NotFound(
                f"Session {session_id} has no handoff yet (it is written when the session ends)"
            )
        return await asyncio.to_thread(self._read_handoff_file, Path(path))

    async def read_latest_handoff(self, project: str) -> str:
        record = await self.storage.get_record(PROJECTS, project)
        candidates: list[Path] = []
        if record is not None:
            folder = self._handoff_folder(record.data.get("path"), project)
            latest = await asyncio.to_thread(latest_handoff, folder)
            if latest is not None:
                candidates.append(latest)
            if record.data.get("latest_handoff"):
                candidates.append(Path(record.data["latest_handoff"]))
        else:
            folder = self._handoff_folder(None, project)
            latest = await asyncio.to_thread(latest_handoff, folder)
            if latest is not None:
                candidates.append(latest)
        for path in candidates:
            if path.is_file():
                return await asyncio.to_thread(self._read_handoff_file, path)
        raise NotFound(f"No handoff for project {project!r} yet (end a session in it to write one)")

    @staticmethod
    def _read_handoff_file(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise NotFound(f"The handoff file {path} no longer exists") from None
