"""Applying the events Claude Code hooks spooled (the file format: ``spool_files``).

A SessionStart opens (or reopens, on resume/compact) the session of the Claude Code session
id, a PreCompact checkpoints it, a SessionEnd ends it and writes its handoff. Events are
applied at every lifecycle call and on shutdown, one batch at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from session_buddy.core.project import analyze_project
from session_buddy.core.sessions import spool_files
from session_buddy.core.sessions.lifecycle import Lifecycle
from session_buddy.core.sessions.state import SessionState, SessionStore
from session_buddy.errors import ValidationError

log = logging.getLogger(__name__)


class SpoolApplier:
    def __init__(self, data_dir: Path, store: SessionStore, lifecycle: Lifecycle) -> None:
        self.data_dir = data_dir
        self.store = store
        self.lifecycle = lifecycle
        self._lock: asyncio.Lock | None = None

    def pending(self) -> int:
        return spool_files.pending_count(self.data_dir)

    async def process(self) -> int:
        """Apply the spooled events; returns how many were applied."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            events = await asyncio.to_thread(spool_files.claim_spooled, self.data_dir)
            applied = 0
            for event in events:
                try:
                    await self._apply(event)
                except Exception as exc:
                    log.warning("spooled %s event failed: %s", event.event, exc)
                    await asyncio.to_thread(
                        spool_files.fail_spooled, event.path, f"{type(exc).__name__}: {exc}"
                    )
                    continue
                await asyncio.to_thread(spool_files.finish_spooled, event)
                applied += 1
            return applied

    async def at_shutdown(self) -> None:
        try:
            await self.process()
        except Exception as exc:  # storage may be closed or never opened
            log.debug("spool at shutdown: %s", exc)

    async def _session_for(self, payload: dict[str, Any], at: datetime) -> SessionState | None:
        """The session of the event's Claude Code session id, opened when new."""
        claude_id = payload.get("session_id")
        if isinstance(claude_id, str) and claude_id:
            found = await self.store.by_claude_id(claude_id)
            if found is not None:
                return found
        cwd = payload.get("cwd")
        if not isinstance(cwd, str) or not cwd or not await asyncio.to_thread(os.path.isdir, cwd):
            return None
        info = await asyncio.to_thread(analyze_project, cwd)
        transcript = payload.get("transcript_path")
        state = SessionState.new(
            project=info.name,
            project_path=info.path,
            working_directory=cwd,
            origin="hook",
            claimed=False,
            claude_session_id=claude_id if isinstance(claude_id, str) else None,
            transcript_path=transcript if isinstance(transcript, str) else None,
            started_at=at,
            start_head=info.git.head if info.git is not None else None,
            owner=self.lifecycle.owners.local(),  # the hooks are the install's own user's
        )
        return await self.store.add(state)

    async def _apply(self, event: spool_files.SpooledEvent) -> None:
        at = datetime.fromtimestamp(event.received_at or time.time(), UTC)
        payload = event.payload
        if event.event not in spool_files.EVENTS:
            raise ValidationError(f"unknown spooled event {event.event!r}")
        state = await self._session_for(payload, at)
        if state is None:
            return
        if event.event == "SessionStart":
            await self._on_start(state, payload)
        elif event.event == "PreCompact" and state.active:
            trigger = payload.get("trigger", "auto")
            await self.lifecycle.run_checkpoint(
                state, f"pre-compact ({trigger})", git_commit=False, explicit_git=False
            )
        elif event.event == "SessionEnd" and state.active:
            reason = payload.get("reason")
            state = await self.store.change(
                state.id, lambda s: replace(s, metadata={**s.metadata, "end_reason": reason})
            )
            await self.lifecycle.finish(state, ended_at=at)

    async def _on_start(self, state: SessionState, payload: dict[str, Any]) -> None:
        transcript = payload.get("transcript_path")
        if not state.active and payload.get("source") in ("resume", "compact"):
            await self.store.change(state.id, lambda s: replace(s, status="active", ended_at=None))
        elif isinstance(transcript, str) and transcript and not state.transcript_path:
            await self.store.change(state.id, lambda s: replace(s, transcript_path=transcript))
