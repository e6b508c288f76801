"""Events as MCP logging notifications (``notifications/message``, logger
``session_buddy.events``) to the connected clients.

An event emitted during a tool call (a checkpoint, a start) goes to the calling client on
that call's own stream, just before the call's answer: this works over stateless streamable
HTTP too, where a client has no other stream. Every other live session this server has seen
(an in-memory or stdio client, a stateful HTTP session) gets it in a background task; a
session that has gone away is forgotten. A notification that cannot be sent is dropped: it
never fails or delays the call beyond ``SEND_TIMEOUT_S``.

The message's ``data`` is ``{"msg": "<event type>", "extra": <the event as a dict>}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from typing import Any

from fastmcp.server.middleware import Middleware, MiddlewareContext

from session_buddy.core.events import Event, EventBus

log = logging.getLogger(__name__)

LOGGER = "session_buddy.events"
SEND_TIMEOUT_S = 2.0

#: events emitted during the current tool call (None outside one)
_during_call: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar(
    "session_buddy_events_during_call", default=None
)


def _session_of(context: MiddlewareContext[Any]) -> Any:
    ctx = context.fastmcp_context
    if ctx is None:
        return None
    try:
        return ctx.session
    except Exception:  # no request context (a lifespan call)
        return None


class EventNotifier(Middleware):
    def __init__(self, bus: EventBus) -> None:
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[None]] = set()
        bus.subscribe(self.take)

    async def on_request(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        session = _session_of(context)
        if session is not None:
            with contextlib.suppress(TypeError):
                self._sessions.add(session)
        return await call_next(context)

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        token = _during_call.set([])
        try:
            return await call_next(context)
        finally:
            events = _during_call.get() or []
            _during_call.reset(token)
            ctx = context.fastmcp_context
            for event in events:
                if ctx is not None:
                    await self._send_quietly(ctx.log(event.type, "info", LOGGER, event.to_dict()))

    def take(self, event: Event) -> None:
        """A bus listener: note it for the caller, broadcast it to every other session."""
        during = _during_call.get()
        caller = None
        if during is not None:
            during.append(event)
            caller = _current_session()
        others = [s for s in list(self._sessions) if s is not caller]
        if not others:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._broadcast(others, event), name="event-notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _broadcast(self, sessions: list[Any], event: Event) -> None:
        data = {"msg": event.type, "extra": event.to_dict()}
        for session in sessions:
            sent = await self._send_quietly(
                session.send_log_message(level="info", data=data, logger=LOGGER)
            )
            if not sent:
                self._sessions.discard(session)

    @staticmethod
    async def _send_quietly(coro: Any) -> bool:
        try:
            await asyncio.wait_for(coro, SEND_TIMEOUT_S)
        except Exception as exc:
            log.debug("event notification not sent: %s", exc)
            return False
        return True


def _current_session() -> Any:
    from fastmcp.server.dependencies import get_context

    try:
        return get_context().session
    except Exception:
        return None
