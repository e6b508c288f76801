"""``session-buddy dashboard``: print (and open) a one-time login link to the dashboard.

The data directory's service (started when none runs) issues the link's code, valid for a
couple of minutes and once; the link sets the dashboard's session cookie. ``--no-browser``
only prints it. See docs/dashboard.md.
"""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from session_buddy.cli._common import ConfigOpt, app, err, load, out, print_error, through_service


def login_url(host: str, port: int, path: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


@app.command()
def dashboard(
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the link without opening a browser")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Open the dashboard: a one-time login link from the running service."""
    from session_buddy.paths import SessionPaths
    from session_buddy.server.discovery import read_service

    settings = load(config).settings
    result = through_service(config, settings, "dashboard", {})
    info = read_service(SessionPaths.from_settings(settings.data_dir).data) or {}
    if not info.get("port"):
        print_error("the service did not publish its address")
        raise typer.Exit(1)
    url = login_url(str(info.get("host", "127.0.0.1")), int(info["port"]), str(result["path"]))
    out.print(url, soft_wrap=True, highlight=False)
    err.print(f"one-time link, valid {int(result.get('ttl_s', 120))} s")
    if not no_browser:
        try:
            opened = webbrowser.open(url, new=2)
        except webbrowser.Error:
            opened = False
        if not opened:
            err.print("no browser found here: open the link above")
