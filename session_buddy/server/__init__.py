"""Serving: the FastMCP app and the ways clients reach it.

- :mod:`.app`: builds the FastMCP application (lifespan, error middleware, tool modules);
- :mod:`.stdio`: the stdio front, answering ``initialize`` before anything heavy is imported;
- :mod:`.bridge`: the front's HTTP link to the shared service (light imports only);
- :mod:`.http`: the shared loopback service itself (auth, limits, idle exit);
- :mod:`.discovery`: finding or starting the one service of a data directory;
- :mod:`.auth`: bearer tokens and the data directory's secret;
- :mod:`.identity`: what the server says in the MCP handshake.

Importing this package imports none of them: the stdio path stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from session_buddy.server.app import create_server

__all__ = ["create_server"]


def __getattr__(name: str) -> Any:
    if name == "create_server":
        from session_buddy.server.app import create_server

        return create_server
    raise AttributeError(f"module 'session_buddy.server' has no attribute {name!r}")
