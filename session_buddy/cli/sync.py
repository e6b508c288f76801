"""``session-buddy sync-now``, ``sync-status`` and ``sync dlq list|retry|drop``.

They call the ``sync_now`` / ``sync_status`` / ``sync_dlq`` tools of the data directory's
shared service over its loopback HTTP with a token signed by the data dir's secret (the
service is started, as a bridge starts it, when none runs), so the process that owns the
DuckDB file is the only one that ever opens it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from session_buddy.cli._common import ConfigOpt, app, load, out, tool_through_service
from session_buddy.logs import route_logging_to_stderr

sync_app = typer.Typer(no_args_is_help=True, help="Sync to Akosha")
dlq_app = typer.Typer(no_args_is_help=True, help="The sync dead-letter queue")
sync_app.add_typer(dlq_app, name="dlq")
events_app = typer.Typer(no_args_is_help=True, help="Events: webhook deliveries")
events_dlq_app = typer.Typer(no_args_is_help=True, help="Events that kept failing to deliver")
events_app.add_typer(events_dlq_app, name="dlq")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
IdsArg = Annotated[
    list[str] | None, typer.Argument(help="dead-letter ids from `sync dlq list` (none: all)")
]


def _run(config: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """The ``tool``'s answer from the data directory's service (started when none runs)."""
    loaded = load(config)
    route_logging_to_stderr(loaded.settings.log_level)
    return tool_through_service(config, loaded.settings, tool, args)


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
        out.print(f"[bold]{key}[/bold]: {shown}")


@app.command("sync-now")
def sync_now(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Push new and changed memories to Akosha now (exit 1 if the round stopped early)."""
    report = _run(config, "sync_now", {})
    _print(report, as_json)
    raise typer.Exit(1 if report.get("stopped") else 0)


@app.command("sync-status")
def sync_status(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Cursor, lag, circuit state, dead-letter queue size and the last error of the sync."""
    status = _run(config, "sync_status", {})
    if as_json:
        _print(status, True)
        return
    circuit = status["circuit"]
    out.print(f"sync: {status['adapter']} -> {status['remote']} (every {status['interval_s']}s)")
    for name, stream in status["streams"].items():
        out.print(f"  {name}: cursor {stream['cursor'] or '(start)'}, lag {stream['lag_s']}s")
    out.print(f"circuit: {circuit['state']} ({circuit['consecutive_failures']} failures)")
    out.print(f"dead letters: {status['dlq_size']} ({status['dlq_memories']} memories)")
    out.print(f"last error: {status['last_error'] or '-'}")


def _print_dead(data: dict[str, Any], as_json: bool, size_note: str, what: str) -> None:
    """A dead-letter list: one line per entry, ``what`` formatted with the entry."""
    if as_json:
        _print(data, True)
        return
    out.print(f"{data['size']} dead letters {size_note}".rstrip())
    for e in data["entries"]:
        out.print(
            f"  {e['id']}: {what.format(**e)}, {e['attempts']} tries: {e['last_error']}",
            markup=False,
        )


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="Most entries shown")] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Memories that kept failing, with attempts and their last error."""
    data = _run(config, "sync_dlq", {"action": "list", "limit": limit})
    _print_dead(data, as_json, f"({data['memories']} memories)", "{memories} memories")


@dlq_app.command("retry")
def dlq_retry(ids: IdsArg = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Retry dead letters now (all, or the ids given)."""
    _print(_run(config, "sync_dlq", {"action": "retry", "ids": ids or None}), as_json)


@dlq_app.command("drop")
def dlq_drop(ids: IdsArg = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Forget dead letters (all, or the ids given)."""
    _print(_run(config, "sync_dlq", {"action": "drop", "ids": ids or None}), as_json)


@events_app.command("status")
def events_status(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Webhooks: delivered, retries, dead letters, dropped, queue, circuit per URL."""
    _print(_run(config, "events_webhooks", {"action": "status"}), as_json)


@events_dlq_app.command("list")
def events_dlq_list(
    limit: Annotated[int, typer.Option(help="Most entries shown")] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Events that kept failing, with their URL, attempts and last error."""
    data = _run(config, "events_webhooks", {"action": "list", "limit": limit})
    _print_dead(data, as_json, "", "{type} -> {url}")


@events_dlq_app.command("retry")
def events_dlq_retry(
    ids: IdsArg = None, as_json: JsonOpt = False, config: ConfigOpt = None
) -> None:
    """Deliver dead letters now (all, or the ids given)."""
    _print(_run(config, "events_webhooks", {"action": "retry", "ids": ids or None}), as_json)


@events_dlq_app.command("drop")
def events_dlq_drop(ids: IdsArg = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Forget dead letters (all, or the ids given)."""
    _print(_run(config, "events_webhooks", {"action": "drop", "ids": ids or None}), as_json)
