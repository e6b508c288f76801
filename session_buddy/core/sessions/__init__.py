"""Sessions: the lifecycle (start, checkpoint, end, status), the brief and handoffs, the
records API and the Claude Code hook spool, over typed state. No MCP in here.

Modules, one concern each:

- ``state``: :class:`SessionState` / :class:`CheckpointEntry` and their records
  (``sessions``, ``quality``), read and changed through :class:`SessionStore`;
- ``current``: who calls (:class:`ClientContext`, bound per request by the server layer) and
  each client's current session (stdlib only: the bridge imports it);
- ``lifecycle``: start, checkpoint, end, status for the calling client;
- ``brief``: the brief of ``start`` and the handoff files (composition is
  :func:`session_buddy.core.handoff.compose_handoff`, a pure function);
- ``records``: the records API (create/get/update/list/delete sessions, messages, export);
- ``spool`` applies spooled hook events; ``spool_files`` is the spool's file format (stdlib
  only: the ``session-buddy hook`` path imports it);
- ``service``: :class:`SessionService`, the facade the tools use.

This ``__init__`` is lazy, so the hook and the bridge import ``spool_files`` and ``current``
without the service's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from session_buddy.core.sessions.current import ClientContext
    from session_buddy.core.sessions.service import SessionOptions, SessionService
    from session_buddy.core.sessions.state import CheckpointEntry, SessionState

__all__ = ["CheckpointEntry", "ClientContext", "SessionOptions", "SessionService", "SessionState"]

_WHERE = {
    "SessionService": "service",
    "SessionOptions": "service",
    "SessionState": "state",
    "CheckpointEntry": "state",
    "ClientContext": "current",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
