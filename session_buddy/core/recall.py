"""What Claude Code's hooks put into the agent's context without a tool call.

- ``SessionStart``: the *brief* of the project the session opened in: the last handoff's
  summary, the most recent reflections and insights, open problems. Bounded
  (``hooks.brief_max_chars``, default 2,500 characters); empty when the project has no memory.
- ``UserPromptSubmit``: at most ``hooks.recall_limit`` memories of this project and the projects
  it depends on that match the prompt with **high** confidence, bounded
  (``hooks.recall_max_chars``, default 1,500); nothing for a prompt with nothing relevant, and
  nothing already injected into the same Claude Code session. A prompt naming an error a
  session fixed before (a pasted exception line, a failing test id, an error code:
  :mod:`session_buddy.core.errorfix`) gets that fix first, as one line.

The texts are plain and short: they are read by a model with a finite context. The service
answers them for the hook over loopback (:mod:`session_buddy.server.hook_routes`); a hook that
cannot reach it falls back to the handoff file (:func:`session_buddy.core.sessions.spool_files.start_context`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from session_buddy.core.failures import one_line
from session_buddy.core.handoff import latest_handoff_summary

if TYPE_CHECKING:
    from session_buddy.adapters.storage._base import Record
    from session_buddy.core.memory import MemoryService
    from session_buddy.core.projects import ProjectService
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

#: what is a memory worth injecting: what someone stored or the agent concluded, not the raw
#: conversation turns (the prompt itself is one, indexed as soon as it is written)
MEMORY_KINDS = ["reflection", "insight"]
#: Claude Code sessions whose injected memories are remembered (oldest forgotten first)
REMEMBERED_SESSIONS = 256
log = logging.getLogger(__name__)


def bounded(lines: list[str], limit: int) -> str:
    """The lines joined, as many whole lines as fit in ``limit`` characters, saying how many
    were left out."""
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        left = len(lines) - index - 1
        note = f"(+{left} more: search session-buddy)" if left else ""
        if used + len(line) + 1 + len(note) > limit:
            omitted = len(lines) - index
            kept.append(f"(+{omitted} more: search session-buddy)")
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)


def fix_line(record: Record) -> str:
    """``- [fixed before] KeyError: 'user_id' -> <how> (files: a.py; session 1a2b3c4d)``."""
    d = record.data
    how = d.get("description") or "edits"
    files = ", ".join((d.get("files") or [])[:4])
    where = "; ".join(
        part
        for part in (
            f"files: {files}" if files else "",
            f"session {str(d.get('session_id'))[:8]}" if d.get("session_id") else "",
            str(d.get("fixed_at") or "")[:10],
        )
        if part
    )
    return one_line(f"- [fixed before] {d.get('signature')} -> {how} ({where})", 500)


@dataclass
class HookContext:
    """The text to inject (empty: nothing) and what it is made of, for logs and tests."""

    text: str
    memory_ids: list[str]


class RecallService:
    def __init__(
        self,
        memory: MemoryService,
        projects: ProjectService,
        settings: SessionBuddySettings,
        paths: SessionPaths,
    ) -> None:
        self.memory = memory
        self.projects = projects
        self.settings = settings
        self.paths = paths
        self._injected: OrderedDict[str, set[str]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> RecallService:
        from session_buddy.core.memory import MemoryService
        from session_buddy.core.projects import ProjectService
        from session_buddy.paths import SessionPaths
        from session_buddy.settings import SessionBuddySettings

        return cls(
            resolve(MemoryService),
            resolve(ProjectService),
            resolve(SessionBuddySettings),
            resolve(SessionPaths),
        )

    # -- SessionStart ------------------------------------------------------------------------

    async def session_start(self, payload: dict[str, Any]) -> HookContext:
        cwd = payload.get("cwd")
        if not isinstance(cwd, str) or not cwd.strip():
            return HookContext("", [])
        project = await self.projects.from_directory(cwd)
        limit = self.settings.hooks.brief_max_chars
        parts: list[str] = []
        handoff = await asyncio.to_thread(self._handoff_summary, cwd, project)
        if handoff:
            parts.append("Last handoff:\n" + handoff)
        wanted = self.settings.hooks.brief_memories
        recent = (
            await self.memory.list_recent(projects=[project], kinds=MEMORY_KINDS, limit=wanted)
            if wanted
            else []
        )
        lines = [f"- [{item.kind}] {one_line(item.content, 220)}" for item in recent]
        if not parts and not lines:
            return HookContext("", [])
        head = f"session-buddy memory of project {project}:"
        text = head + "\n" + "\n\n".join(parts)
        if lines:
            room = limit - len(text) - len("\n\nRecent reflections and insights:\n") - 80
            text += "\n\nRecent reflections and insights:\n" + bounded(lines, max(200, room))
        text += "\n(Tools: search, start for the full brief.)"
        self._remember(payload, [item.id for item in recent])
        return HookContext(text[:limit], [item.id for item in recent])

    def _handoff_summary(self, cwd: str, project: str) -> str | None:
        found = latest_handoff_summary(
            cwd,
            self.paths.data,
            self.settings.sessions.handoff_dir,
            project,
            max_lines=10,
            max_chars=1200,
        )
        return found[1] if found else None

    # -- UserPromptSubmit ----------------------------------------------------------------------

    async def user_prompt(self, payload: dict[str, Any]) -> HookContext:
        prompt = payload.get("prompt")
        cwd = payload.get("cwd")
        if not self.settings.hooks.recall or not isinstance(prompt, str) or not prompt.strip():
            return HookContext("", [])
        scope: list[str] | None = None
        if isinstance(cwd, str) and cwd.strip():
            project = await self.projects.from_directory(cwd)
            scope = [related.project for related in await self.projects.related(project)]
        seen = self._seen(payload)
        fixes = [f for f in await self._known_errors(prompt, scope) if f.id not in seen]
        found = await self.memory.search(
            prompt[:2000],
            projects=scope,
            kinds=MEMORY_KINDS,
            limit=self.settings.hooks.recall_limit + 5,
        )
        fresh = [h for h in found.hits if h.confidence == "high" and h.id not in seen]
        fresh = fresh[: max(0, self.settings.hooks.recall_limit - len(fixes))]
        if not fresh and not fixes:
            return HookContext("", [])
        lines = [fix_line(f) for f in fixes] + [
            f"- [{hit.kind}{', ' + hit.project if hit.project else ''}] {one_line(hit.content, 400)}"
            for hit in fresh
        ]
        text = "session-buddy recalls (relevant to this prompt):\n" + bounded(
            lines, self.settings.hooks.recall_max_chars - 60
        )
        ids = [f.id for f in fixes] + [hit.id for hit in fresh]
        self._remember(payload, ids)
        return HookContext(text, ids)

    async def _known_errors(self, prompt: str, scope: list[str] | None) -> list[Record]:
        """The stored fixes of errors the prompt names exactly (core.errorfix)."""
        from session_buddy.core.errorfix import ErrorMemory

        try:
            return await ErrorMemory(self.memory.storage, self.settings).recall(prompt, scope)
        except Exception as exc:  # the recall goes on without them
            log.warning("looking up known errors failed: %s", exc)
            return []

    # -- what a session was already given ------------------------------------------------------

    @staticmethod
    def _session_key(payload: dict[str, Any]) -> str | None:
        session = payload.get("session_id")
        return session if isinstance(session, str) and session else None

    def _seen(self, payload: dict[str, Any]) -> set[str]:
        key = self._session_key(payload)
        with self._lock:
            return set(self._injected.get(key, set())) if key else set()

    def _remember(self, payload: dict[str, Any], ids: list[str]) -> None:
        key = self._session_key(payload)
        if key is None or not ids:
            return
        with self._lock:
            self._injected.setdefault(key, set()).update(ids)
            self._injected.move_to_end(key)
            while len(self._injected) > REMEMBERED_SESSIONS:
                self._injected.popitem(last=False)
