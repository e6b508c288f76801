"""What Claude Code runs as ``session-buddy hook <Event>``: read the hook JSON, act, exit 0.

A hook must never block or break Claude Code: it reads the event JSON from stdin (for at most a
second), spools lifecycle events for the server, prints Claude Code's hook JSON with the
context to inject (SessionStart, UserPromptSubmit: asked of the running service, see
:mod:`session_buddy.server.hook_link`) and exits 0 within a couple of seconds whatever happens
(a watchdog ends the process if anything hangs). Only that JSON reaches stdout. Imports are the
standard library and session-buddy's light modules — never typer, acb, duckdb, fastmcp or onnx;
settings are loaded only when ``SESSION_BUDDY_DATA_DIR`` does not say where the data is.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from session_buddy.core import hooks as hooks_core

HOOK_DEADLINE_S = 2.0
DEFAULT_SERVICE_TIMEOUT_S = 1.5
STDIN_TIMEOUT_S = 1.0
NUDGE_TIMEOUT_S = 0.5
HOOK_LOG = "hooks.log"


@dataclass
class _HookSettings:
    data_dir: Path
    handoff_dir: str | None = None
    service_timeout_s: float = DEFAULT_SERVICE_TIMEOUT_S
    user: str | None = None


def _settings_values() -> _HookSettings:
    """What a hook needs of the settings (defaults when they cannot be loaded)."""
    from session_buddy.paths import DATA_DIR_ENV, SessionPaths

    values = _HookSettings(SessionPaths.from_settings(None).data)
    if os.environ.get(DATA_DIR_ENV):
        return values  # the common case under Claude Code's env: no settings to load
    try:
        from session_buddy.settings import load_settings

        settings = load_settings().settings
        values.data_dir = SessionPaths.from_settings(settings.data_dir).data
        configured = settings.sessions.handoff_dir
        values.handoff_dir = str(configured) if configured else None
        values.service_timeout_s = settings.hooks.service_timeout_ms / 1000
        values.user = settings.user
    except Exception:
        pass
    return values


def _read_stdin(stream: TextIO, timeout: float) -> str:
    """Read what Claude Code wrote to stdin, giving up after ``timeout`` seconds."""
    try:
        if stream is None or stream.isatty():
            return ""
    except (ValueError, OSError):
        return ""
    box: dict[str, str] = {}

    def reader() -> None:
        try:
            buffer = getattr(stream, "buffer", None)
            data = (
                buffer.read(hooks_core.MAX_PAYLOAD_BYTES)
                if buffer is not None
                else stream.read(hooks_core.MAX_PAYLOAD_BYTES)
            )
            box["text"] = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        except Exception:
            box["text"] = ""

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    return box.get("text", "")


def run_hook(event: str, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Handle one Claude Code hook event; always returns 0 (and never raises).

    Lifecycle events are spooled for the server. ``SessionStart`` and ``UserPromptSubmit``
    also print Claude Code's hook JSON with ``additionalContext``: the running service's brief
    or recall (:mod:`session_buddy.server.hook_link`); when no service answers, SessionStart
    starts one in the background and falls back to the last handoff file, and a prompt gets
    nothing. Only that JSON ever reaches stdout; reasons go to stderr."""
    out = stdout or sys.stdout
    started = time.monotonic()
    seen: list[_HookSettings] = []

    def deadline() -> None:  # never make Claude Code wait: say so and leave
        _log(seen[0] if seen else None, f"{event}: deadline of {HOOK_DEADLINE_S}s reached")
        os._exit(0)

    watchdog = threading.Timer(HOOK_DEADLINE_S, deadline)
    watchdog.daemon = True
    watchdog.start()
    try:
        raw = _read_stdin(stdin or sys.stdin, STDIN_TIMEOUT_S)
        payload: dict[str, Any] = hooks_core.parse_hook_input(raw)
        name = hooks_core.normalise_event(event)
        if name is None:
            print(f"session-buddy hook: unknown event {event!r} ignored", file=sys.stderr)
            return 0
        values = _settings_values()
        seen.append(values)
        if name in hooks_core.SPOOLED:
            try:
                hooks_core.spool_event(values.data_dir, name, payload)
            except OSError as exc:
                print(
                    f"session-buddy hook: cannot spool {name} in {values.data_dir}: {exc}",
                    file=sys.stderr,
                )
        budget = max(0.1, HOOK_DEADLINE_S - (time.monotonic() - started) - 0.2)
        values.service_timeout_s = min(values.service_timeout_s, budget)
        outcome = "spooled"
        if name in hooks_core.CONTEXT_EVENTS and payload.get("source") != "compact":
            note = _context(name, payload, values)
            outcome = f"injected {len(note)} chars" if note else "nothing to inject"
            if note:
                out.write(json.dumps(context_output(name, note)) + "\n")
                out.flush()
        elif name in hooks_core.PERMISSION_EVENTS:
            outcome = _permission(name, payload, values, out)
        elif name in hooks_core.SPOOLED:
            _nudge(name, payload, values)
        _log(values, f"{name}: {outcome} in {(time.monotonic() - started) * 1000:.0f} ms")
    except BaseException as exc:  # a hook must never break Claude Code
        with contextlib.suppress(Exception):
            print(f"session-buddy hook: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        watchdog.cancel()
    return 0


def _log(values: _HookSettings | None, message: str) -> None:
    """Say it on stderr (Claude Code shows a hook's stderr in its debug output) and append it
    to ``<data>/logs/hooks.log`` (best effort: a hook never fails over its log)."""
    line = f"session-buddy hook: {message}"
    with contextlib.suppress(Exception):
        print(line, file=sys.stderr)
    if values is None:
        return
    with contextlib.suppress(Exception):
        logs = values.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with open(logs / HOOK_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} pid {os.getpid()} {message[:500]}\n")


def _permission(name: str, payload: dict[str, Any], values: _HookSettings, out: TextIO) -> str:
    """PreToolUse / PostToolUse: the service decides (learned permissions) and counts; with no
    service, nothing is printed and Claude Code asks as usual."""
    from session_buddy.server.hook_link import ask

    answer, reason = ask(values.data_dir, name, payload, values.service_timeout_s, values.user)
    if answer is None:
        if name == "PostToolUse":  # an approval is never lost: the service counts it later
            hooks_core.spool_event(values.data_dir, name, payload, hooks_core.APPROVALS_QUEUE)
            return f"approval spooled ({reason})"
        return f"no decision ({reason})"
    decision = answer.get("hookSpecificOutput")
    if isinstance(decision, dict):
        out.write(json.dumps({"hookSpecificOutput": decision}) + "\n")
        out.flush()
        return f"allowed: {decision.get('permissionDecisionReason', '')}"
    return str(answer.get("reason") or answer.get("error") or "recorded")


def _nudge(name: str, payload: dict[str, Any], values: _HookSettings) -> None:
    """Tell a running service that an event was spooled, so it applies it now rather than at
    its next tool call (nothing is lost without a service: the spool keeps the event)."""
    from session_buddy.server.hook_link import ask

    timeout = min(values.service_timeout_s, NUDGE_TIMEOUT_S)
    _, reason = ask(values.data_dir, name, payload, timeout, values.user)
    if reason != "ok":
        _log(values, f"{name}: could not nudge the service: {reason}")


def context_output(event: str, text: str) -> dict[str, Any]:
    """Claude Code's hook JSON that adds ``text`` to the agent's context."""
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


def _context(name: str, payload: dict[str, Any], values: _HookSettings) -> str | None:
    from session_buddy.server.hook_link import ask, warm

    answer, reason = ask(values.data_dir, name, payload, values.service_timeout_s, values.user)
    if answer is not None:
        text = answer.get("additionalContext")
        return text if isinstance(text, str) else ""
    _log(values, f"{name}: {reason}")
    if name != "SessionStart":
        return None
    _log(values, warm(values.data_dir))
    return hooks_core.start_context(payload, values.data_dir, values.handoff_dir)


def hook_command(event: str) -> int:
    """Run by Claude Code's hooks as ``session-buddy hook <event>`` (reads the hook JSON on
    stdin). Returns the exit code: always 0, within a couple of seconds."""
    return run_hook(event)
