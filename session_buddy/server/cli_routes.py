"""The service's routes for the CLI commands that use the store (beside ``/mcp`` and
``/hooks``, behind the same bearer-token guard), so that the service stays the one process
that opens the store: ``session-buddy import claude-code``, ``migrate`` (when either store is
the service's own), ``report`` and ``health`` (when the service runs) run here (``sync-now``
and the other commands that write call the service's tools, :mod:`session_buddy.cli._common`), asked by :mod:`session_buddy.server.cli_link`.

``POST /cli/<command>`` takes the command's JSON arguments and streams NDJSON: ``{"progress":
{...}}`` lines while it works, ``{"alive": true}`` every few seconds when nothing else is
said (so the client can tell a slow job from a hung service), then one ``{"result": {...}}``
or ``{"error": "...", "invalid": bool}``. When the client goes away (Ctrl-C), the job stops
at its next batch boundary: what is stored is kept and the same command resumes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from session_buddy import di
from session_buddy.errors import SessionBuddyError, ValidationError
from session_buddy.server.hook_routes import json_object

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
#: a line is sent at least this often while a job runs
HEARTBEAT_S = 5.0

Emit = Callable[[dict[str, Any]], None]
Job = Callable[[dict[str, Any], Emit], Awaitable[dict[str, Any]]]

_jobs: set[asyncio.Task[None]] = set()


class Interrupted(Exception):
    """The client went away: the job stops at the batch boundary where it notices."""


def _text(payload: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 4096:
        raise ValidationError(f"`{key}` must be a non-empty string [invalid_argument]")
    return value


def _count(payload: dict[str, Any], key: str, default: int, maximum: int) -> int:
    value = payload.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise ValidationError(f"`{key}` must be an integer from 1 to {maximum} [invalid_argument]")
    return value


async def import_job(payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """``import claude-code``: transcripts into memory, incrementally (offsets saved after
    each batch, so an interrupted import resumes)."""
    from session_buddy.core.capture import CaptureService
    from session_buddy.core.transcripts import claude_projects_dir

    path = _text(payload, "path")
    if path is not None and not Path(path).is_absolute():
        raise ValidationError("`path` must be absolute (the service has its own cwd)")
    since_text = _text(payload, "since")
    try:
        since = datetime.fromisoformat(since_text) if since_text else None
    except ValueError:
        raise ValidationError(f"`since` is not an ISO timestamp: {since_text!r}") from None
    batch_size = _count(payload, "batch_size", 256, 4096)
    root = Path(path) if path else claude_projects_dir()
    report = await di.get(CaptureService).import_transcripts(
        root,
        since=since,
        progress=lambda done, total: emit({"done": done, "total": total}),
        batch_size=batch_size,
    )
    return {"path": str(root), **report.to_dict()}


async def migrate_job(payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """``migrate`` with the service's own store as source or target: that one is used as
    the service has it open (its search index follows every batch)."""
    from dataclasses import asdict

    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.core.migrate import configured_endpoint, run_migration
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

    source = _text(payload, "source", required=True)
    target = _text(payload, "target", required=True)
    batch = _count(payload, "batch", 500, 100_000)
    settings = di.get(SessionBuddySettings)
    mine = configured_endpoint(settings, SessionPaths.from_settings(settings.data_dir).data)
    own = {mine.describe(): di.get(StorageBase)} if mine is not None else {}
    report = await run_migration(
        str(source),
        str(target),
        settings,
        batch=batch,
        own=own,
        progress=lambda table, done, total: emit({"table": table, "done": done, "total": total}),
    )
    return asdict(report)


async def report_job(payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """``report``: the history rendered (md, html or json) and, for Markdown with sessions,
    the chart's SVG for the client to write where ``chart_link`` points."""
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.core.analytics import AnalyticsService, parse_since
    from session_buddy.core.memory import MemoryService
    from session_buddy.core.recurring import find_patterns
    from session_buddy.core.report import FORMATS, render_html, render_json, render_markdown

    fmt = _text(payload, "format") or "md"
    if fmt not in FORMATS:
        raise ValidationError(f"`format` must be one of {', '.join(FORMATS)} [invalid_argument]")
    project, start = _text(payload, "project"), parse_since(_text(payload, "since"))
    history = await di.get(AnalyticsService).history(project, start)
    access = await di.get(MemoryService).access()  # what the caller may see, as `patterns`
    history.patterns = await find_patterns(di.get(StorageBase), project, start, access=access)
    if fmt == "html":
        return {"text": render_html(history), "chart": None}
    if fmt == "json":
        return {"text": render_json(history), "chart": None}
    link = _text(payload, "chart_link") if history.sessions else None
    return {"text": render_markdown(history, link), "chart": history.chart() if link else None}


async def health_job(payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """``health``: the service's own view of every component."""
    from session_buddy.adapters.health._base import HealthBase

    return await di.get(HealthBase).check()


async def dashboard_job(payload: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """``dashboard``: a one-time login link to the dashboard."""
    from session_buddy.server.dashboard import login_job

    return await login_job(payload, emit)


JOBS: dict[str, Job] = {
    "dashboard": dashboard_job,
    "health": health_job,
    "import": import_job,
    "migrate": migrate_job,
    "report": report_job,
}


async def _run(job: Job, payload: dict[str, Any], emit: Emit, lines: asyncio.Queue[Any]) -> None:
    try:
        await di.ready()
        lines.put_nowait({"result": await job(payload, emit)})
    except Interrupted:
        log.info("cli job stopped: its client went away")
    except SessionBuddyError as exc:
        lines.put_nowait({"error": str(exc), "invalid": isinstance(exc, ValidationError)})
    except Exception as exc:
        log.exception("cli job failed")
        lines.put_nowait({"error": f"{type(exc).__name__}: {exc}", "invalid": False})
    finally:
        lines.put_nowait(None)


async def _stream(lines: asyncio.Queue[Any], gone: asyncio.Event) -> AsyncIterator[str]:
    try:
        while True:
            try:
                line = await asyncio.wait_for(lines.get(), HEARTBEAT_S)
            except TimeoutError:
                line = {"alive": True}
            if line is None:
                return
            yield json.dumps(line, default=str) + "\n"
    finally:
        gone.set()  # the answer is complete, or the client went away


def start_job(job: Job, payload: dict[str, Any]) -> StreamingResponse:
    """Run ``job`` in a task of its own (a client that goes away stops it at its next
    progress report, never in the middle of a write) and stream what it says."""
    lines: asyncio.Queue[Any] = asyncio.Queue()
    gone = asyncio.Event()

    def emit(progress: dict[str, Any]) -> None:
        if gone.is_set():
            raise Interrupted
        lines.put_nowait({"progress": progress})

    task = asyncio.get_running_loop().create_task(_run(job, payload, emit, lines), name="cli-job")
    _jobs.add(task)
    task.add_done_callback(_jobs.discard)
    return StreamingResponse(_stream(lines, gone), media_type="application/x-ndjson")


def register(mcp: FastMCP) -> None:
    @mcp.custom_route("/cli/{command}", methods=["POST"])
    async def cli_command(request: Request) -> Response:
        job = JOBS.get(str(request.path_params.get("command", "")))
        if job is None:
            return JSONResponse({"error": "no such command"}, status_code=404)
        payload = await json_object(request, MAX_PAYLOAD_BYTES, "arguments")
        if isinstance(payload, JSONResponse):
            return payload
        return start_job(job, payload)
