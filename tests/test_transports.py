"""The server over real transports: stdio (subprocess) and streamable HTTP, and SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import session_buddy_cmd
from tests.mcp_peers import PROTOCOL, StdioPeer, free_port, serve_http, server_env, stop_service


@pytest.mark.parametrize("mode", ["shared", "standalone"])
def test_stdio_only_json_rpc_on_stdout_and_clean_exit(tmp_path: Path, mode: str) -> None:
    args = ["--standalone"] if mode == "standalone" else []
    peer = StdioPeer(server_env(tmp_path), tmp_path, *args)
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
        assert found["structuredContent"]["hits"][0]["snippet"] == "stdio transport works"
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        code = peer.proc.wait(timeout=60)
    peer.finish_stdout()
    assert code == 0, peer.stderr_text()
    service = tmp_path / "data" / "service.json"
    try:
        assert service.exists() == (mode == "shared")
    finally:
        stop_service(tmp_path / "data")


def test_sigterm_mid_work_keeps_acknowledged_writes(tmp_path: Path) -> None:
    peer = StdioPeer(
        server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb"), tmp_path, "--standalone"
    )
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
    peer2 = StdioPeer(
        server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb"), tmp_path, "--standalone"
    )
    try:
        peer2.initialize()
        stats = peer2.call("reflection_stats", {"project": "kill"})
        assert not stats.get("isError"), stats
        listed = peer2.call(
            "search",
            {
                "query": "turn number sigterm",
                "project": "kill",
                "limit": 100,
                "mode": "keyword",
                "fields": ["id"],
            },
        )
        ids = {h["id"] for h in listed["structuredContent"]["hits"]}
        assert set(acknowledged) <= ids
    finally:
        assert peer2.proc.stdin is not None
        peer2.proc.stdin.close()
        peer2.proc.wait(timeout=60)


async def test_http_transport(tmp_path: Path) -> None:
    from fastmcp import Client

    port = free_port()
    proc = serve_http(
        server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb"), tmp_path, port
    )
    try:
        from session_buddy.server.auth import load_secret, mint_token

        token = mint_token(load_secret(tmp_path / "data"), "tester")
        async with Client(f"http://127.0.0.1:{port}/mcp", auth=token) as client:
            stored = await client.call_tool(
                "store_reflection", {"content": "http transport works", "project": "h"}
            )
            assert stored.structured_content is not None
            found = await client.call_tool("search", {"query": "http transport", "project": "h"})
            assert found.structured_content["hits"][0]["snippet"] == "http transport works"
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
        [*session_buddy_cmd(), "serve", "--http", "--host", "0.0.0.0", "--port", str(free_port())],
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

    from session_buddy.server import identity
    from session_buddy.server.app import create_server

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
    assert components["storage"]["metadata"]["vector_search"] == "exact"
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


def test_cold_front_lists_tools_at_once_and_calls_wait_for_the_service(tmp_path: Path) -> None:
    """Claude Code's first model request goes out ~170 ms after it starts: with no service
    running, the front still answers tools/list (and the other list methods) at once, with
    what the server lists; a tool call then waits for the service it starts."""
    from session_buddy.server.catalog import load_catalog

    peer = StdioPeer(server_env(tmp_path), tmp_path)
    try:
        peer.initialize()
        started = time.monotonic()
        listed = peer.wait_for(peer.request("tools/list"), timeout=10)
        seconds = time.monotonic() - started
        assert listed["result"] == load_catalog()["tools/list"]
        assert seconds < 1.0, f"tools/list took {seconds:.2f}s on a cold service"
        for method in ("prompts/list", "resources/list", "resources/templates/list"):
            answer = peer.wait_for(peer.request(method), timeout=10)
            assert answer["result"] == load_catalog()[method]
        # Claude Code 2.1 sends server/discover while connecting: answered at once, not by
        # waiting for the service
        started = time.monotonic()
        discover = peer.wait_for(peer.request("server/discover"), timeout=10)
        assert discover["error"]["code"] == -32601
        assert time.monotonic() - started < 1.0
        result = peer.call("store_reflection", {"content": "cold start then a call"})
        assert not result.get("isError"), result
    finally:
        peer.proc.stdin.close()  # type: ignore[union-attr]
        peer.proc.wait(timeout=60)
        stop_service(tmp_path / "data")
    peer.finish_stdout()


def test_standalone_exits_quietly_when_its_client_closes_stdin(tmp_path: Path) -> None:
    """The client goes away (stdin closed) after a request: exit 0, no traceback on stderr."""
    peer = StdioPeer(server_env(tmp_path, SESSION_BUDDY_MODE="lite"), tmp_path, "--standalone")
    try:
        peer.initialize()
        assert "result" in peer.wait_for(peer.request("tools/list"))
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        code = peer.proc.wait(timeout=60)
    peer.finish_stdout()
    errors = peer.stderr_text()
    assert code == 0, errors
    assert "Traceback" not in errors and "I/O operation on closed file" not in errors, errors
