"""``session-buddy health`` (asked of the running service), ``config``, ``docs`` and
``version``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from session_buddy.cli._common import ConfigOpt, app, err, load, out, print_error, through_service
from session_buddy.logs import route_logging_to_stderr
from session_buddy.settings import SessionBuddySettings


@app.command()
def health(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Check every component; exit code 1 when unhealthy."""
    loaded = load(config)
    route_logging_to_stderr(loaded.settings.log_level)
    report = _health_report(config, loaded.settings)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        colour = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
        out.print(
            f"session-buddy {report['version']}: [{colour[report['status']]}]{report['status']}[/]"
        )
        table = Table("component", "status", "message", "latency ms")
        for c in report["components"]:
            table.add_row(
                c["name"],
                f"[{colour[c['status']]}]{c['status']}[/]",
                c.get("message", ""),
                str(c.get("latency_ms", "")),
            )
        out.print(table)
        adapters = report.get("metadata", {}).get("adapters", {})
        out.print("adapters: " + ", ".join(f"{k}={v}" for k, v in adapters.items()))
    raise typer.Exit(1 if report["status"] == "unhealthy" else 0)


def _health_report(config: Path | None, settings: SessionBuddySettings) -> dict[str, Any]:
    """The running service's health (it holds the store); with none running, checked here
    under the service start lock, so a bridge starting the service meanwhile waits for it."""
    from session_buddy import di
    from session_buddy.adapters.health._base import HealthBase
    from session_buddy.paths import SessionPaths
    from session_buddy.server.discovery import live_service, start_lock

    data_dir = SessionPaths.from_settings(settings.data_dir).data

    async def here() -> dict[str, Any]:
        di.configure(settings)
        try:
            return await di.get(HealthBase).check()
        finally:
            await di.shutdown()

    if live_service(data_dir) is None:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(start_lock(data_dir))
            except OSError:  # no data dir to lock (health says why): no service starts there
                return asyncio.run(here())
            if live_service(data_dir) is None:
                return asyncio.run(here())
    return through_service(config, settings, "health", {})


@app.command("config")
def show_config(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the effective settings, where each value came from (secrets masked)."""
    from session_buddy.settings import explain

    loaded = load(config)
    rows = explain(loaded)
    if as_json:
        out.print_json(json.dumps({"files": [str(f) for f in loaded.files], "settings": rows}))
        return
    table = Table("setting", "value", "source")
    for row in rows:
        table.add_row(row["key"], row["value"], row["source"])
    out.print(table)
    out.print("files read: " + (", ".join(str(f) for f in loaded.files) or "(none)"))


@app.command()
def docs(
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Write docs/tools.md, docs/configuration.md and session_buddy/server/catalog.json",
        ),
    ] = False,
) -> None:
    """Generate the tool and settings reference from the code (docs/ of a checkout), and the
    list answers the stdio front gives before the server is loaded."""
    from session_buddy.cli.reference import catalog, catalog_json, settings_markdown, tools_markdown
    from session_buddy.server.catalog import CATALOG_FILE

    route_logging_to_stderr("WARNING")
    pages = {"tools.md": asyncio.run(tools_markdown()), "configuration.md": settings_markdown()}
    if not write:
        for text in pages.values():
            out.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    folder = Path(__file__).resolve().parents[2] / "docs"
    if not folder.is_dir():
        print_error(f"{folder} is not a docs folder (run from a checkout)")
        raise typer.Exit(2)
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
        err.print(f"wrote {folder / name}")
    CATALOG_FILE.write_text(catalog_json(asyncio.run(catalog())), encoding="utf-8")
    err.print(f"wrote {CATALOG_FILE}")


@app.command()
def version() -> None:
    """Print the version."""
    from session_buddy import __version__

    out.print(__version__)
