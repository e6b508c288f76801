"""The ``session-buddy`` command.

``session-buddy serve`` (stdio) goes straight to the light stdio front, before typer, rich or
anything else is imported, so the MCP handshake is answered quickly.
"""

import signal
import sys
from pathlib import Path


def _fast_stdio(argv: list[str]) -> int | None:
    """`serve` over stdio, parsed by hand; None when argv is anything else."""
    if not argv or argv[0] != "serve":
        return None
    config: str | None = None
    standalone = False
    rest = argv[1:]
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg in ("--config", "-c") and index + 1 < len(rest):
            config = rest[index + 1]
            index += 2
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
            index += 1
        elif arg == "--stdio":
            index += 1
        elif arg == "--standalone":
            standalone = True
            index += 1
        else:
            return None  # --http, --help, ...: the full CLI handles it
    from session_buddy.stdio_front import main as front_main

    return front_main(config, standalone)


def _app():  # type: ignore[no-untyped-def]
    import asyncio
    import json
    from typing import Annotated

    import typer
    from rich.console import Console
    from rich.table import Table

    from session_buddy.errors import SessionBuddyError
    from session_buddy.logs import route_logging_to_stderr

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

    def load(config: Path | None):  # type: ignore[no-untyped-def]
        from session_buddy.settings import load_settings

        try:
            return load_settings(config)
        except SessionBuddyError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None

    @app.command()
    def serve(
        http: Annotated[
            bool, typer.Option("--http", help="Streamable HTTP instead of stdio")
        ] = False,
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
            argv = ["serve"] + (["--config", str(config)] if config else [])
            raise typer.Exit(_fast_stdio(argv + (["--standalone"] if standalone else [])) or 0)
        loaded = load(config)
        settings = loaded.settings
        route_logging_to_stderr(settings.log_level, settings.log_file)
        bind = host or settings.server.host
        loopback = bind in ("127.0.0.1", "localhost", "::1")
        if not loopback and not settings.server.allow_remote:
            err.print(
                f"[red]error:[/red] refusing to listen on {bind}: only loopback is allowed unless "
                "server.allow_remote is true (SESSION_BUDDY_SERVER__ALLOW_REMOTE=1)"
            )
            raise typer.Exit(2)
        if not loopback and not settings.server.auth:
            err.print(f"[red]error:[/red] refusing to listen on {bind} without auth (server.auth)")
            raise typer.Exit(2)
        from session_buddy.di.paths import SessionPaths
        from session_buddy.server import create_server
        from session_buddy.service import Activity, guard_middleware

        paths = SessionPaths.from_settings(settings.data_dir).ensure()
        try:
            middleware = guard_middleware(settings, paths, Activity())
        except SessionBuddyError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        server = create_server(settings)
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
        from session_buddy.auth import load_secret, login_name, mint_token
        from session_buddy.di.paths import SessionPaths

        settings = load(config).settings
        paths = SessionPaths.from_settings(settings.data_dir)
        try:
            secret = load_secret(paths.data)
        except SessionBuddyError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        print(mint_token(secret, user or settings.user or login_name(), ttl))

    @app.command(hidden=True)
    def service(config: ConfigOpt = None) -> None:
        """Run the shared service of the data directory (started by stdio bridges)."""
        from session_buddy.service import run_service

        settings = load(config).settings
        route_logging_to_stderr(settings.log_level, settings.log_file)
        raise typer.Exit(run_service(settings))

    @app.command()
    def health(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Check every component; exit code 1 when unhealthy."""
        loaded = load(config)
        route_logging_to_stderr(loaded.settings.log_level)
        from session_buddy import di
        from session_buddy.adapters.health._base import HealthBase

        async def run() -> dict:  # type: ignore[type-arg]
            di.configure(loaded.settings)
            try:
                return await di.get(HealthBase).check()
            finally:
                await di.shutdown()

        report = asyncio.run(run())
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
            bool, typer.Option("--write", help="Write docs/tools.md and docs/configuration.md")
        ] = False,
    ) -> None:
        """Generate the tool and settings reference from the code (docs/ of a checkout)."""
        from session_buddy.reference import settings_markdown, tools_markdown

        route_logging_to_stderr("WARNING")
        pages = {"tools.md": asyncio.run(tools_markdown()), "configuration.md": settings_markdown()}
        if not write:
            for text in pages.values():
                out.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        folder = Path(__file__).resolve().parent.parent / "docs"
        if not folder.is_dir():
            err.print(f"[red]error:[/red] {folder} is not a docs folder (run from a checkout)")
            raise typer.Exit(2)
        for name, text in pages.items():
            (folder / name).write_text(text, encoding="utf-8")
            err.print(f"wrote {folder / name}")

    @app.command()
    def version() -> None:
        """Print the version."""
        from session_buddy import __version__

        out.print(__version__)

    try:
        from session_buddy.cli_hooks import hook_command, hooks_app
    except ImportError:  # pragma: no cover - while the hooks module is absent
        pass
    else:
        app.add_typer(hooks_app, name="hooks", help="Install or remove Claude Code hooks")

        @app.command()
        def hook(event: str) -> None:
            """Run by Claude Code hooks (reads the hook JSON on stdin; always exits 0)."""
            raise typer.Exit(hook_command(event))

    from session_buddy.cli_import import import_app
    from session_buddy.cli_migrate import migrate_command

    app.add_typer(import_app, name="import", help="Import Claude Code transcripts")
    app.command("migrate")(migrate_command)

    return app


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["hook"] and len(argv) == 2:
        # Claude Code hooks: keep this path free of heavy imports and never fail.
        try:
            from session_buddy.cli_hooks import hook_command

            raise SystemExit(hook_command(argv[1]))
        except ImportError:
            raise SystemExit(0) from None
    code = _fast_stdio(argv)
    if code is not None:
        raise SystemExit(code)
    _app()()


if __name__ == "__main__":
    main()
