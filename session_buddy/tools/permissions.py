"""MCP tool: learned permissions (list, trust, revoke); see :mod:`session_buddy.core.permissions`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from session_buddy import di
from session_buddy.core.permissions import PermissionService

Action = Literal["list", "trust", "revoke"]


async def permissions(
    action: Action = "list",
    pattern: Annotated[
        str | None,
        Field(
            max_length=500, description="trust/revoke: a pattern as listed, e.g. 'Bash(pytest *)'"
        ),
    ] = None,
    project: Annotated[
        str | None,
        Field(max_length=4096, description="The project folder; list: all projects when omitted"),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    service = di.get(PermissionService)
    if action == "list":
        rows = await service.list_patterns(project, limit)
        return {
            "enabled": service.settings.permissions.enabled,
            "threshold": service.settings.permissions.threshold,
            "patterns": rows,
        }
    record = await service.set_flag(project or "", pattern or "", trusted=action == "trust")
    return {"action": action, "pattern": record.get("pattern"), "project": record.get("project")}


def register(mcp: FastMCP) -> None:
    mcp.tool(
        permissions,
        description=(
            "Learned permissions for shell commands: action='list' shows the patterns approved "
            "per project (approvals within the expiry, category low/high/destructive, trusted, "
            "revoked, auto_approved); 'trust' approves a low-risk pattern now; 'revoke' stops "
            "one being approved automatically. Destructive commands are never approved "
            "automatically. Learning is off unless permissions.enabled is set."
        ),
    )
