"""MCP tool: the webhook deliveries of events and their dead-letter queue.

Thin: the work is :class:`session_buddy.core.webhooks.WebhookService`'s. ``session-buddy
events status`` and ``events dlq list|retry|drop`` call it on the running service.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from session_buddy import di
from session_buddy.core.webhooks import WebhookService


async def events_webhooks(
    action: Annotated[
        Literal["status", "list", "retry", "drop"],
        Field(description="status, or the dead-letter queue: list, retry or drop"),
    ] = "status",
    ids: Annotated[
        list[str] | None, Field(description="dead-letter ids to retry or drop; omit for all")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=10_000, description="list: most entries")] = 50,
) -> dict[str, Any]:
    service = di.get(WebhookService)
    if action == "status":
        return await service.status()
    return await service.dlq(action, ids, limit)


def register(mcp: FastMCP) -> None:
    mcp.tool(
        events_webhooks,
        description=(
            "Webhook delivery of events (session started/checkpoint/ended, insight captured, "
            "sync failed). status: delivered, retries, dead-lettered, dropped, queue, circuit "
            "per URL; list / retry / drop: the events that kept failing, with their last error "
            "(ids from list; omit for all)."
        ),
    )
