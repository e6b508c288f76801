"""``session-buddy serve`` (stdio, or streamable HTTP), ``token`` and the hidden ``service``."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from session_buddy.cli._common import ConfigOpt, app, load, print_error
from session_buddy.errors import SessionBuddyError
from session_buddy.logs import route_logging_to_stderr


@app.command()
def serve(
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP instead of stdio")] = False,
    host: Annotated[str | None, typer.Option(help="HTTP host (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8678)")] = None,
    standalone: Annotated[
        bool,
        typer.Option(
            "--standalone",
            help="stdio: run the server in this process, not through the shared service",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Run the MCP server (stdio by default, for Claude Code)."""
    if not http:
        from session_buddy.server.stdio import main as front_main

        raise typer.Exit(front_main(str(config) if config else None, standalone) or 0)
    loaded = load(config)
    settings = loaded.settings
    route_logging_to_stderr(
        settings.log_level,
        settings.log_file,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
    )
    bind = host or settings.server.host
    loopback = bind in ("127.0.0.1", "localhost", "::1")
    if not loopback and not settings.server.allow_remote:
        print_error(
            f"refusing to listen on {bind}: only loopback is allowed unless "
            "server.allow_remote is true (SESSION_BUDDY_SERVER__ALLOW_REMOTE=1)"
        )
        raise typer.Exit(2)
    if not loopback and not settings.server.auth:
        print_error(f"refusing to listen on {bind} without auth (server.auth)")
        raise typer.Exit(2)
    from session_buddy.server.app import create_server, private_data_dir
    from session_buddy.server.http import Activity, guard_middleware

    paths = private_data_dir(settings)
    try:
        middleware = guard_middleware(settings, paths, Activity())
    except SessionBuddyError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    try:
        server = create_server(settings, http=True)
    except SessionBuddyError as exc:  # settings that cannot work, e.g. an exposed key file
        print_error(exc)
        raise typer.Exit(2) from None
    # uvicorn handles SIGTERM/SIGINT (graceful shutdown, lifespan exit, ShutdownManager),
    # then re-raises the signal with the previous handler: make that a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    server.run(
        transport="http",
        host=bind,
        port=port or settings.server.port,
        show_banner=False,
        middleware=middleware,
        # uvicorn's own log config prints to stdout: use ours (stderr or log_file)
        uvicorn_config={"log_config": None, "access_log": False},
    )


@app.command()
def token(
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 3600,
    user: Annotated[
        str | None, typer.Option(help="Subject (default: settings.user or login)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a bearer token (JWT) for the HTTP interface of this data directory."""
    from session_buddy.core.users import local_user
    from session_buddy.paths import SessionPaths
    from session_buddy.server.auth import load_secret, mint_token

    settings = load(config).settings
    paths = SessionPaths.from_settings(settings.data_dir)
    try:
        secret = load_secret(paths.data)
    except SessionBuddyError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    print(mint_token(secret, user or local_user(settings), ttl))


@app.command(hidden=True)
def service(config: ConfigOpt = None) -> None:
    """Run the shared service of the data directory (started by stdio bridges)."""
    from session_buddy.server.http import run_service

    try:
        code = run_service(load(config).settings)
    except SessionBuddyError as exc:  # one clear line in the service log, no traceback
        print_error(exc)
        raise typer.Exit(2) from None
    raise typer.Exit(code)
