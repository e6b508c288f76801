"""Real MCP peers for tests: a stdio client driving `session-buddy serve` over pipes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import session_buddy_cmd

PROTOCOL = "2025-06-18"


class StdioPeer:
    """Drives `session-buddy serve` over real pipes and checks every stdout line."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*session_buddy_cmd(), "serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        self.next_id = 0
        self.lines: list[bytes] = []
        self._pending = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        return self.next_id

    def read_message(self, timeout: float = 60) -> dict[str, Any]:
        # lines are split here, not by a buffered reader: several answers arriving at once
        # would otherwise sit in its buffer while select() waits on the empty pipe
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "no answer from the server in time"
            chunk = os.read(fd, 1 << 20)
            assert chunk, f"server closed stdout; stderr: {self.stderr_text()}"
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        self.lines.append(line)
        message = json.loads(line)  # every stdout line must be JSON-RPC
        assert message.get("jsonrpc") == "2.0", line
        return message

    def wait_for(self, request_id: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.read_message(deadline - time.monotonic())
            if message.get("id") == request_id and "method" not in message:
                return message
        raise AssertionError(f"no answer to request {request_id}")

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.wait_for(self.request("tools/call", {"name": tool, "arguments": arguments}))
        assert "result" in answer, answer
        return answer["result"]

    def initialize(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": capabilities or {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        )
        answer = self.wait_for(rid, timeout=30)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-4000:]

    def finish_stdout(self) -> None:
        """Read what is left on stdout after exit: it must be JSON-RPC too."""
        assert self.proc.stdout is not None
        for line in (self._pending + self.proc.stdout.read()).splitlines():
            if line.strip():
                assert json.loads(line).get("jsonrpc") == "2.0", line


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env.update({"HOME": str(tmp_path / "home"), "SESSION_BUDDY_DATA_DIR": str(tmp_path / "data")})
    env.update(extra)
    return env


def python_last_line(tmp_path: Path, code: str, timeout: float = 180) -> str:
    """The last line ``code`` prints, run by a new interpreter on this checkout with
    ``tmp_path/data`` as its argument (and data dir) and its own HOME; it must exit 0."""
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=server_env(tmp_path, PYTHONPATH=str(ROOT)),
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_http(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    """``session-buddy serve --http --port PORT`` with ``env``, once it accepts connections."""
    proc = subprocess.Popen(
        [*session_buddy_cmd(), "serve", "--http", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve --http did not listen in time")


def stop_service(data_dir: Path, timeout: float = 30) -> None:
    """Terminate the shared service of ``data_dir`` if one runs, and wait for it."""
    from session_buddy.server.discovery import pid_alive, read_service

    info = read_service(data_dir)
    if info is None:
        return
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def run_hook(env: dict[str, str], event: str, payload: dict[str, Any]) -> tuple[str, str, float]:
    """``session-buddy hook EVENT`` as Claude Code runs it (a fresh process, the hook JSON on
    stdin): its stdout, stderr and wall time; it must exit 0."""
    started = time.monotonic()
    done = subprocess.run(
        [*session_buddy_cmd(), "hook", event],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, time.monotonic() - started


@contextlib.contextmanager
def bridge_and_service(tmp_path: Path, **extra: str) -> Iterator[tuple[StdioPeer, dict[str, str]]]:
    """A stdio bridge (initialised) on the shared service of ``tmp_path/data`` with ``extra``
    settings in the environment, and that environment; the service is stopped after."""
    env = server_env(tmp_path, **extra)
    peer = StdioPeer(env, tmp_path)
    peer.initialize()
    try:
        yield peer, env
    finally:
        close_peer(peer, tmp_path / "data")


def close_peer(peer: StdioPeer, data_dir: Path) -> int:
    """End a bridge as its client would (stdin closed), stop the service of ``data_dir``;
    the bridge's exit code."""
    assert peer.proc.stdin is not None
    peer.proc.stdin.close()
    code = peer.proc.wait(timeout=60)
    stop_service(data_dir)
    return code
