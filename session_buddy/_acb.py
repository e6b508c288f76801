"""The one place that imports ACB.

`import acb` configures structlog and stdlib logging to write to stdout and logs
"Application started" there. In stdio mode stdout belongs to JSON-RPC, so ACB is imported
with stdout redirected to stderr, and logging is pointed back at stderr afterwards.
Importing this module costs about 0.5-1.2 s; nothing on the MCP handshake path imports it.
"""

from __future__ import annotations

import contextlib
import sys

with contextlib.redirect_stdout(sys.stderr):
    from acb.adapters import AdapterCapability, AdapterMetadata, AdapterStatus
    from acb.depends import depends

from bevy import get_container

from session_buddy.logs import route_logging_to_stderr

route_logging_to_stderr()

__all__ = [
    "AdapterCapability",
    "AdapterMetadata",
    "AdapterStatus",
    "depends",
    "get_container",
]
