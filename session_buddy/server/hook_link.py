"""A hook's link to the running shared service: one POST to ``/hooks/<Event>`` on loopback.

Claude Code runs ``session-buddy hook <Event>`` as a fresh process for every event, with a
tight time budget. The service of the data directory already has the store open and the
model loaded, so the hook asks it for the text to inject (:mod:`session_buddy.core.recall`)
instead of opening anything itself. Light imports only (standard library and our light
modules); every failure is an answer of ``None`` with the reason, never an exception.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from session_buddy.server.auth import load_secret, login_name, mint_token
from session_buddy.server.discovery import live_service, spawn_service

TOKEN_TTL_S = 120


def ask(
    data_dir: Path, event: str, payload: dict[str, Any], timeout_s: float, user: str | None = None
) -> tuple[dict[str, Any] | None, str]:
    """The service's answer for ``event`` (``additionalContext``, ``hookSpecificOutput``...),
    or ``(None, reason)`` when no running service answered in time."""
    info = live_service(data_dir)
    if info is None:
        return None, "no service running"
    try:
        headers = {"Content-Type": "application/json"}
        if info.get("auth", True):
            secret = load_secret(data_dir, create=False)
            token = mint_token(secret, user or login_name(), TOKEN_TTL_S)
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection(str(info["host"]), int(info["port"]), timeout=timeout_s)
        try:
            conn.request("POST", f"/hooks/{event}", body=json.dumps(payload), headers=headers)
            response = conn.getresponse()
            body = response.read(1024 * 1024)
        finally:
            conn.close()
    except Exception as exc:  # a hook never fails: say why and fall back
        return None, f"{type(exc).__name__}: {exc}"
    if response.status != 200:
        return None, f"service answered {response.status}: {body[:200]!r}"
    try:
        answer = json.loads(body)
    except ValueError:
        return None, "service answered non-JSON"
    if not isinstance(answer, dict):
        return None, "service answered a non-object"
    return answer, "ok"


def warm(data_dir: Path, config: str | None = None) -> str:
    """Start the service in the background when none runs (the session's bridge will find
    it warm); returns what happened, for the log."""
    if live_service(data_dir) is not None:
        return "service already running"
    try:
        pid = spawn_service(data_dir, config)
    except Exception as exc:
        return f"could not start the service: {type(exc).__name__}: {exc}"
    return f"started the service (pid {pid})"
