"""The stdio bridge asks its MCP client for its roots (``roots/list``).

A client that declares ``capabilities.roots`` in ``initialize`` says which folders it works
in. The service behind the bridge runs stateless HTTP and cannot ask the client itself, so
the bridge does: after ``notifications/initialized`` and after every
``notifications/roots/list_changed`` it sends its own ``roots/list`` request (an id of its
own, never forwarded), takes the answer out of the client's stream, and from then on sends
the first ``file://`` root's folder with every request
(:data:`~session_buddy.core.sessions.current.ROOT_HEADER`), so "this project" is the
client's root. Requests wait for a pending answer at most :data:`ROOTS_WAIT_S`; a client that
never answers, or answers an error, leaves the bridge on its working directory.
Standard library only.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from session_buddy.core.sessions.current import root_folder

log = logging.getLogger(__name__)

#: how long a request waits for the client's answer to a pending ``roots/list``
ROOTS_WAIT_S = 2.0
ID_PREFIX = "session-buddy-roots-"


def declares_roots(initialize_params: Any) -> bool:
    """Does the client's ``initialize`` declare the roots capability?"""
    if not isinstance(initialize_params, dict):
        return False
    capabilities = initialize_params.get("capabilities")
    return isinstance(capabilities, dict) and isinstance(capabilities.get("roots"), dict)


class ClientRoots:
    """The bridge's side of ``roots/list``: ask, take the answer, report the folder."""

    def __init__(
        self,
        send: Callable[[dict[str, Any]], None],
        on_root: Callable[[str | None], None],
        wait_s: float = ROOTS_WAIT_S,
    ) -> None:
        self._send = send
        self._on_root = on_root
        self.wait_s = wait_s
        self._ids = itertools.count(1)
        self._pending: str | None = None
        self._lock = threading.Lock()
        self._settled = threading.Event()
        self._settled.set()

    def ask(self) -> None:
        """Send a ``roots/list`` request to the client (a newer one replaces a pending one)."""
        request_id = f"{ID_PREFIX}{next(self._ids)}"
        with self._lock:
            self._pending = request_id
            self._settled.clear()
        self._send({"jsonrpc": "2.0", "id": request_id, "method": "roots/list"})

    def take(self, message: dict[str, Any]) -> bool:
        """True when ``message`` answers one of our requests (it must not be forwarded)."""
        request_id = message.get("id")
        if "method" in message or not (
            isinstance(request_id, str) and request_id.startswith(ID_PREFIX)
        ):
            return False
        with self._lock:
            if request_id != self._pending:
                return True  # an answer to an older request: a newer one is on its way
            self._pending = None
        result = message.get("result")
        if isinstance(result, dict):
            self._on_root(root_folder(result.get("roots")))
        else:  # an error: keep what we had (the working directory, or an earlier root)
            log.info("the client did not list its roots: %s", message.get("error"))
        self._settled.set()
        return True

    def wait(self) -> None:
        """Let a request wait (bounded) for the answer to a pending ``roots/list``."""
        if not self._settled.wait(self.wait_s):
            with self._lock:
                self._pending_expired()

    def _pending_expired(self) -> None:
        # the client is slow or silent: stop making requests wait; a late answer still counts
        self._settled.set()
