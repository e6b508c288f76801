"""``session-buddy sync-now``, ``sync-status`` and ``sync dlq list|retry|drop``.

When the shared service of the data directory runs, these call its ``sync_now`` /
``sync_status`` / ``sync_dlq`` tools over its loopback HTTP with a token signed by the data
dir's secret, so the process that owns the DuckDB file is the only one writing it. When no
service runs, they open the store themselves (and close it when done).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from session_buddy.cli._common import ConfigOpt, app, err, load, out
from session_buddy.logs import route_logging_to_stderr
from session_buddy.settings import SessionBuddySettings

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


async def _through_service(
    settings: SessionBuddySettings, tool: str, args: dict[str, Any]
) -> dict[str, Any] | None:
    """The tool's answer from the running service, or None when no service runs."""
    from session_buddy.paths import SessionPaths
    from session_buddy.server.auth import load_secret, login_name, mint_token
    from session_buddy.server.discovery import live_service

    data_dir = SessionPaths.from_settings(settings.data_dir).data
    info = live_service(data_dir)
    if info is None:
        return None
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    token = mint_token(load_secret(data_dir, create=False), settings.user or login_name(), 600)
    transport = StreamableHttpTransport(
        f"http://{info['host']}:{info['port']}/mcp", headers={"Authorization": f"Bearer {token}"}
    )
    async with Client(transport, timeout=3600) as client:
        result = await client.call_tool(tool, args, raise_on_error=False)
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(text or f"{tool} failed")
    data: dict[str, Any] = result.structured_content or {}
    return data.get("result", data) if set(data) == {"result"} else data


async def _directly(settings: SessionBuddySettings, tool: str, args: dict[str, Any]) -> Any:
    from session_buddy import di
    from session_buddy.core.sync import SyncService

    di.configure(settings)
    try:
        await di.startup()
        if tool == "events_webhooks":
            from session_buddy.core.webhooks import WebhookService

            hooks = di.get(WebhookService)
            if args["action"] == "status":
                return await hooks.status()
            return await hooks.dlq(args["action"], args.get("ids"), args.get("limit", 50))
        service = di.get(SyncService)
        if tool == "sync_now":
            return await service.sync_now()
        if tool == "sync_status":
            return await service.status()
        return await service.dlq(args["action"], args.get("ids"), args.get("limit", 50))
    finally:
        await di.shutdown()


def _run(config: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    loaded = load(config)
    route_logging_to_stderr(loaded.settings.log_level)

    async def run() -> dict[str, Any]:
        answer = await _through_service(loaded.settings, tool, args)
        if answer is not None:
            return answer
        result: dict[str, Any] = await _directly(loaded.settings, tool, args)
        return result

    try:
        return asyncio.run(run())
    except Exception as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
        out.print(f"[bold]{key}[/bold]: {shown}")


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
