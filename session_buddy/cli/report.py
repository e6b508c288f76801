"""``session-buddy report [--project] [--since] [--format md|html|json] [--output FILE]``.

``report_command`` is a plain typer command function; the main CLI mounts it as ``report``.
The history is :mod:`session_buddy.core.analytics`, the rendering :mod:`session_buddy.core.report`,
both run by the data directory's service (which alone opens the store; started when none runs).
Markdown links the chart: an SVG written beside ``--output`` (or, printing to the terminal,
into the data directory's ``reports/`` folder); HTML embeds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from session_buddy.cli._common import err, print_error, through_service
from session_buddy.errors import SessionBuddyError
from session_buddy.settings import SessionBuddySettings


def _default_project() -> str:
    from session_buddy.core.handoff import project_root_of

    return project_root_of(os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd()).name


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "all"


def build_report(
    config: Path | None,
    settings: SessionBuddySettings,
    project: str | None,
    since: str | None,
    fmt: str,
    output: Path | None,
) -> str:
    """Ask the data directory's service (started when none runs: it alone opens the store)
    for the rendered history; for Markdown, write the chart it sends where the text links."""
    from session_buddy.core.handoff import write_atomically
    from session_buddy.paths import SessionPaths

    if output is not None:
        chart = output.with_suffix(".svg")
        link = chart.name
    else:
        folder = SessionPaths.from_settings(settings.data_dir).data
        chart = folder / "reports" / f"{_safe(project or 'all')}-quality.svg"
        link = str(chart)
    arguments = {"project": project, "since": since, "format": fmt, "chart_link": link}
    answer = through_service(config, settings, "report", arguments)
    if answer.get("chart"):
        chart.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(chart, str(answer["chart"]))
    return str(answer["text"])


def report_command(
    project: Annotated[
        str | None,
        typer.Option(
            "--project", "-p", help="Project name (default: the current folder's project)"
        ),
    ] = None,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="Every project together")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start of the period: 30d, 2w, 12h or an ISO date"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="md, html or json")] = "md",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file (Markdown: the chart beside it)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file or folder (also SESSION_BUDDY_CONFIG)"),
    ] = None,
) -> None:
    """The project's quality over time: sessions, scores, test pass rate, coverage, with the
    trend chart."""
    from session_buddy.core.report import FORMATS
    from session_buddy.logs import route_logging_to_stderr
    from session_buddy.settings import load_settings

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        settings = load_settings(config).settings
        route_logging_to_stderr(settings.log_level)
        chosen = None if all_projects else (project or _default_project())
        text = build_report(config, settings, chosen, since, fmt, output)
    except SessionBuddyError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    err.print(f"wrote {output}")
