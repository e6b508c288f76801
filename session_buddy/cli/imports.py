"""``session-buddy import ...``: bring existing agent transcripts into memory.

``import_app`` is a typer sub-app (the main CLI mounts it as ``import``). The import runs in
the shared service (:mod:`session_buddy.server.cli_routes`); this shows its progress bar on
stderr and prints a summary at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from session_buddy.cli._common import err, out, print_error, through_service
from session_buddy.errors import SessionBuddyError

import_app = typer.Typer(
    name="import",
    help="Import agent transcripts into memory.",
    no_args_is_help=True,
    add_completion=False,
)


@import_app.callback()
def _group() -> None:
    """Import agent transcripts into memory (incremental: re-running stores nothing twice)."""


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date: use YYYY-MM-DD or an ISO timestamp"
        ) from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@import_app.command("claude-code")
def claude_code(
    projects_dir: Annotated[
        Path | None,
        typer.Option(
            "--projects-dir",
            help="Folder of Claude Code transcripts (default ~/.claude/projects) or one .jsonl",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only transcripts modified since this date (YYYY-MM-DD)"),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=4096, help="Turns per store call (offset saved after each)"
        ),
    ] = 256,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file or folder (also SESSION_BUDDY_CONFIG)"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout")
    ] = False,
) -> None:
    """Import Claude Code transcripts: conversations and insights, incrementally.

    The import runs in the data directory's service (started when none runs), the one
    process that opens the store; progress is shown here. Ctrl-C stops it after the batch
    in progress, and running the command again resumes."""
    from session_buddy.logs import route_logging_to_stderr
    from session_buddy.settings import load_settings

    try:
        loaded = load_settings(config)
    except SessionBuddyError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    route_logging_to_stderr(loaded.settings.log_level, loaded.settings.log_file)
    stamp = _since(since)
    from session_buddy.core.transcripts import claude_projects_dir

    # this user's folder, as this shell sees it (the service may run with another cwd)
    root = (projects_dir or claude_projects_dir()).expanduser().resolve()
    arguments: dict[str, Any] = {"batch_size": batch_size, "path": str(root)}
    if stamp is not None:
        arguments["since"] = stamp.isoformat()
    report = _run(config, loaded.settings, arguments)
    if as_json:
        import json

        typer.echo(json.dumps(report))
        return
    _print_summary(report)


def _run(config: Path | None, settings: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    with Progress(
        TextColumn("[bold]importing[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("import", total=None)

        def progress(step: dict[str, Any]) -> None:
            total = int(step.get("total") or 0)
            bar.update(task, completed=int(step.get("done") or 0), total=total or None)

        return through_service(config, settings, "import", arguments, progress)


def _print_summary(report: dict[str, Any]) -> None:
    table = Table("", "count", title=f"Imported {report['path']}", show_header=False)
    rows = [
        ("transcript files", report["files"]),
        ("  read", report["files_read"]),
        ("  unchanged", report["files_unchanged"]),
        ("  read again (rewritten)", report["files_restarted"]),
        ("turns found", report["turns"]),
        ("  stored", report["stored"]),
        ("  already stored", report["duplicates"]),
        ("  refused", report["rejected"]),
        ("insights stored", report["insights"]),
        ("  already stored", report["insight_duplicates"]),
        ("malformed lines skipped", report["malformed"]),
        ("lines with invalid UTF-8", report["invalid_utf8"]),
        ("oversized lines skipped", report["oversized"]),
        ("incomplete last lines (bytes)", report["pending_bytes"]),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    out.print(table)
    seconds = report["seconds"]
    rate = report["turns"] / seconds if seconds else 0.0
    out.print(f"{report['bytes_read']:,} bytes in {seconds:.1f} s ({rate:,.0f} turns/s)")
    for line in report["errors"]:
        err.print(f"[yellow]warning:[/yellow] {escape(str(line))}")


if __name__ == "__main__":
    import_app()
