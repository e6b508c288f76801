"""The server over real transports: stdio (subprocess) and streamable HTTP, and SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import session_buddy_cmd

PROTOCOL = "2025-06-18"


class StdioPeer:
    """Drives `session-buddy serve` over real pipes and checks every stdout line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [*session_buddy_cmd(), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        self.next_id = 0
        self.lines: list[bytes] = []

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        return self.next_id

    def read_message(self, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "no answer from the server in time"
        line = self.proc.stdout.readline()
        assert line, f"server closed stdout; stderr: {self.stderr_text()}"
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

    def initialize(self) -> dict[str, Any]:
        rid = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
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
        for line in self.proc.stdout.read().splitlines():
            if line.strip():
                assert json.loads(line).get("jsonrpc") == "2.0", line


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env.update({"HOME": str(tmp_path / "home"), "SESSION_BUDDY_DATA_DIR": str(tmp_path / "data")})
    env.update(extra)
    return env


def test_stdio_only_json_rpc_on_stdout_and_clean_exit(tmp_path: Path) -> None:
    peer = StdioPeer(server_env(tmp_path), cwd=tmp_path)
    try:
        start = time.perf_counter()
        init = peer.initialize()
        assert time.perf_counter() - start < 10
        assert init["result"]["serverInfo"]["name"] == "session-buddy"
        assert init["result"]["protocolVersion"] == PROTOCOL
        tools = peer.wait_for(peer.request("tools/list"))
        names = {t["name"] for t in tools["result"]["tools"]}
        assert {"store_reflection", "search", "health"} <= names
        assert all(t.get("description") for t in tools["result"]["tools"])
        stored = peer.call("store_reflection", {"content": "stdio transport works", "project": "p"})
        assert not stored.get("isError"), stored
        found = peer.call("search", {"query": "stdio transport", "project": "p"})
        assert found["structuredContent"]["hits"][0]["content"] == "stdio transport works"
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        code = peer.proc.wait(timeout=60)
    peer.finish_stdout()
    assert code == 0, peer.stderr_text()


def test_sigterm_mid_work_keeps_acknowledged_writes(tmp_path: Path) -> None:
    peer = StdioPeer(server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb"), cwd=tmp_path)
    acknowledged: list[str] = []
    try:
        peer.initialize()
        for n in range(40):
            peer.request(
                "tools/call",
                {
                    "name": "store_conversation",
                    "arguments": {"content": f"turn number {n} about sigterm", "project": "kill"},
                },
            )
        # read a part of the answers, then terminate while the rest are in flight
        while len(acknowledged) < 15:
            message = peer.read_message()
            if "result" in message and not message["result"].get("isError"):
                acknowledged.append(message["result"]["structuredContent"]["id"])
        peer.proc.send_signal(signal.SIGTERM)
        code = peer.proc.wait(timeout=60)
        assert code == 0, peer.stderr_text()
    finally:
        if peer.proc.poll() is None:
            peer.proc.kill()
    db = tmp_path / "data" / "memory.duckdb"
    assert db.exists()
    assert not Path(str(db) + ".wal").exists(), "database was not checkpointed and closed"
    # reopen the data through a fresh server process and check every acknowledged item
    peer2 = StdioPeer(server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb"), cwd=tmp_path)
    try:
        peer2.initialize()
        stats = peer2.call("reflection_stats", {"project": "kill"})
        assert not stats.get("isError"), stats
        listed = peer2.call(
            "search",
            {"query": "turn number sigterm", "project": "kill", "limit": 100, "mode": "keyword"},
        )
        ids = {h["id"] for h in listed["structuredContent"]["hits"]}
        assert set(acknowledged) <= ids
    finally:
        assert peer2.proc.stdin is not None
        peer2.proc.stdin.close()
        peer2.proc.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_transport(tmp_path: Path) -> None:
    from fastmcp import Client

    port = _free_port()
    proc = subprocess.Popen(
        [*session_buddy_cmd(), "serve", "--http", "--port", str(port)],
        env=server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.2)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            stored = await client.call_tool(
                "store_reflection", {"content": "http transport works", "project": "h"}
            )
            assert stored.structured_content is not None
            found = await client.call_tool("search", {"query": "http transport", "project": "h"})
            assert found.structured_content["hits"][0]["content"] == "http transport works"
            health = await client.call_tool("health", {})
            assert health.structured_content["status"] in ("healthy", "degraded")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0
    assert proc.stdout is not None
    assert proc.stdout.read() == b""
    db = tmp_path / "data" / "memory.duckdb"
    assert db.exists() and not Path(f"{db}.wal").exists(), "shutdown did not checkpoint storage"


def test_http_refuses_non_loopback_without_opt_in(tmp_path: Path) -> None:
    result = subprocess.run(
        [*session_buddy_cmd(), "serve", "--http", "--host", "0.0.0.0", "--port", str(_free_port())],
        env=server_env(tmp_path),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"loopback" in result.stderr


@pytest.mark.parametrize("version", ["2025-06-18", "1999-01-01"])
async def test_front_answers_exactly_like_the_server(lite_settings, version: str) -> None:  # type: ignore[no-untyped-def]
    import mcp.shared.version
    from fastmcp import Client

    from session_buddy import identity
    from session_buddy.server import create_server

    assert (
        list(mcp.shared.version.SUPPORTED_PROTOCOL_VERSIONS) == identity.SUPPORTED_PROTOCOL_VERSIONS
    )
    async with Client(create_server(lite_settings)) as client:
        real = client.initialize_result.model_dump(mode="json", by_alias=True, exclude_none=True)
    front = identity.initialize_result(version)
    assert front["capabilities"] == real["capabilities"]
    assert front["serverInfo"] == {k: real["serverInfo"][k] for k in ("name", "version")}
    assert front["instructions"] == real["instructions"]
    expected = (
        version
        if version in identity.SUPPORTED_PROTOCOL_VERSIONS
        else identity.LATEST_PROTOCOL_VERSION
    )
    assert front["protocolVersion"] == expected


def test_cli_help_and_config(tmp_path: Path) -> None:
    env = server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="memory")
    result = subprocess.run(
        [*session_buddy_cmd(), "config", "--json"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rows = {r["key"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["adapters.storage"] == {
        "key": "adapters.storage",
        "value": "memory",
        "source": "env",
    }


def test_cli_health_json(tmp_path: Path) -> None:
    env = server_env(
        tmp_path,
        SESSION_BUDDY_ADAPTERS__STORAGE="memory",
        SESSION_BUDDY_ADAPTERS__EMBEDDINGS="none",
    )
    result = subprocess.run(
        [*session_buddy_cmd(), "health", "--json"], env=env, capture_output=True, timeout=120
    )
    report = json.loads(result.stdout)
    assert report["status"] == "degraded"  # no embeddings: semantic search degraded
    components = {c["name"]: c for c in report["components"]}
    assert components["embeddings"]["status"] == "degraded"
    assert components["storage"]["metadata"]["backend"] == "memory"
    assert result.returncode == 0


def test_cli_health_unhealthy_exit_code(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    env = server_env(tmp_path, SESSION_BUDDY_DATA_DIR=str(blocker / "data"))
    result = subprocess.run(
        [*session_buddy_cmd(), "health", "--json"], env=env, capture_output=True, timeout=120
    )
    assert result.returncode == 1, result.stdout
    assert json.loads(result.stdout)["status"] == "unhealthy"


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX signals and pipes")
