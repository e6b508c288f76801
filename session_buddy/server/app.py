"""Builds the FastMCP application.

Lifespan: the container is configured before serving (``create_server``); storage opens and
the model loads in the background after the handshake; the ShutdownManager runs on exit.
Tool modules are thin: each defines ``register(mcp)`` and looks its services up with
``session_buddy.di.get(T)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.exceptions import ValidationError as ArgumentsError
from fastmcp.server.middleware import Middleware, MiddlewareContext

from session_buddy import __version__, di
from session_buddy.adapters._memory import IdleTrim
from session_buddy.core.events import EventBus
from session_buddy.core.webhooks import WebhookService
from session_buddy.errors import SessionBuddyError, ValidationError
from session_buddy.paths import SessionPaths
from session_buddy.server.identity import INSTRUCTIONS, SERVER_NAME
from session_buddy.server.limits import MAX_ERROR_CHARS, LimitError, check_arguments, cut
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

#: Tool modules, each with ``register(mcp: FastMCP) -> None``.
TOOL_MODULES = [
    "session_buddy.tools.health",
    "session_buddy.tools.memory",
    "session_buddy.tools.capture",
    "session_buddy.tools.session",
    "session_buddy.tools.projects",
    "session_buddy.tools.teams",
    "session_buddy.tools.sync",
    "session_buddy.tools.events",
    "session_buddy.tools.permissions",
    "session_buddy.tools.analytics",
    "session_buddy.tools.graph",
]

#: Tools that answer before storage is open (they report on it instead).
NO_WAIT_TOOLS = {"health"}


def _tool_error(exc: SessionBuddyError) -> ToolError:
    return ToolError(f"{cut(str(exc), MAX_ERROR_CHARS)} [{exc.code}]")


#: the heap is trimmed once tool calls have stopped for a second
IDLE_TRIM = IdleTrim(1.0)


class ErrorMiddleware(Middleware):
    """Checks the limits of every argument (server/limits.py), waits for startup, and turns
    session-buddy errors into MCP tool errors (their messages cut to a bounded length).
    After each call the idle trim is re-armed (:data:`IDLE_TRIM`)."""

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        try:
            return await self._call_tool(context, call_next)
        finally:
            IDLE_TRIM.touch()

    async def _call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        try:
            try:
                check_arguments(context.message.arguments)
            except LimitError as exc:
                raise ValidationError(str(exc)) from None
            if context.message.name not in NO_WAIT_TOOLS:
                await di.ready()
            return await call_next(context)
        except SessionBuddyError as exc:
            raise _tool_error(exc) from exc
        except ToolError as exc:
            # FastMCP wraps a tool's exception in a ToolError; keep the code a client can match
            cause = exc.__cause__
            if isinstance(cause, SessionBuddyError):
                raise _tool_error(cause) from cause
            if len(str(exc)) > MAX_ERROR_CHARS:
                raise ToolError(cut(str(exc), MAX_ERROR_CHARS)) from exc
            raise
        except ArgumentsError as exc:
            # arguments of the wrong shape: one line per bad item, so bound the list
            if len(str(exc)) > MAX_ERROR_CHARS:
                raise ArgumentsError(cut(str(exc), MAX_ERROR_CHARS)) from None
            raise

    async def on_read_resource(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        try:
            await di.ready()
            return await call_next(context)
        except SessionBuddyError as exc:
            raise _tool_error(exc) from exc


class _ExpectedErrors(logging.Filter):
    """FastMCP logs every tool exception with a traceback; a SessionBuddyError is a
    message for the caller (bad input, unknown id), so log it as one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SessionBuddyError):
            record.msg = f"{record.getMessage()}: {exc} [{exc.code}]"
            record.args = None
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_FASTMCP_SERVER_LOGGER = "fastmcp.server.server"


async def _start_sync() -> None:
    try:
        await di.start_sync()
        di.get(WebhookService).start()  # dead letters of earlier runs are retried
    except Exception as exc:  # storage failed to open: health and the tools say why
        log.warning("background sync not started: %s", exc)


@asynccontextmanager
async def lifespan(app: FastMCP) -> AsyncIterator[dict[str, Any]]:
    di.start_background()
    sync_start = asyncio.get_running_loop().create_task(_start_sync(), name="sync-start")
    try:
        yield {}
    finally:
        sync_start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sync_start
        stats = await di.shutdown()
        if stats is not None:
            log.info(
                "shutdown: %d executed, %d failed, %d timed out in %.2fs",
                stats.executed,
                stats.failed,
                stats.timed_out,
                stats.duration_s,
            )


def private_data_dir(settings: SessionBuddySettings) -> SessionPaths:
    """The data folder of a server process, private: umask 0077 from now on, and looser
    modes of existing files repaired, each with a warning (see SessionPaths.make_private)."""
    paths = SessionPaths.from_settings(settings.data_dir)
    extra = [settings.storage.path] if settings.storage.path else []
    for line in paths.make_private(*extra):
        log.warning("private data: %s", line)
    return paths


def create_server(
    settings: SessionBuddySettings | None = None, *, http: bool = False, dashboard: bool = False
) -> FastMCP:
    """Configure the container (once per process) and build the MCP server; ``http``: an
    HTTP front, which also counts tool calls and serves ``/metrics`` (telemetry.metrics);
    ``dashboard``: the shared local service's dashboard (:mod:`session_buddy.server.dashboard`)."""
    di.configure(settings)
    server_logger = logging.getLogger(_FASTMCP_SERVER_LOGGER)
    if not any(isinstance(f, _ExpectedErrors) for f in server_logger.filters):
        server_logger.addFilter(_ExpectedErrors())
    settings = di.get(SessionBuddySettings)
    from session_buddy.server.answers import AnswerBound
    from session_buddy.server.client_roots import ClientRootsMiddleware

    client_roots = ClientRootsMiddleware()
    middleware: list[Middleware] = [
        ErrorMiddleware(),
        client_roots,
        AnswerBound(settings.responses.max_chars),
    ]
    if settings.events.mcp_notifications:
        from session_buddy.server.notify import EventNotifier

        middleware.append(EventNotifier(di.get(EventBus)))
    mcp: FastMCP = FastMCP(
        name=SERVER_NAME,
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        middleware=middleware,
        mask_error_details=False,
    )
    client_roots.listen(mcp._mcp_server)
    from session_buddy.server import cli_routes  # the CLI's commands run here (one writer)

    cli_routes.register(mcp)
    for name in TOOL_MODULES:
        importlib.import_module(name).register(mcp)
    from session_buddy.server import hook_routes

    hook_routes.register(mcp)
    if dashboard:
        from session_buddy.server import dashboard as dashboard_routes

        dashboard_routes.register(mcp)
    if http and settings.telemetry.metrics:
        from session_buddy.server import metrics

        metrics.install(mcp)
    return mcp
