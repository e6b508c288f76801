"""MCP roots for clients the server can ask itself: the ``--standalone`` stdio server and an
in-memory ``Client(server)``.

Clients of the shared service come through the stdio bridge, which asks its client for its
roots (:mod:`session_buddy.server.roots`) and sends the first ``file://`` root with every
request; the HTTP service runs stateless, so it cannot send a request to a client itself, and
a request whose client is bound from headers is left as it is. For a call with no client
bound, this middleware asks the session's client for its roots (when its ``initialize``
declared the capability) before the tool runs, and binds this process's client context with
that root (:func:`~session_buddy.core.sessions.current.root_folder`, the same resolution the
bridge uses). It asks on every call, so ``notifications/roots/list_changed`` needs no
bookkeeping; a client that errors keeps the working directory, and one that does not answer
within :data:`~session_buddy.server.roots.ROOTS_WAIT_S` is not asked again.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import anyio
from fastmcp.server.middleware import Middleware, MiddlewareContext

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
        try:
            with anyio.fail_after(self.wait_s):
                return root_folder(await ctx.list_roots())
        except TimeoutError:
            self._silent.add(session)
            log.info("the client declared roots but did not list them in %.1f s", self.wait_s)
        except Exception as exc:  # an error answer: the working directory stays "this project"
            log.info("the client did not list its roots: %s", exc)
        return None
