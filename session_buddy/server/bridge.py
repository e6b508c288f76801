"""The stdio bridge's link to the shared service: JSON-RPC messages over streamable HTTP.

Each message from the MCP client becomes one POST to the service (which runs stateless
streamable HTTP, so there is no session to lose when it restarts); the answer comes back as
JSON or as a short SSE stream (progress notifications, then the response), and every
message in it is passed to ``deliver``. When the service is gone (killed, idle-exited) the
bridge starts it again and retries; a request it cannot deliver gets a JSON-RPC error that
says where the service log is. Light imports only (no FastMCP, ACB, DuckDB or model).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from session_buddy.server.auth import load_secret, login_name, mint_token
from session_buddy.server.discovery import ensure_service

TOKEN_TTL_S = 3600
ATTEMPTS = 4
READ_TIMEOUT_S = 3600.0


class ServiceBridge:
    def __init__(
        self,
        data_dir: Path,
        config: str | None,
        deliver: Callable[[dict[str, Any]], None],
        protocol_version: str,
        user: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.deliver = deliver
        self.protocol_version = protocol_version
        self.user = user or login_name()
        self._info: dict[str, Any] | None = None
        self._info_lock = threading.Lock()
        self._local = threading.local()
        self._token: tuple[str, float] | None = None

    # -- service and credentials ---------------------------------------------------------

    def service(self) -> dict[str, Any]:
        with self._info_lock:
            if self._info is None:
                self._info = ensure_service(self.data_dir, self.config)
            return self._info

    def _forget_service(self) -> None:
        with self._info_lock:
            self._info = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
            self._local.conn = None

    def token(self) -> str:
        now = time.time()
        if self._token is None or self._token[1] - now < 300:
            secret = load_secret(self.data_dir, create=False)
            self._token = (mint_token(secret, self.user, TOKEN_TTL_S), now + TOKEN_TTL_S)
        return self._token[0]

    # -- HTTP ------------------------------------------------------------------------------

    def _connection(self, info: dict[str, Any]) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        key = (info["host"], info["port"])
        if conn is None or getattr(self._local, "key", None) != key:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(
                str(info["host"]), int(info["port"]), timeout=READ_TIMEOUT_S
            )
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
            self._local.key = key
        return conn

    @staticmethod
    def _sse_messages(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        data: list[str] = []
        while True:
            raw = response.readline()
            if not raw:
                break
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if data:
                    yield json.loads("\n".join(data))
                    data = []
                continue
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            yield json.loads("\n".join(data))

    def _post_once(self, message: dict[str, Any], body: bytes) -> tuple[int, str]:
        """POST one message (its bytes as the client sent them) and deliver what comes back;
        returns (status, error text)."""
        info = self.service()
        conn = self._connection(info)
        conn.request(
            "POST",
            "/mcp",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "Authorization": f"Bearer {self.token()}",
                "MCP-Protocol-Version": self.protocol_version,
            },
        )
        response = conn.getresponse()
        status = response.status
        ctype = response.getheader("content-type", "")
        if status == 200 and "text/event-stream" in ctype:
            answered = "id" not in message or "method" not in message
            for item in self._sse_messages(response):
                if item.get("id") == message.get("id") and "method" not in item:
                    answered = True
                self.deliver(item)
            if not answered:  # the service went away mid-stream (killed, restarted)
                raise ConnectionError("the stream ended before the answer")
            return status, ""
        payload = response.read()
        if status == 200:
            decoded = json.loads(payload) if payload.strip() else None
            for item in decoded if isinstance(decoded, list) else [decoded] if decoded else []:
                self.deliver(item)
            return status, ""
        if status in (202, 204):
            return status, ""
        return status, payload.decode("utf-8", "replace")[:500]

    def forward(self, message: dict[str, Any], body: bytes | None = None) -> None:
        """Deliver one client message to the service and its answers back (thread-safe).

        ``body`` is the message as the client encoded it (forwarded as is: no re-encoding,
        so the size the service sees is the size the client sent). A request always gets
        an answer, whatever goes wrong here.
        """
        try:
            self._forward(message, body if body is not None else json.dumps(message).encode())
        except Exception as exc:  # never leave a request unanswered
            if "method" in message and "id" in message:
                self.deliver(
                    {
                        "jsonrpc": "2.0",
                        "id": message["id"],
                        "error": {
                            "code": -32603,
                            "message": f"session-buddy bridge failed: {type(exc).__name__}: "
                            f"{str(exc)[:300]}",
                        },
                    }
                )

    def _forward(self, message: dict[str, Any], body: bytes) -> None:
        is_request = "method" in message and "id" in message
        problem = "no attempt made"
        for attempt in range(ATTEMPTS):
            try:
                status, text = self._post_once(message, body)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self._forget_service()
                time.sleep(0.1 * attempt)
                continue
            if status in (200, 202, 204):
                return
            if status == 401 and attempt == 0:
                self._token = None
                problem = f"HTTP 401: {text}"
                continue
            if status == 503:
                problem = f"HTTP 503: {text}"
                time.sleep(0.5 * (attempt + 1))
                continue
            if is_request:
                self.deliver(_refused(message["id"], status, text, len(body)))
            return
        if is_request:
            self.deliver(
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "error": {
                        "code": -32603,
                        "message": f"session-buddy service unavailable ({problem}); "
                        f"see {self.data_dir / 'logs' / 'service.log'}",
                    },
                }
            )


def _refused(request_id: Any, status: int, text: str, size: int) -> dict[str, Any]:
    """The answer to a request the service refused (it is up: this is not 'unavailable')."""
    if status == 413:
        message = (
            f"request too large: {size} bytes is over the service's limit "
            f"(server.max_request_bytes); {text}"
        )
    else:
        message = f"the session-buddy service refused the request (HTTP {status}): {text}"
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32600, "message": message}}
