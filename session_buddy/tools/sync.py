"""MCP tools: sync to the remote (Akosha) and its dead-letter queue.

Thin: the work is :class:`session_buddy.core.sync.SyncService`'s. ``session-buddy sync-now``,
``sync-status`` and ``sync dlq`` call these tools on the running service, so only the
process that owns the store writes it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from session_buddy import di
from session_buddy.core.sync import SyncService


async def sync_now() -> dict[str, Any]:
    return await di.get(SyncService).sync_now()


async def sync_status() -> dict[str, Any]:
    return await di.get(SyncService).status()


async def sync_dlq(
    action: Annotated[Literal["list", "retry", "drop"], Field(description="What to do")],
    ids: Annotated[
        list[str] | None, Field(description="dead-letter ids to retry or drop; omit for all")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=10_000, description="list: most entries")] = 50,
) -> dict[str, Any]:
    return await di.get(SyncService).dlq(action, ids, limit)


def register(mcp: FastMCP) -> None:
    mcp.tool(
        sync_now,
        description=(
            "Push new and changed memories (conversations, reflections, insights, session and "
            "quality records) to the sync remote (Akosha) now, then retry due dead letters. "
            "Returns what the round did: pushed, stored, already stored, retries, "
            "dead-lettered, recovered, and why it stopped early (circuit open, auth)."
        ),
    )
    mcp.tool(
        sync_status,
        annotations={"readOnlyHint": True},
        description=(
            "Sync state: cursor and lag per stream (items, sessions, quality), the circuit "
            "breaker of the remote (closed, open, half_open), dead-letter queue size, the "
            "last round and its last error."
        ),
    )
    mcp.tool(
        sync_dlq,
        description=(
            "The sync dead-letter queue (memories that kept failing, with their last error): "
            "list them, retry them now, or drop them. ids: dead-letter ids (from list); omit "
            "for all."
        ),
    )
