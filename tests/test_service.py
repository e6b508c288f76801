"""One memory for many sessions: the shared service, its bridges, auth and crash safety."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from session_buddy.server.auth import load_secret, mint_token
from session_buddy.server.discovery import pid_alive, read_service
from tests.mcp_peers import StdioPeer, server_env, stop_service


@pytest.fixture
def data_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "data"
    yield folder
    stop_service(folder)


def shared_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb", **extra)


def services_for(data_dir: Path) -> list[int]:
    """Pids of every `session-buddy service` process serving ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = f"SESSION_BUDDY_DATA_DIR={data_dir}".encode() in environ
        service = b"session_buddy.cli" in cmdline and b"service" in cmdline
        if service and mine and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def close(peer: StdioPeer) -> None:
    if peer.proc.stdin is not None:
        peer.proc.stdin.close()
    peer.proc.wait(timeout=60)


def test_four_concurrent_sessions_lose_nothing(tmp_path: Path, data_dir: Path) -> None:
    env = shared_env(tmp_path)
    peers = [StdioPeer(env, tmp_path) for _ in range(4)]
    errors: list[str] = []

    def work(n: int, peer: StdioPeer) -> None:
        try:
            peer.initialize()
            for i in range(250):
                stored = peer.call(
                    "store_conversation",
                    {
                        "content": f"session {n} turn {i}: note zq{n}x{i:03d} about locks",
                        "project": "conc",
                    },
                )
                if stored.get("isError"):
                    errors.append(str(stored))
                found = peer.call(
                    "quick_search",
                    {"query": f"zq{n}x{i:03d}", "project": "conc", "limit": 3, "verbose": True},
                )
                if found.get("isError"):
                    errors.append(str(found))
                elif (
                    found["structuredContent"]["hits"][0]["content"]
                    != f"session {n} turn {i}: note zq{n}x{i:03d} about locks"
                ):
                    errors.append(f"search {n}/{i} did not find the write")
        except Exception as exc:  # reported below
            errors.append(f"peer {n}: {exc!r}")

    threads = [threading.Thread(target=work, args=(n, p)) for n, p in enumerate(peers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    try:
        assert errors == []
        stats = peers[0].call("reflection_stats", {"project": "conc"})
        assert stats["structuredContent"]["total"] == 1000
        assert len(services_for(data_dir)) == 1
    finally:
        for peer in peers:
            close(peer)


def test_sigkill_of_the_service_loses_no_acknowledged_write(tmp_path: Path, data_dir: Path) -> None:
    peer = StdioPeer(shared_env(tmp_path), tmp_path)
    acknowledged: dict[str, str] = {}
    try:
        peer.initialize()
        killed = False
        for i in range(60):
            word = f"kq{i:04d}x"
            result = peer.call(
                "store_reflection", {"content": f"fact {word} survives", "project": "kill"}
            )
            assert not result.get("isError"), result
            acknowledged[word] = result["structuredContent"]["id"]
            if i == 30 and not killed:
                pid = int(read_service(data_dir)["pid"])  # type: ignore[index]
                os.kill(pid, signal.SIGKILL)
                killed = True
        # the bridge brought a new service back; every acknowledged item is there
        new_pid = int(read_service(data_dir)["pid"])  # type: ignore[index]
        assert new_pid != pid
        for word, item_id in acknowledged.items():
            found = peer.call(
                "search", {"query": word, "project": "kill", "mode": "keyword", "limit": 1}
            )
            assert item_id.startswith(found["structuredContent"]["hits"][0]["id"]), word
    finally:
        close(peer)


def test_kill_during_concurrent_writes_keeps_every_acknowledged_item(
    tmp_path: Path, data_dir: Path
) -> None:
    env = shared_env(tmp_path)
    writer = StdioPeer(env, tmp_path)
    writer.initialize()
    acknowledged: list[str] = []
    for i in range(40):
        writer.request(
            "tools/call",
            {
                "name": "store_conversation",
                "arguments": {"content": f"burst item wq{i:03d}y", "project": "burst"},
            },
        )
    info = None
    while len(acknowledged) < 10:
        message = writer.read_message()
        if "result" in message and not message["result"].get("isError"):
            acknowledged.append(message["result"]["structuredContent"]["id"])
    info = read_service(data_dir)
    assert info is not None
    os.kill(int(info["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 120
    answered = len(acknowledged)
    while answered < 40 and time.monotonic() < deadline:
        message = writer.read_message()
        if "id" in message:
            answered += 1
            if "result" in message and not message["result"].get("isError"):
                acknowledged.append(message["result"]["structuredContent"]["id"])
    try:
        listed = writer.call(
            "search",
            {
                "query": "burst item",
                "project": "burst",
                "mode": "keyword",
                "limit": 100,
                "fields": ["id"],
            },
        )
        ids = {h["id"] for h in listed["structuredContent"]["hits"]}
        assert set(acknowledged) <= ids
    finally:
        close(writer)


def test_two_bridges_starting_at_once_share_one_service(tmp_path: Path, data_dir: Path) -> None:
    env = shared_env(tmp_path)
    peers = [StdioPeer(env, tmp_path), StdioPeer(env, tmp_path)]
    try:
        results: list[object] = []
        threads = [
            threading.Thread(
                target=lambda p=p: results.append(p.initialize() and p.call("reflection_stats", {}))
            )
            for p in peers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(results) == 2
        assert len(services_for(data_dir)) == 1
    finally:
        for peer in peers:
            close(peer)


def test_different_data_dirs_never_share(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    peers = [
        StdioPeer(shared_env(tmp_path, SESSION_BUDDY_DATA_DIR=str(first)), tmp_path),
        StdioPeer(shared_env(tmp_path, SESSION_BUDDY_DATA_DIR=str(second)), tmp_path),
    ]
    try:
        for peer in peers:
            peer.initialize()
            peer.call("store_reflection", {"content": f"only in {peer.proc.pid}", "project": "x"})
        a, b = read_service(first), read_service(second)
        assert a and b and a["pid"] != b["pid"] and a["port"] != b["port"]
        stats = peers[0].call("reflection_stats", {"project": "x"})
        assert stats["structuredContent"]["total"] == 1
    finally:
        for peer in peers:
            close(peer)
        stop_service(first)
        stop_service(second)


def test_idle_service_exits_and_stale_discovery_is_recovered(
    tmp_path: Path, data_dir: Path
) -> None:
    env = shared_env(tmp_path, SESSION_BUDDY_SERVER__IDLE_TIMEOUT_S="2")
    peer = StdioPeer(env, tmp_path)
    try:
        peer.initialize()
        peer.call("store_reflection", {"content": "before idle exit", "project": "idle"})
        pid = int(read_service(data_dir)["pid"])  # type: ignore[index]
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(pid), "idle service did not exit"
        assert read_service(data_dir) is None  # it removed its discovery file
        assert not (data_dir / "memory.duckdb.wal").exists()  # and closed the database cleanly
        # a stale discovery file (dead pid, closed port) does not get in the way
        (data_dir / "service.json").write_text(
            json.dumps({"pid": pid, "host": "127.0.0.1", "port": 9})
        )
        found = peer.call("search", {"query": "before idle exit", "project": "idle"})
        assert found["structuredContent"]["hits"][0]["snippet"] == "before idle exit"
        assert int(read_service(data_dir)["pid"]) != pid  # type: ignore[index]
    finally:
        close(peer)


def _service_url(tmp_path: Path, data_dir: Path, **extra: str) -> str:
    peer = StdioPeer(shared_env(tmp_path, **extra), tmp_path)
    peer.initialize()
    peer.call("reflection_stats", {})
    close(peer)
    info = read_service(data_dir)
    assert info is not None
    return str(info["url"])


def _rpc(name: str, arguments: dict[str, object]) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def _message(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    """The JSON-RPC answer in a JSON or SSE response."""
    assert response.status_code == 200, response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])  # type: ignore[no-any-return]
    return response.json()  # type: ignore[no-any-return]


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_minted_tokens_are_what_pyjwt_makes_and_checks() -> None:
    """mint_token is the standard library's HS256 (no PyJWT import in the front): PyJWT
    verifies it, with the claims PyJWT would have written, and refuses it with another
    secret or once expired."""
    import jwt

    from session_buddy.errors import AuthError
    from session_buddy.server.auth import ALGORITHM, AUDIENCE, verify_token

    secret = b"s" * 48
    token = mint_token(secret, "dana", ttl_s=120)
    claims = verify_token(secret, token)
    assert claims["sub"] == "dana" and claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 120 and claims["iat"] - claims["nbf"] == 5
    assert jwt.get_unverified_header(token) == {"alg": ALGORITHM, "typ": "JWT"}
    same = jwt.encode(claims, secret, algorithm=ALGORITHM)
    assert jwt.decode(same, secret, algorithms=[ALGORITHM], audience=AUDIENCE) == claims
    assert token.split(".")[1] == same.split(".")[1]  # the same claims, byte for byte
    with pytest.raises(AuthError):
        verify_token(b"t" * 48, token)
    with pytest.raises(AuthError):
        verify_token(secret, mint_token(secret, "dana", ttl_s=-30))


def test_auth_on_the_real_service(tmp_path: Path, data_dir: Path) -> None:
    url = _service_url(tmp_path, data_dir)
    secret = load_secret(data_dir, create=False)
    store = _rpc("store_reflection", {"content": "written with a token", "project": "auth"})
    bad = [
        None,  # no token
        "not-a-jwt",  # malformed
        mint_token(b"x" * 48, "mallory"),  # wrong signature
        mint_token(secret, "me", ttl_s=-30),  # expired
    ]
    for token in bad:
        headers = dict(HEADERS)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = httpx.post(url, json=store, headers=headers, timeout=30)
        assert response.status_code == 401, (token, response.text)
        assert "error" in response.json()
    good = dict(HEADERS, Authorization=f"Bearer {mint_token(secret, 'me')}")
    count = _rpc("reflection_stats", {"project": "auth"})
    stats = _message(httpx.post(url, json=count, headers=good, timeout=30))
    assert stats["result"]["structuredContent"]["total"] == 0  # rejected calls touched nothing
    stored = _message(httpx.post(url, json=store, headers=good, timeout=30))
    assert not stored["result"].get("isError"), stored
    stats = _message(httpx.post(url, json=count, headers=good, timeout=30))
    assert stats["result"]["structuredContent"]["total"] == 1


def test_request_size_limit(tmp_path: Path, data_dir: Path) -> None:
    url = _service_url(tmp_path, data_dir, SESSION_BUDDY_SERVER__MAX_REQUEST_BYTES="4096")
    secret = load_secret(data_dir, create=False)
    headers = dict(HEADERS, Authorization=f"Bearer {mint_token(secret, 'me')}")
    big = _rpc("store_reflection", {"content": "x" * 10_000})
    response = httpx.post(url, json=big, headers=headers, timeout=30)
    assert response.status_code == 413


def test_searches_answer_during_a_write_burst(tmp_path: Path, data_dir: Path) -> None:
    env = shared_env(tmp_path)
    writer, reader = StdioPeer(env, tmp_path), StdioPeer(env, tmp_path)
    try:
        writer.initialize()
        reader.initialize()
        reader.call(
            "store_reflection",
            {"content": "the cache key includes the tenant id", "project": "load"},
        )
        items = [
            {"content": f"bulk import line {i} with some words", "project": "load"}
            for i in range(400)
        ]
        for start in range(0, 400, 100):
            writer.request(
                "tools/call",
                {"name": "store_conversations", "arguments": {"items": items[start : start + 100]}},
            )
        answered = 0
        for _ in range(10):
            found = reader.call(
                "quick_search", {"query": "tenant cache key", "project": "load", "verbose": True}
            )
            assert not found.get("isError"), found
            assert (
                found["structuredContent"]["hits"][0]["content"]
                == "the cache key includes the tenant id"
            )
            answered += 1
        assert answered == 10
        for _ in range(4):
            message = writer.read_message(timeout=300)
            assert "result" in message and not message["result"].get("isError"), message
    finally:
        close(writer)
        close(reader)
