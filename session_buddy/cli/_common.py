"""What every command module shares: the typer app, the consoles, ``--config`` and loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from session_buddy.errors import SessionBuddyError
from session_buddy.settings import LoadedSettings

app = typer.Typer(
    name="session-buddy",
    help="Local memory and session manager for AI coding agents (MCP server).",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()
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
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
