"""What every command module shares: the typer app, the consoles, ``--config``, loading, and
the way to the service for the commands that use the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from session_buddy.errors import SessionBuddyError
from session_buddy.settings import LoadedSettings, SessionBuddySettings

app = typer.Typer(
    name="session-buddy",
    help="Local memory and session manager for AI coding agents (MCP server).",
    no_args_is_help=True,
    add_completion=False,
)
# soft_wrap: an error line is not folded at 80 columns when stderr is not a terminal (a
# path in it stays whole for whoever reads or greps it)
err = Console(stderr=True, soft_wrap=True)
out = Console()


def print_error(message: object) -> None:
    """One ``error:`` line on stderr, ``message`` as plain text: a path or an exception's
    words may hold [brackets], which rich would take for markup (a MarkupError, or a part
    that vanishes)."""
    err.print(f"[red]error:[/red] {escape(str(message))}")


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Settings file or folder (also SESSION_BUDDY_CONFIG)"),
]


def load(config: Path | None) -> LoadedSettings:
    """The layered settings, or exit 2 with the reason."""
    from session_buddy.settings import load_settings

    try:
        return load_settings(config)
    except SessionBuddyError as exc:
        print_error(exc)
        raise typer.Exit(2) from None


def through_service(
    config: Path | None,
    settings: SessionBuddySettings,
    command: str,
    arguments: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``command`` in the data directory's service, the one process that opens the store
    (started when none runs, as a bridge starts it): its result, or exit with the reason
    (2: bad arguments, 1: failed, 130: interrupted)."""
    from session_buddy.core.users import local_user
    from session_buddy.paths import SessionPaths
    from session_buddy.server.cli_link import CommandFailed, ServiceUnavailable, run_command

    data_dir = SessionPaths.from_settings(settings.data_dir).data
    try:
        return run_command(
            data_dir,
            str(config) if config else None,
            local_user(settings),
            command,
            arguments,
            on_progress,
        )
    except CommandFailed as exc:
        print_error(exc)
        raise typer.Exit(2 if exc.invalid else 1) from None
    except ServiceUnavailable as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: what was stored is kept; run the same command again to resume")
        raise typer.Exit(130) from None


#: a CLI tool call may run long (a sync round of many batches); the liveness probe still
#: tells a hung service from a slow call
CLI_CALL_TIMEOUT_S = 6 * 3600.0


def tool_through_service(
    config: Path | None, settings: SessionBuddySettings, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """Call ``tool`` on the data directory's service (started when none runs, as a bridge
    starts it) and return its answer, or exit 1 with the reason."""
    from session_buddy.core.users import local_user
    from session_buddy.paths import SessionPaths
    from session_buddy.server.bridge import Timeouts, call_tool

    data_dir = SessionPaths.from_settings(settings.data_dir).data
    try:
        data = call_tool(
            data_dir,
            str(config) if config else None,
            tool,
            arguments,
            user=local_user(settings),
            timeouts=Timeouts(call_s=CLI_CALL_TIMEOUT_S),
        )
    except (RuntimeError, OSError) as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again")
        raise typer.Exit(130) from None
    inner = data.get("result") if set(data) == {"result"} else None
    return inner if isinstance(inner, dict) else data
