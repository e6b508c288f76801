"""``session-buddy permissions list|trust|revoke``: learned permissions, through the running
service (the one writer of the store; started when needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from session_buddy.cli._common import ConfigOpt, load, out, print_error

permissions_app = typer.Typer(
    name="permissions",
    help="Learned permissions: list, trust or revoke approved shell-command patterns.",
    no_args_is_help=True,
)
ProjectOpt = Annotated[
    Path | None, typer.Option("--project", help="Project folder (default: all / this folder)")
]


def _call(config: Path | None, arguments: dict[str, Any]) -> dict[str, Any]:
    from session_buddy.paths import SessionPaths
    from session_buddy.server.bridge import call_tool

    settings = load(config).settings
    data_dir = SessionPaths.from_settings(settings.data_dir).data
    try:
        return call_tool(data_dir, str(config) if config else None, "permissions", arguments)
    except RuntimeError as exc:
        print_error(exc)
        raise typer.Exit(2) from None


@permissions_app.command("list")
def list_patterns(project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Show the learned patterns, most approved first."""
    arguments: dict[str, Any] = {"action": "list", "limit": 200}
    if project:
        arguments["project"] = str(project.resolve())
    answer = _call(config, arguments)
    state = "on" if answer.get("enabled") else "off (permissions.enabled)"
    out.print(f"learned permissions: {state}; threshold {answer.get('threshold')}")
    table = Table("pattern", "category", "approvals", "automatic", "project")
    for row in answer.get("patterns", []):
        flag = "trusted" if row["trusted"] else "revoked" if row["revoked"] else ""
        table.add_row(
            str(row["pattern"]),
            str(row["category"]),
            str(row["approvals"]),
            ("yes" if row["auto_approved"] else "no") + (f" ({flag})" if flag else ""),
            str(row["project"]),
        )
    out.print(table)


@permissions_app.command("trust")
def trust(pattern: str, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Approve a low-risk pattern automatically from now on (never a destructive one)."""
    folder = str((project or Path.cwd()).resolve())
    _call(config, {"action": "trust", "pattern": pattern, "project": folder})
    out.print(f"trusted {pattern} in {folder}")


@permissions_app.command("revoke")
def revoke(pattern: str, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Never approve this pattern automatically, whatever its approvals."""
    folder = str((project or Path.cwd()).resolve())
    _call(config, {"action": "revoke", "pattern": pattern, "project": folder})
    out.print(f"revoked {pattern} in {folder}")
