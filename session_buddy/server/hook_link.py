"""A hook's link to the running shared service: one POST to ``/hooks/<Event>`` on loopback.

Claude Code runs ``session-buddy hook <Event>`` as a fresh process for every event, with a
tight time budget. The service of the data directory already has the store open and the
model loaded, so the hook asks it for the text to inject (:mod:`session_buddy.core.recall`)
instead of opening anything itself. Light imports only (standard library and our light
modules); every failure is an answer of ``None`` with the reason, never an exception.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from session_buddy.server.auth import load_secret, login_name, mint_token
from session_buddy.server.discovery import live_service, spawn_service

TOKEN_TTL_S = 120
MAX_ANSWER_BYTES = 1024 * 1024
#: the service a hook warms up starts after this long: Claude Code is starting too, and its MCP
#: front must answer within Claude Code's wait for MCP servers (about 2 s), on a busy machine too
WARM_DELAY_S = 1.5


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
        status, body = post(
            str(info["host"]),
            int(info["port"]),
            f"/hooks/{event}",
            json.dumps(payload),
            headers,
            timeout_s,
        )
    except Exception as exc:  # a hook never fails: say why and fall back
        return None, f"{type(exc).__name__}: {exc}"
    if status != 200:
        return None, f"service answered {status}: {body[:200]!r}"
    try:
        answer = json.loads(body)
    except ValueError:
        return None, "service answered non-JSON"
    if not isinstance(answer, dict):
        return None, "service answered a non-object"
    return answer, "ok"


def post(
    host: str, port: int, path: str, body: str, headers: dict[str, str], timeout_s: float
) -> tuple[int, bytes]:
    """One HTTP/1.1 POST over a plain socket (``Connection: close``): the status and the body.
    A hook runs as a fresh process per event, and ``http.client`` alone costs it ~70 ms of
    imports (email, ssl) on a busy machine; this is the part of HTTP a loopback answer needs."""
    data = body.encode("utf-8")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(data)}"]
    lines += ["Connection: close", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + data)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_ANSWER_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, _, header_text = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in header_text.lower():
        rest = _unchunk(rest)
    return status, rest


def _unchunk(data: bytes) -> bytes:
    out: list[bytes] = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def warm(data_dir: Path, config: str | None = None) -> str:
    """Start the service in the background when none runs (the session's bridge will find
    it warm); returns what happened, for the log."""
    if live_service(data_dir) is not None:
        return "service already running"
    try:
        pid = spawn_service(data_dir, config, delay_s=WARM_DELAY_S)
    except Exception as exc:
        return f"could not start the service: {type(exc).__name__}: {exc}"
    return f"starting the service in {WARM_DELAY_S:.1f} s (pid {pid})"
