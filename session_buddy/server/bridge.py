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
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from session_buddy.core.sessions.current import client_headers
from session_buddy.server.auth import load_secret, login_name, mint_token
from session_buddy.server.discovery import ensure_service, pid_alive, read_service

log = logging.getLogger(__name__)

TOKEN_TTL_S = 3600
ATTEMPTS = 4
#: A socket timeout beyond the call timeout, in case the watch itself could not act.
SOCKET_MARGIN_S = 30.0


@dataclass(frozen=True)
class Timeouts:
    """How long a call may take, and when to check that the service still answers."""

    call_s: float = 600.0
    probe_after_s: float = 10.0
    probe_timeout_s: float = 3.0


class Unanswered(Exception):
    """The service took a request and gave no answer: ``kind`` is ``timeout`` (longer than
    the call timeout) or ``unresponsive`` (it does not answer a health probe either)."""

    def __init__(self, kind: str, info: dict[str, Any]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.info = info
        self.restarted = False


class ServiceBridge:
    def __init__(
        self,
        data_dir: Path,
        config: str | None,
        deliver: Callable[[dict[str, Any]], None],
        protocol_version: str,
        user: str | None = None,
        timeouts: Timeouts | None = None,
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
        # who this bridge is and where its client works, sent with every request, so the
        # service keeps this client's current session and project apart from the others'
        self.client_id = uuid.uuid4().hex
        self.client_headers = client_headers(
            self.client_id, os.getcwd(), os.environ.get("CLAUDE_PROJECT_DIR") or None
        )
        self.liveness = Liveness(self, timeouts or Timeouts())

    def set_root(self, root: str | None) -> None:
        """The client's MCP root (:mod:`session_buddy.server.roots`), sent from now on."""
        log.info("the client's MCP root: %s", root or "none (its working directory counts)")
        self.client_headers = client_headers(
            self.client_id, os.getcwd(), os.environ.get("CLAUDE_PROJECT_DIR") or None, root
        )

    # -- service and credentials ---------------------------------------------------------

    def service(self) -> dict[str, Any]:
        with self._info_lock:
            if self._info is None:
                info = ensure_service(self.data_dir, self.config)
                if self.liveness.unresponsive(info) and self.liveness.restart(info):
                    info = ensure_service(self.data_dir, self.config)  # a stopped one replaced
                self._info = info
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

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {self.token()}",
            "MCP-Protocol-Version": self.protocol_version,
            **self.client_headers,
        }

    def _connection(self, info: dict[str, Any]) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        key = (info["host"], info["port"])
        if conn is None or getattr(self._local, "key", None) != key:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(
                str(info["host"]),
                int(info["port"]),
                timeout=self.liveness.timeouts.call_s + SOCKET_MARGIN_S,
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
        returns (status, error text). Raises Unanswered when the watch gave up on it."""
        info = self.service()
        conn = self._connection(info)
        with self.liveness.watch(info, conn) as verdict:
            try:
                return self._exchange(conn, message, body)
            except (OSError, http.client.HTTPException, ValueError):
                if verdict:
                    raise Unanswered(verdict[0], info) from None
                raise

    def _exchange(
        self, conn: http.client.HTTPConnection, message: dict[str, Any], body: bytes
    ) -> tuple[int, str]:
        conn.request(
            "POST",
            "/mcp",
            body=body,
            headers=self.headers(),
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
            except Unanswered as exc:
                if is_request:
                    self.deliver(self.liveness.answer(message["id"], exc))
                return
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


#: A service younger than this that is not stopped is given time to start serving.
STARTING_GRACE_S = 60.0
PROBE = b'{"jsonrpc":"2.0","id":"session-buddy-probe","method":"ping"}'


class Liveness:
    """Tells a service that accepts connections but does not answer (stopped, hung) from a
    slow call, and restarts it when it is ours (the service of our data dir, our user)."""

    def __init__(self, bridge: ServiceBridge, timeouts: Timeouts) -> None:
        self.bridge = bridge
        self.timeouts = timeouts

    def probe(self, info: dict[str, Any]) -> bool:
        """Does the service answer a ping at all (any HTTP status) within the probe timeout?"""
        conn = http.client.HTTPConnection(
            str(info["host"]), int(info["port"]), timeout=self.timeouts.probe_timeout_s
        )
        try:
            conn.request("POST", "/mcp", body=PROBE, headers=self.bridge.headers())
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException, RuntimeError):
            return False
        finally:
            conn.close()

    def unresponsive(self, info: dict[str, Any]) -> bool:
        if self.probe(info):
            return False
        # stopped (SIGSTOP, a debugger): certain
        if _process_state(int(info["pid"])) == "T":
            return True
        # a service still starting (listening, not yet serving) is not hung; else ask again
        starting = time.time() - float(info.get("started_at") or 0) < STARTING_GRACE_S
        return not starting and not self.probe(info)

    def restart(self, info: dict[str, Any]) -> bool:
        """Kill an unresponsive service of ours (SIGKILL: a stopped process ignores the rest
        until continued; acknowledged writes are on disk); the next request starts a new one."""
        pid = int(info["pid"])
        current = read_service(self.bridge.data_dir)
        if current is None or int(current["pid"]) != pid or not _owned_by_us(pid):
            return False
        log.warning("session-buddy service %d does not answer: killing it to restart", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return not pid_alive(pid)

    @contextlib.contextmanager
    def watch(self, info: dict[str, Any], conn: http.client.HTTPConnection) -> Iterator[list[str]]:
        """While a call waits: after probe_after_s, probe the service every probe_after_s;
        cut the call's connection when the service is unresponsive or the call is over
        call_s. The yielded list holds the verdict, if any."""
        verdict: list[str] = []
        done = threading.Event()
        t = self.timeouts

        def run() -> None:
            start = time.monotonic()
            while not done.wait(
                min(t.probe_after_s, max(0.01, start + t.call_s - time.monotonic()))
            ):
                if time.monotonic() - start >= t.call_s:
                    verdict.append("timeout")
                elif self.unresponsive(info):
                    verdict.append("unresponsive")
                if verdict and not done.is_set():
                    with contextlib.suppress(OSError, AttributeError):
                        conn.sock.shutdown(socket.SHUT_RDWR)
                    return

        threading.Thread(target=run, name="bridge-watch", daemon=True).start()
        try:
            yield verdict
        finally:
            done.set()

    def answer(self, request_id: Any, exc: Unanswered) -> dict[str, Any]:
        """The error for a request the service took and never answered (not retried: it
        may have run)."""
        self.bridge._forget_service()
        pid = exc.info.get("pid")
        log_file = self.bridge.data_dir / "logs" / "service.log"
        if exc.kind == "timeout":
            text = (
                f"no answer from the session-buddy service within {self.timeouts.call_s:.0f} s "
                f"(server.call_timeout_s); it may still be working on it: see {log_file}"
            )
        else:
            restarted = self.restart(exc.info)
            text = (
                f"the session-buddy service (pid {pid}) accepts connections but does not "
                "answer (a health probe timed out); "
                + (
                    "it was stopped and the next request starts a new one: retry"
                    if restarted
                    else f"it is not ours to restart: see {log_file}"
                )
            )
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": text}}


def _process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return "?"


def _owned_by_us(pid: int) -> bool:
    """Our user's session-buddy process (not a pid reused by something else)."""
    try:
        mine = os.stat(f"/proc/{pid}").st_uid == os.getuid()
        return mine and b"session_buddy" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def call_tool(
    data_dir: Path,
    config: str | None,
    name: str,
    arguments: dict[str, Any],
    *,
    user: str | None = None,
    timeouts: Timeouts | None = None,
) -> dict[str, Any]:
    """Call one tool on the shared service of ``data_dir`` (starting it when needed) and return
    its structured result: how a CLI command that writes goes through the one writer instead of
    opening the store itself. Raises RuntimeError with the service's message on an error."""
    answers: list[dict[str, Any]] = []
    bridge = ServiceBridge(
        data_dir, config, answers.append, "2025-06-18", user=user, timeouts=timeouts
    )
    bridge.forward(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
    )
    answer = next((a for a in answers if a.get("id") == 1), None)
    if answer is None or "error" in answer:
        raise RuntimeError(str((answer or {}).get("error", {}).get("message", "no answer")))
    result = answer.get("result") or {}
    text = " ".join(c.get("text", "") for c in result.get("content", []) if isinstance(c, dict))
    if result.get("isError"):
        raise RuntimeError(text or "the tool failed")
    structured = result.get("structuredContent")
    return structured if isinstance(structured, dict) else {"text": text}
