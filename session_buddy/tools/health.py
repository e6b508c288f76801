"""MCP tool: health."""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP

from session_buddy import di
from session_buddy.adapters.health._base import HealthBase


async def health() -> dict[str, Any]:
    return await di.get(HealthBase).check()


def register(mcp: FastMCP) -> None:
    mcp.tool(
        health,
        annotations={"readOnlyHint": True},
        description=(
            "Report the health of session-buddy: overall status (healthy, degraded or unhealthy) "
            "and each component (python with the service's resident memory, data dir, storage "
            "with latency, counts and the in-process index's size, embeddings "
            "loaded/lazy/degraded, http). Use it when memory tools fail or return nothing."
        ),
    )
