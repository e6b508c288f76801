"""The full ``session-buddy`` command: every command group mounted on one typer app.

Each module of this package holds one command group as module-level typer commands; importing
this module imports them all (typer and rich included), which is why the stdio ``serve`` and
``hook`` paths in :mod:`session_buddy.cli` never come here.
"""

from __future__ import annotations

import typer

from session_buddy.cli import dashboard, info, logs, serve, sync  # noqa: F401  (their commands register on import)
from session_buddy.cli._common import app
from session_buddy.cli.hook_runtime import hook_command
from session_buddy.cli.hooks import hooks_app
from session_buddy.cli.imports import import_app
from session_buddy.cli.key import key_app
from session_buddy.cli.migrate import migrate_command
from session_buddy.cli.permissions import permissions_app
from session_buddy.cli.report import report_command

app.add_typer(hooks_app, name="hooks", help="Install or remove Claude Code hooks")
app.add_typer(import_app, name="import", help="Import Claude Code transcripts")
app.add_typer(permissions_app, name="permissions", help="Learned permissions for shell commands")
app.command("migrate")(migrate_command)
app.add_typer(key_app, name="key", help="Keys for encryption at rest (storage.encryption)")
app.add_typer(sync.sync_app, name="sync", help="Sync to Akosha: the dead-letter queue")
app.add_typer(sync.events_app, name="events", help="Events: webhook deliveries")
app.command("report")(report_command)


@app.command()
def hook(event: str) -> None:
    """Run by Claude Code hooks (reads the hook JSON on stdin; always exits 0)."""
    raise typer.Exit(hook_command(event))


__all__ = ["app"]
