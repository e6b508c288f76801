"""The ``session-buddy`` command.

``session-buddy serve`` (stdio) and ``session-buddy hook EVENT`` take fast paths, before typer,
rich or anything else is imported, so the MCP handshake and Claude Code's hooks are answered
quickly; every other command goes to the typer app of :mod:`session_buddy.cli.app`, one module
per command group (``serve``, ``info``, ``hooks``, ``imports``, ``migrate``).
"""

import sys


def fast_stdio(argv: list[str]) -> int | None:
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
    from session_buddy.server.stdio import main as front_main

    return front_main(config, standalone)


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["hook"] and len(argv) == 2:
        # Claude Code hooks: keep this path free of heavy imports and never fail.
        try:
            from session_buddy.cli.hook_runtime import hook_command

            raise SystemExit(hook_command(argv[1]))
        except ImportError:
            raise SystemExit(0) from None
    code = fast_stdio(argv)
    if code is not None:
        raise SystemExit(code)
    from session_buddy.cli.app import app

    app()


if __name__ == "__main__":
    main()
