"""``session-buddy hooks install|uninstall`` and ``session-buddy hook <event>``.

The hook command is what Claude Code runs on SessionStart, PreCompact and SessionEnd. It must
never block or break Claude Code: it reads the event JSON from stdin (for at most a second),
spools it for the server, prints the latest handoff summary on SessionStart, and exits 0 within
a couple of seconds whatever happens (a watchdog ends the process if anything hangs). Its
imports are the standard library, typer, and session-buddy's light modules (settings is
loaded only when SESSION_BUDDY_DATA_DIR is not set) — never acb, duckdb, fastmcp or onnx.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from session_buddy.cli import claude_settings
from session_buddy.core.sessions import spool_files

HOOK_DEADLINE_S = 2.0
STDIN_TIMEOUT_S = 1.0

hooks_app = typer.Typer(
    name="hooks",
    help="Install or remove session-buddy's Claude Code hooks (SessionStart → start, "
    "PreCompact → checkpoint, SessionEnd → end).",
    no_args_is_help=True,
)

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project", help="Project folder: hooks go to DIR/.claude/settings.json", file_okay=False
    ),
]
UserOpt = Annotated[
    bool, typer.Option("--user", help="All projects: hooks go to ~/.claude/settings.json")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show the change as a diff; write nothing")
]


def _settings_values() -> tuple[Path, str | None]:
    """The data directory and the configured handoff folder (defaults when settings fail)."""
    from session_buddy.paths import DATA_DIR_ENV, SessionPaths

    handoff_dir: str | None = None
    data_dir: Path | None = None
    if os.environ.get(DATA_DIR_ENV):
        data_dir = SessionPaths.from_settings(None).data
    try:
        from session_buddy.settings import load_settings

        settings = load_settings().settings
        if data_dir is None:
            data_dir = SessionPaths.from_settings(settings.data_dir).data
        sessions = getattr(settings, "sessions", None)
        configured = getattr(sessions, "handoff_dir", None)
        handoff_dir = str(configured) if configured else None
    except Exception:
        pass
    if data_dir is None:
        data_dir = SessionPaths.from_settings(None).data
    return data_dir, handoff_dir


def _target(project: Path | None, user: bool) -> Path:
    try:
        return claude_settings.settings_file(project, user)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _show(plan: claude_settings.HookPlan, dry_run: bool) -> None:
    verb = "install" if plan.action == "install" else "remove"
    if not plan.changed:
        what = "already installed" if plan.action == "install" else "not installed"
        typer.echo(f"session-buddy hooks are {what} in {plan.path}; nothing to do.")
        return
    if dry_run:
        typer.echo(f"Would {verb} hooks for {', '.join(plan.events)} in {plan.path}:")
        typer.echo(plan.diff() or "(no textual change)")
        return
    done = "Installed" if plan.action == "install" else "Removed"
    extra = " (restored the file as it was before install)" if plan.restored_exactly else ""
    typer.echo(f"{done} session-buddy hooks for {', '.join(plan.events)} in {plan.path}{extra}.")


@hooks_app.command("install")
def install(project: ProjectOpt = None, user: UserOpt = False, dry_run: DryRunOpt = False) -> None:
    """Add the hooks to settings.json, keeping every hook already there. Running it twice
    changes nothing."""
    path = _target(project, user)
    try:
        plan = claude_settings.plan_install(path)
        data_dir, _ = _settings_values()
        if not dry_run:
            claude_settings.apply_plan(plan, data_dir / "hooks")
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(plan, dry_run)


@hooks_app.command("uninstall")
def uninstall(
    project: ProjectOpt = None, user: UserOpt = False, dry_run: DryRunOpt = False
) -> None:
    """Remove exactly the hooks install added (the file is restored byte for byte when it was
    not edited since)."""
    path = _target(project, user)
    try:
        data_dir, _ = _settings_values()
        plan = claude_settings.plan_uninstall(path, data_dir / "hooks")
        if not dry_run:
            claude_settings.apply_plan(plan, data_dir / "hooks")
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(plan, dry_run)


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
                buffer.read(spool_files.MAX_PAYLOAD_BYTES)
                if buffer is not None
                else stream.read(spool_files.MAX_PAYLOAD_BYTES)
            )
            box["text"] = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        except Exception:
            box["text"] = ""

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    return box.get("text", "")


def run_hook(event: str, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Spool one Claude Code hook event; always returns 0 (and never raises)."""
    out = stdout or sys.stdout
    watchdog = threading.Timer(HOOK_DEADLINE_S, lambda: os._exit(0))
    watchdog.daemon = True
    watchdog.start()
    try:
        raw = _read_stdin(stdin or sys.stdin, STDIN_TIMEOUT_S)
        payload: dict[str, Any] = spool_files.parse_hook_input(raw)
        name = spool_files.normalise_event(event)
        if name is None:
            print(f"session-buddy hook: unknown event {event!r} ignored", file=sys.stderr)
            return 0
        data_dir, handoff_dir = _settings_values()
        try:
            spool_files.spool_event(data_dir, name, payload)
        except OSError as exc:
            print(f"session-buddy hook: cannot spool {name} in {data_dir}: {exc}", file=sys.stderr)
        if name == "SessionStart" and payload.get("source") != "compact":
            note = spool_files.start_context(payload, data_dir, handoff_dir)
            if note:
                out.write(note + "\n")
                out.flush()
    except BaseException as exc:  # a hook must never break Claude Code
        with contextlib.suppress(Exception):
            print(f"session-buddy hook: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        watchdog.cancel()
    return 0


def hook_command(event: str) -> int:
    """Run by Claude Code's hooks as ``session-buddy hook <event>`` (reads the hook JSON on
    stdin). Returns the exit code: always 0, within a couple of seconds."""
    return run_hook(event)
