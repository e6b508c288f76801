"""The spool Claude Code's hooks write to, and what a hook reads back at SessionStart.

Hooks (``SessionStart`` → start, ``PreCompact`` → checkpoint, ``SessionEnd`` → end) run the
command ``session-buddy hook <Event>``. The MCP server of a session is a stdio child process
of Claude Code that a hook cannot reach, and DuckDB allows one writing process, so a hook
never opens the database: it writes the event it received as one JSON file in
``<data>/spool/`` (atomically: temp file + rename) and exits 0. The server claims spooled
events (an atomic rename into ``spool/processing/``) when a lifecycle tool runs and on
shutdown, and applies them: a session opened, a checkpoint, a session ended with its handoff.
Installing the hooks in Claude Code's settings files is :mod:`session_buddy.cli.claude_settings`.

Standard library only: this module is on the hook's path, which must finish in well under a
second whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Claude Code event -> what session-buddy does with it
EVENTS: dict[str, str] = {
    "SessionStart": "start",
    "UserPromptSubmit": "recall",
    "PreToolUse": "permission",
    "PostToolUse": "approved",
    "PreCompact": "checkpoint",
    "SessionEnd": "end",
}
#: the tools whose calls the permission hooks see (Claude Code's hook matcher)
TOOL_MATCHERS = {"PreToolUse": "Bash", "PostToolUse": "Bash"}
#: the events the server applies from the spool (the others only ask the service for context)
SPOOLED = frozenset({"SessionStart", "PreCompact", "SessionEnd"})
#: the events whose hook output is context for the agent (Claude Code's additionalContext)
CONTEXT_EVENTS = frozenset({"SessionStart", "UserPromptSubmit"})
#: the events the service answers with a permission decision (learned permissions)
PERMISSION_EVENTS = frozenset({"PreToolUse", "PostToolUse"})
MAX_PAYLOAD_BYTES = 1024 * 1024
STALE_PROCESSING_S = 600.0

_OURS = re.compile(r"session[-_]buddy.*\bhook\s+['\"]?(" + "|".join(EVENTS) + r")\b")


def is_ours(hook: Any) -> bool:
    """A hook entry of a Claude Code settings file that runs ``session-buddy hook <Event>``."""
    return (
        isinstance(hook, dict)
        and isinstance(hook.get("command"), str)
        and bool(_OURS.search(hook["command"]))
    )


def without_our_hooks(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Claude Code settings ``data`` without session-buddy's hook entries (a group left empty
    goes, and ``hooks`` when nothing is left in it), and the events they were under."""
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return data, []
    removed: list[str] = []
    new_hooks: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            new_hooks[event] = groups
            continue
        kept_groups = []
        for group in groups:
            inner = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(inner, list) or not any(is_ours(h) for h in inner):
                kept_groups.append(group)
                continue
            removed.append(event)
            kept = [h for h in inner if not is_ours(h)]
            if kept:
                kept_groups.append({**group, "hooks": kept})
        if kept_groups or event not in removed:
            new_hooks[event] = kept_groups
    if not removed:
        return data, []
    new_data = dict(data)
    if new_hooks:
        new_data["hooks"] = new_hooks
    else:
        new_data.pop("hooks", None)
    return new_data, sorted(set(removed))


#: the spool queue of tool approvals the permission hooks could not hand to a service
APPROVALS_QUEUE = "approvals"


def spool_dir(data_dir: Path | str, queue: str = "") -> Path:
    """The spool folder, or the folder of a named queue inside it."""
    folder = Path(data_dir) / "spool"
    return folder / queue if queue else folder


def normalise_event(name: str) -> str | None:
    """'SessionStart', 'session-start', 'session_start', 'start' → 'SessionStart'."""
    key = re.sub(r"[^a-z]", "", name.lower())
    for event, action in EVENTS.items():
        if key in (event.lower(), action, event.lower().replace("session", "")):
            return event
    return None


def spool_event(data_dir: Path | str, event: str, payload: dict[str, Any], queue: str = "") -> Path:
    """Append one event to the spool (or a named queue of it) atomically; returns its path."""
    folder = spool_dir(data_dir, queue)
    folder.mkdir(parents=True, exist_ok=True)
    session = re.sub(r"[^\w-]+", "", str(payload.get("session_id") or "unknown"))[:64] or "unknown"
    name = f"{time.time_ns():020d}-{event}-{session}.json"
    record = {"event": event, "received_at": time.time(), "payload": payload}
    fd, tmp = tempfile.mkstemp(prefix=".spool-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        target = folder / name
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@dataclass
class SpooledEvent:
    path: Path  # in spool/processing/ once claimed
    event: str
    received_at: float
    payload: dict[str, Any]


def claim_spooled(data_dir: Path | str, limit: int = 200, queue: str = "") -> list[SpooledEvent]:
    """Claim pending events, oldest first. A claim is an atomic rename into processing/, so
    two processes never apply the same event. Unreadable files go to failed/."""
    folder = spool_dir(data_dir, queue)
    processing = folder / "processing"
    if not folder.is_dir():
        return []
    processing.mkdir(exist_ok=True)
    now = time.time()
    # Events claimed by a process that died are retried.
    with contextlib.suppress(OSError):
        for stale in processing.iterdir():
            if stale.suffix == ".json" and now - stale.stat().st_mtime > STALE_PROCESSING_S:
                with contextlib.suppress(OSError):
                    os.replace(stale, folder / stale.name)
    names = sorted(p.name for p in folder.iterdir() if p.suffix == ".json" and p.is_file())
    claimed: list[SpooledEvent] = []
    for name in names[:limit]:
        target = processing / name
        try:
            os.replace(folder / name, target)  # atomic; the loser gets FileNotFoundError
            os.utime(target)
        except OSError:
            continue
        try:
            record = json.loads(target.read_text(encoding="utf-8"))
            event = str(record["event"])
            payload = record.get("payload") or {}
            if not isinstance(payload, dict):
                payload = {}
            claimed.append(
                SpooledEvent(target, event, float(record.get("received_at") or 0.0), payload)
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail_spooled(target, f"unreadable spool file: {exc}")
    return claimed


def finish_spooled(event: SpooledEvent) -> None:
    event.path.unlink(missing_ok=True)


def fail_spooled(path: Path, error: str) -> None:
    failed = path.parent.parent / "failed"
    with contextlib.suppress(OSError):
        failed.mkdir(exist_ok=True)
        os.replace(path, failed / path.name)
        (failed / (path.name + ".error.txt")).write_text(error, encoding="utf-8")


def pending_count(data_dir: Path | str) -> int:
    folder = spool_dir(data_dir)
    try:
        return sum(1 for p in folder.iterdir() if p.suffix == ".json")
    except OSError:
        return 0


# -- the hook itself ----------------------------------------------------------------------


def parse_hook_input(raw: str) -> dict[str, Any]:
    """Claude Code's hook JSON; garbage gives an empty payload (noted), never an error."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"unparsed_input": raw[:2000]}
    return data if isinstance(data, dict) else {"unparsed_input": raw[:2000]}


def start_context(
    payload: dict[str, Any], data_dir: Path, handoff_setting: str | None
) -> str | None:
    """The note a SessionStart hook prints (Claude Code adds a SessionStart hook's stdout to the
    context): the latest handoff of the project, read from its file."""
    from session_buddy.core.handoff import latest_handoff_summary, project_root_of

    cwd = payload.get("cwd")
    if not isinstance(cwd, str) or not cwd:
        return None
    found = latest_handoff_summary(cwd, data_dir, handoff_setting)
    if found is None:
        return None
    latest, summary = found
    root = project_root_of(cwd)
    return (
        f"session-buddy: the previous session of {root.name} left a handoff at {latest}\n"
        f"{summary}\n"
        "(Call the session-buddy `start` tool for the full brief.)"
    )
