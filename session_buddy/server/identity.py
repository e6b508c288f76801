"""What the server says about itself in the MCP handshake (no heavy imports here: the stdio
front answers ``initialize`` from this before FastMCP is even imported)."""

from __future__ import annotations

from typing import Any

from session_buddy import __version__

SERVER_NAME = "session-buddy"

INSTRUCTIONS = """\
session-buddy gives you a working memory across sessions and projects.
Store what you learn with store_reflection; find it again with search (hybrid: meaning and
keywords) or quick_search. Results carry a confidence so you can tell weak matches from
nothing relevant stored. start/checkpoint/end manage the session and its handoff."""

#: Must equal mcp.shared.version.SUPPORTED_PROTOCOL_VERSIONS (a test checks it).
SUPPORTED_PROTOCOL_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[-1]

#: Must equal what the FastMCP server answers (a test checks it).
CAPABILITIES: dict[str, Any] = {
    "experimental": {},
    "logging": {},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": False, "listChanged": True},
    "tools": {"listChanged": True},
    "extensions": {"io.modelcontextprotocol/ui": {}},
}


def initialize_result(requested_version: str | None) -> dict[str, Any]:
    version = (
        requested_version
        if requested_version in SUPPORTED_PROTOCOL_VERSIONS
        else LATEST_PROTOCOL_VERSION
    )
    return {
        "protocolVersion": version,
        "capabilities": CAPABILITIES,
        "serverInfo": {"name": SERVER_NAME, "version": __version__},
        "instructions": INSTRUCTIONS,
    }
