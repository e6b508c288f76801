"""MCP roots for clients the server can ask itself: the ``--standalone`` stdio server and an
in-memory ``Client(server)``.

Clients of the shared service come through the stdio bridge, which asks its client for its
roots (:mod:`session_buddy.server.roots`) and sends the first ``file://`` root with every
request; the HTTP service runs stateless, so it cannot send a request to a client itself, and
a request whose client is bound from headers is left as it is. For a call with no client
bound, this middleware asks the session's client for its roots (when its ``initialize``
declared the capability) before the tool runs, and binds this process's client context with
that root (:func:`~session_buddy.core.sessions.current.root_folder`, the same resolution the
bridge uses). The answer of a client that declares ``roots.listChanged`` is kept per
session until it sends ``notifications/roots/list_changed`` (:meth:`listen` registers the
handler), as the bridge does: a ``roots/list`` round trip on every call cost a standalone
``quick_search`` several milliseconds. A client that does not declare it is asked on every
call, since its roots may change unannounced. A client that errors keeps the working
directory and is asked again on its next call; one that does not answer within
:data:`~session_buddy.server.roots.ROOTS_WAIT_S` is not asked again.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import anyio
from fastmcp.server.middleware import Middleware, MiddlewareContext
from mcp.types import RootsListChangedNotification

from session_buddy.core.sessions.current import (
    ClientContext,
    acting_client,
    current_client,
    root_folder,
)
from session_buddy.server.roots import ROOTS_WAIT_S

log = logging.getLogger(__name__)


class ClientRootsMiddleware(Middleware):
    def __init__(self, wait_s: float = ROOTS_WAIT_S) -> None:
        self.wait_s = wait_s
        self._silent: weakref.WeakSet[Any] = weakref.WeakSet()  # sessions that never answered
        # the folder each session's client last listed (None: no file root), until it changes
        self._known: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
        self._changes = 0  # list_changed notifications seen: an answer asked before one is stale

    def listen(self, server: Any) -> None:
        """Forget the kept roots when a client says they changed. ``server``: the low-level MCP
        server (``FastMCP._mcp_server``); client notifications do not pass through middleware.
        The notification does not say whose session sent it, so every session's answer is
        forgotten: the others are asked once more, never answered with a stale root."""
        server.notification_handlers[RootsListChangedNotification] = self._changed

    async def _changed(self, _notification: Any) -> None:
        self._changes += 1
        self._known.clear()

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        ctx = context.fastmcp_context
        if current_client.get() is not None or ctx is None:
            return await call_next(context)
        root = await self._root(ctx)
        if root is None:
            return await call_next(context)
        with acting_client(ClientContext.process().with_root(root)):
            return await call_next(context)

    async def _root(self, ctx: Any) -> str | None:
        try:
            session = ctx.session
            params = session.client_params
        except (RuntimeError, AttributeError):
            return None
        if params is None or params.capabilities.roots is None or session in self._silent:
            return None
        # kept only for a client that says it will tell (roots.listChanged); one that does
        # not may change its roots silently, so it is asked on every call
        keep = bool(getattr(params.capabilities.roots, "listChanged", False))
        if keep and session in self._known:
            return self._known[session]
        changes = self._changes
        try:
            with anyio.fail_after(self.wait_s):
                root = root_folder(await ctx.list_roots())
        except TimeoutError:
            self._silent.add(session)
            log.info("the client declared roots but did not list them in %.1f s", self.wait_s)
        except Exception as exc:  # an error answer: the working directory stays "this project"
            log.info("the client did not list its roots: %s", exc)
        else:
            if keep and changes == self._changes:
                self._known[session] = root
            return root
        return None
