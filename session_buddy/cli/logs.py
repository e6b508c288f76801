"""``session-buddy logs``: the service's log file and its rotated ones, filtered, followed."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from session_buddy.cli._common import ConfigOpt, app, err, load, print_error
from session_buddy.logs import follow_lines, log_files, read_lines


def _base(config: Path | None, file: Path | None) -> Path:
    if file is not None:
        return file
    settings = load(config).settings
    from session_buddy.paths import SessionPaths

    return settings.log_file or SessionPaths.from_settings(settings.data_dir).logs / "service.log"


@app.command()
def logs(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops)")
    ] = False,
    grep: Annotated[
        str | None, typer.Option("--grep", "-g", help="Only lines matching this regex")
    ] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Last N lines")] = 50,
    file: Annotated[
        Path | None, typer.Option("--file", help="Another log file (default: the service log)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print the last lines of the service log (logs/service.log and its rotated files)."""
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        print_error(f"--grep: not a regular expression: {exc}")
        raise typer.Exit(2) from None

    def match(line: str) -> bool:
        return pattern is None or pattern.search(line) is not None

    base = _base(config, file)
    files = log_files(base)
    start = base.stat().st_size if base.exists() else None  # --follow goes on from here
    if not files and not follow:
        err.print(f"no log file at {base}")
        raise typer.Exit(1)
    for line in read_lines(files, lines, match):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if not follow:
        return
    try:
        for line in follow_lines(base, match, start=start):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
