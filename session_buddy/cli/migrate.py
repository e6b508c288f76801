"""``session-buddy migrate --from duckdb:PATH --to postgres:DSN`` (and back).

``migrate_command`` is a plain typer command function; the main CLI mounts it as
``migrate``. The work is :mod:`session_buddy.core.migrate`: a resumable, verified copy. When
the source or the target is the store of this data directory's service, the copy runs in
that service (started when none runs), which alone opens it; otherwise here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from session_buddy.cli._common import err, out, print_error, through_service
from session_buddy.errors import SessionBuddyError
from session_buddy.settings import SessionBuddySettings


def migrate_command(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="The store to copy: duckdb:PATH or postgres:DSN (read only)",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--to",
            help="An empty store to copy into (or one holding an unfinished copy from the "
            "same source, which is resumed): duckdb:PATH or postgres:DSN",
            show_default=False,
        ),
    ],
    batch: Annotated[int, typer.Option("--batch", min=1, help="Items per transaction")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file or folder (also SESSION_BUDDY_CONFIG)"),
    ] = None,
) -> None:
    """Copy every memory, record and setting of one store into another (DuckDB <->
    PostgreSQL), verify counts and checksums; run it again to resume an interrupted copy.

    A password for a postgres DSN comes from the environment variable named by
    storage.password_env (default SESSION_BUDDY_PG_PASSWORD) when the DSN has none."""
    from session_buddy.logs import route_logging_to_stderr
    from session_buddy.settings import load_settings

    try:
        settings = load_settings(config).settings
        route_logging_to_stderr(settings.log_level)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(f"copying {table}", total=total or None)
                bar.update(tasks[table], completed=done, total=total or None)

            report = _migrate(config, settings, source, target, batch, progress)
    except SessionBuddyError as exc:
        print_error(exc)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume the copy")
        raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(
        f"copied {report['source']} -> {report['target']}: {report['items']} items "
        f"({report['items_copied']} in this run{', resumed' if report['resumed'] else ''}), "
        f"{report['records']} records, {report['meta']} settings in {report['seconds']:.1f} s; "
        f"verified: counts and SHA-256 match (items {report['digest']['items']['sha256'][:16]})",
        markup=False,
        highlight=False,
    )


def _migrate(
    config: Path | None,
    settings: SessionBuddySettings,
    source: str,
    target: str,
    batch: int,
    progress: Callable[[str, int, int], None],
) -> dict[str, Any]:
    """The copy, run in the data directory's service when either store is the one it holds
    (started when none runs: it alone opens that store), else here."""
    from session_buddy.core.migrate import configured_endpoint, parse_endpoint, run_migration
    from session_buddy.paths import SessionPaths

    data_dir = SessionPaths.from_settings(settings.data_dir).data
    mine = configured_endpoint(settings, data_dir)
    ends = {parse_endpoint(source).describe(), parse_endpoint(target).describe()}
    if mine is not None and mine.describe() in ends:
        return through_service(
            config,
            settings,
            "migrate",
            {"source": source, "target": target, "batch": batch},
            lambda step: progress(str(step["table"]), int(step["done"]), int(step["total"])),
        )
    report = asyncio.run(run_migration(source, target, settings, batch=batch, progress=progress))
    return asdict(report)
