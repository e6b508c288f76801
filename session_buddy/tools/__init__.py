"""MCP tool modules: plain module-level functions, registered from each module's TOOLS table.

A tool's signature is its schema (limits are ``Annotated[int, Field(ge=..., le=...)]``); the
function shapes arguments for one core service call and its answer for the client, and holds
no domain logic. Each module lists ``(function, options)`` pairs in ``TOOLS``; ``register``
adds them to the server with ``mcp.tool(function, **options)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastmcp import FastMCP

#: a read-only tool
READ: dict[str, Any] = {"annotations": {"readOnlyHint": True}}
#: a read-only tool without a declared output schema: the Python MCP client re-validates
#: each result with jsonschema (~30 ms a call, docs/performance.md); the result is still
#: structured
READ_UNCHECKED: dict[str, Any] = {**READ, "output_schema": None}

Tools = Sequence[tuple[Callable[..., Any], dict[str, Any]]]
#: the characters of an id a compact answer shows (get, delete_memory and update_reflection
#: take them)
SHORT_ID = 8


def add_tools(mcp: FastMCP, tools: Tools) -> None:
    for function, options in tools:
        mcp.tool(function, **options)
