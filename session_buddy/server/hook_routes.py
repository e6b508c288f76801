"""The service's HTTP routes for Claude Code's hooks (beside ``/mcp``, behind the same
bearer-token guard). ``POST /hooks/<Event>`` takes the hook's JSON and answers
``{"additionalContext": text}`` (``""`` when there is nothing to say):

- ``SessionStart``: applies what hooks spooled (waiting briefly for it: a previous session's
  end is what the brief should include), then the brief;
- ``UserPromptSubmit``: the recall for the prompt;
- ``PreToolUse`` / ``PostToolUse``: learned permissions (:mod:`session_buddy.core.permissions`);
- ``PreCompact`` / ``SessionEnd``: a nudge; the spooled event is applied in the background, so
  the next session finds the handoff written and the insights captured.

The text comes from :class:`session_buddy.core.recall.RecallService`; the hook side is
:mod:`session_buddy.server.hook_link`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse

from session_buddy import di
from session_buddy.core.permissions import PermissionService
from session_buddy.core.recall import RecallService
from session_buddy.core.sessions import SessionService
from session_buddy.core.users import current_user, local_user
from session_buddy.errors import SessionBuddyError
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1024 * 1024
#: how long the brief waits for spooled events to be applied (they go on in the background)
SPOOL_WAIT_S = 0.6
CONTEXT_EVENTS = ("SessionStart", "UserPromptSubmit")
NUDGE_EVENTS = ("PreCompact", "SessionEnd")
PERMISSION_EVENTS = ("PreToolUse", "PostToolUse")

_background: set[asyncio.Task[int]] = set()


async def _apply_spooled() -> int:
    await di.ready()
    return await di.get(SessionService).process_spool()


def apply_spooled() -> asyncio.Task[int]:
    """Apply spooled hook events in the background (the task is kept until it ends)."""
    task = asyncio.get_running_loop().create_task(_apply_spooled(), name="apply-spool")
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _permission(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """PreToolUse: Claude Code's allow decision when the call is learned; PostToolUse: count
    the approval. Answers ``{"hookSpecificOutput": ...}`` or nothing to print."""
    permissions = di.get(PermissionService)
    try:
        await permissions.apply_spooled()
        if event == "PostToolUse":
            await permissions.observe(payload)
            return {}
        decision = await permissions.decide(payload)
    except SessionBuddyError as exc:
        return {"error": str(exc)}
    if not decision.allow:
        return {"reason": decision.reason}
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": decision.reason,
        }
    }


async def json_object(request: Request, max_bytes: int, what: str) -> dict[str, Any] | JSONResponse:
    """The request's body as a JSON object, or the error answer (413, 400) saying why."""
    body = await request.body()
    if len(body) > max_bytes:
        return JSONResponse({"error": f"{what} too large"}, status_code=413)
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        return JSONResponse({"error": f"{what} is not JSON"}, status_code=400)
    if not isinstance(payload, dict):
        return JSONResponse({"error": f"{what} must be an object"}, status_code=400)
    return payload


def register(mcp: FastMCP) -> None:
    @mcp.custom_route("/hooks/{event}", methods=["POST"])
    async def hook_context(request: Request) -> JSONResponse:
        # a hook is this machine's user (its token proves it can read the data dir's secret),
        # whatever name it minted the token with: act as the service's own user
        bound = current_user.set(local_user(di.get(SessionBuddySettings)))
        try:
            return await _answer(request)
        finally:
            current_user.reset(bound)

    async def _answer(request: Request) -> JSONResponse:
        event = str(request.path_params.get("event", ""))
        started = time.perf_counter()
        payload = await json_object(request, MAX_PAYLOAD_BYTES, "hook payload")
        if isinstance(payload, JSONResponse):
            return payload
        if event in NUDGE_EVENTS:
            apply_spooled()
            return JSONResponse({})
        if event not in (*CONTEXT_EVENTS, *PERMISSION_EVENTS):
            return JSONResponse({"error": f"no hook route for {event!r}"}, status_code=404)
        await di.ready()
        if event in PERMISSION_EVENTS:
            return JSONResponse(await _permission(event, payload))
        if event == "SessionStart":
            await asyncio.wait([apply_spooled()], timeout=SPOOL_WAIT_S)
        recall = di.get(RecallService)
        if event == "SessionStart":
            context = await recall.session_start(payload)
        else:
            context = await recall.user_prompt(payload)
        log.info(
            "hook %s: %d chars, %d memories in %.0f ms",
            event,
            len(context.text),
            len(context.memory_ids),
            (time.perf_counter() - started) * 1000,
        )
        return JSONResponse({"additionalContext": context.text, "memory_ids": context.memory_ids})
