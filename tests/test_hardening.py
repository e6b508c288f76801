"""Hostile and mistaken input at the server edge (issue 20): every request is answered,
the server keeps serving, files are private, logs stay bounded, limits are one set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from session_buddy.server.auth import load_secret, mint_token
from session_buddy.server.discovery import pid_alive, read_service
from tests.mcp_peers import StdioPeer, server_env, stop_service

MODES = ["shared", "standalone"]


@pytest.fixture
def data_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "data"
    yield folder
    stop_service(folder)


def _peer(tmp_path: Path, mode: str, **extra: str) -> StdioPeer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb", **extra)
    peer = StdioPeer(env, tmp_path, *(["--standalone"] if mode == "standalone" else []))
    peer.initialize()
    return peer


def _close(peer: StdioPeer) -> None:
    assert peer.proc.stdin is not None
    peer.proc.stdin.close()
    assert peer.proc.wait(timeout=60) == 0, peer.stderr_text()
    peer.finish_stdout()


def _raw(peer: StdioPeer, line: bytes) -> None:
    assert peer.proc.stdin is not None
    peer.proc.stdin.write(line + b"\n")
    peer.proc.stdin.flush()


def _still_serves(peer: StdioPeer, word: str) -> None:
    stored = peer.call("store_reflection", {"content": f"still serving {word}", "project": "h"})
    assert not stored.get("isError"), stored


def _nested(levels: int, request_id: int) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search","arguments":'
        b'{"query":"x","metadata":' % request_id + b"[" * levels + b"]" * levels + b"}}}"
    )


@pytest.mark.parametrize("mode", MODES)
def test_deeply_nested_json_is_refused_and_the_server_keeps_serving(
    tmp_path: Path, data_dir: Path, mode: str
) -> None:
    peer = _peer(tmp_path, mode)
    try:
        for levels in (10_000, 50_000):
            _raw(peer, _nested(levels, 7))
            answer = peer.read_message(timeout=30)
            assert answer["id"] is None and answer["error"]["code"] == -32600, answer
            assert "nested deeper" in answer["error"]["message"]
            _still_serves(peer, f"after {levels}")
        # a depth within the limit still goes through to the tool (which rejects the type)
        _raw(peer, _nested(20, 8))
        answer = peer.wait_for(8)
        assert "result" in answer or "error" in answer
    finally:
        _close(peer)


BAD_IDS = [{"a": 1}, [1], True, None, 1.5]


@pytest.mark.parametrize("mode", MODES)
def test_invalid_ids_get_invalid_request_with_null_id(
    tmp_path: Path, data_dir: Path, mode: str
) -> None:
    peer = _peer(tmp_path, mode)
    try:
        for bad in BAD_IDS:
            peer.send({"jsonrpc": "2.0", "id": bad, "method": "tools/list"})
            answer = peer.read_message(timeout=30)
            assert answer == {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": -32600,
                    "message": "Invalid Request: `id` must be a string or an integer",
                },
            }, (bad, answer)
        for garbage in (b"not json", b"[1,2]", b'"text"', b'{"jsonrpc":"1.0","id":3,"method":"x"}'):
            _raw(peer, garbage)
            answer = peer.read_message(timeout=30)
            assert "error" in answer and answer["error"]["code"] in (-32700, -32600), answer
        _still_serves(peer, "after bad ids")
    finally:
        _close(peer)


def test_nested_body_on_http_is_refused(tmp_path: Path, data_dir: Path) -> None:
    peer = _peer(tmp_path, "shared")
    try:
        _still_serves(peer, "http")
        info = read_service(data_dir)
        assert info is not None
        token = mint_token(load_secret(data_dir, create=False), "me")
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        }
        response = httpx.post(str(info["url"]), content=_nested(50_000, 1), headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32600
        _still_serves(peer, "after http")
    finally:
        _close(peer)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_data_dir_is_private_and_loose_modes_are_repaired(tmp_path: Path, data_dir: Path) -> None:
    peer = _peer(tmp_path, "shared")
    try:
        _still_serves(peer, "modes")
    finally:
        _close(peer)
    stop_service(data_dir)
    assert _mode(data_dir) == 0o700
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"memory.duckdb", "service.log", "auth.secret"} <= names, names
    assert {p.name: oct(_mode(p)) for p in files if _mode(p) != 0o600} == {}
    for folder in (data_dir / "logs", data_dir / "handoffs"):
        assert _mode(folder) == 0o700
    # an older version left the data readable by everyone: the next start repairs it
    data_dir.chmod(0o755)
    (data_dir / "memory.duckdb").chmod(0o644)
    (data_dir / "logs" / "service.log").chmod(0o644)
    peer = _peer(tmp_path, "shared")
    try:
        _still_serves(peer, "after repair")
        info = read_service(data_dir)
        assert info is not None
        assert _mode(data_dir / "service.json") == 0o600
    finally:
        _close(peer)
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "memory.duckdb") == 0o600
    log = (data_dir / "logs" / "service.log").read_text(encoding="utf-8")
    assert "private data:" in log and "memory.duckdb was mode 0644, now 0600" in log


def test_logs_stay_bounded_and_rotate(tmp_path: Path, data_dir: Path) -> None:
    peer = _peer(tmp_path, "shared", SESSION_BUDDY_LOG_MAX_BYTES="8192")
    log = data_dir / "logs" / "service.log"
    try:
        _still_serves(peer, "logs")
        before = sum(p.stat().st_size for p in log.parent.iterdir())
        bogus = "b" * 1_000_000
        for _ in range(5):
            answer = peer.call("get_session", {"session_id": bogus})
            assert answer["isError"]
            text = answer["content"][0]["text"]
            assert "`session_id`: at most 256 characters" in text and len(text) < 500
        # the same mistake repeated: logged a few times, then counted
        for _ in range(30):
            peer.call("get_session", {"session_id": "no-such-session", "no_such_argument": 1})
        for n in range(60):  # distinct warnings fill the file: it rotates
            peer.call("get_session", {"session_id": "x", f"unknown_{n}_{'k' * 150}": 1})
        _still_serves(peer, "after the noise")
    finally:
        _close(peer)
    stop_service(data_dir)
    files = sorted(p.name for p in log.parent.iterdir())
    assert "service.log.1" in files, files
    total = sum(p.stat().st_size for p in log.parent.iterdir())
    assert total - before < 4 * 8192 + 8192, files
    assert all(_mode(p) == 0o600 for p in log.parent.iterdir())
    text = "".join(p.read_text(encoding="utf-8") for p in log.parent.iterdir())
    assert text.count("no-such-session") <= 6


def _service_pid(data_dir: Path) -> int:
    info = read_service(data_dir)
    assert info is not None
    return int(info["pid"])


PROBE_FAST = {
    "SESSION_BUDDY_SERVER__PROBE_AFTER_S": "1",
    "SESSION_BUDDY_SERVER__PROBE_TIMEOUT_S": "1",
}


def test_a_stopped_service_is_detected_and_restarted(tmp_path: Path, data_dir: Path) -> None:
    peer = _peer(tmp_path, "shared", **PROBE_FAST)
    stopped: int | None = None
    try:
        _still_serves(peer, "before the stop")
        stopped = _service_pid(data_dir)
        os.kill(stopped, signal.SIGSTOP)
        start = time.monotonic()
        rid = peer.request("tools/call", {"name": "reflection_stats", "arguments": {}})
        answer = peer.wait_for(rid, timeout=30)
        assert time.monotonic() - start < 15
        assert "does not answer" in answer["error"]["message"], answer
        assert "next request starts a new one" in answer["error"]["message"]
        assert not pid_alive(stopped)
        _still_serves(peer, "after the restart")
        assert _service_pid(data_dir) != stopped
        # a bridge that starts while the service is stopped gets a new one at once
        stopped = _service_pid(data_dir)
        os.kill(stopped, signal.SIGSTOP)
        newcomer = _peer(tmp_path, "shared", **PROBE_FAST)
        try:
            start = time.monotonic()
            stats = newcomer.call("reflection_stats", {"project": "h"})
            assert stats["structuredContent"]["total"] == 2  # nothing acknowledged was lost
            assert time.monotonic() - start < 20
        finally:
            _close(newcomer)
        assert not pid_alive(stopped)
    finally:
        if stopped is not None and pid_alive(stopped):
            os.kill(stopped, signal.SIGCONT)
        _close(peer)


_FAKE_SERVICE = """
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if b"probe" not in body or sys.argv[1] == "hung":
            time.sleep(600)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.mark.parametrize("kind", ["slow", "hung"])
def test_calls_are_bounded_and_a_foreign_hung_service_is_reported(
    tmp_path: Path, data_dir: Path, kind: str
) -> None:
    """A listener that is not a session-buddy process: answers probes but never calls
    (slow), or nothing at all (hung). Never killed: it is not ours."""
    fake = subprocess.Popen(
        [sys.executable, "-c", _FAKE_SERVICE, kind], stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout is not None
        port = int(fake.stdout.readline())
        data_dir.mkdir(parents=True)
        load_secret(data_dir)  # created as a real service would
        info = {"pid": fake.pid, "host": "127.0.0.1", "port": port, "auth": True}
        (data_dir / "service.json").write_text(json.dumps(info))
        peer = _peer(tmp_path, "shared", SESSION_BUDDY_SERVER__CALL_TIMEOUT_S="3", **PROBE_FAST)
        try:
            start = time.monotonic()
            rid = peer.request("tools/call", {"name": "reflection_stats", "arguments": {}})
            message = peer.wait_for(rid, timeout=30)["error"]["message"]
            assert time.monotonic() - start < 15
            if kind == "slow":
                assert "within 3 s (server.call_timeout_s)" in message, message
            else:
                assert "does not answer" in message and "not ours to restart" in message
            assert fake.poll() is None
        finally:
            _close(peer)
    finally:
        fake.kill()
        fake.wait()


def _error_text(result: dict) -> str:  # type: ignore[type-arg]
    assert result.get("isError"), result
    return str(result["content"][0]["text"])


@pytest.mark.parametrize("mode", MODES)
def test_client_mistakes_are_validation_errors_naming_the_argument(
    tmp_path: Path, data_dir: Path, mode: str
) -> None:
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x", encoding="utf-8")
    peer = _peer(tmp_path, mode)
    try:
        _still_serves(peer, "warm")  # the service is up and the model loaded
        cases = [
            ("start", {"working_directory": str(tmp_path / "nul\x00")}, "`working_directory`"),
            ("start", {"working_directory": str(tmp_path / ("n" * 300))}, "`working_directory`"),
            ("start", {"working_directory": "/" + "d/" * 2100}, "`working_directory`"),
            ("start", {"working_directory": "~nosuchuser/x"}, "`working_directory`"),
            ("start", {"working_directory": "\ud800"}, "`working_directory`"),
            ("index_transcripts", {"path": str(tmp_path / "x\x00.jsonl")}, "`path`"),
            ("search", {"query": "lone \ud800 surrogate"}, "`query`"),
            ("get_session", {"session_id": "\udfff"}, "`session_id`"),
            ("create_team", {"name": "team\ud800"}, "`name`"),
            ("store_reflection", {"content": "ok", "tags": ["t" * 300]}, "`tags`[0]"),
            ("create_project_group", {"name": "g", "projects": ["p"] * 20_000}, "`projects`"),
            ("store_conversations", {"items": [{"content": "x"}] * 5001}, "`items`"),
        ]
        for tool, arguments, named in cases:
            start = time.monotonic()
            text = _error_text(peer.call(tool, arguments))
            assert named in text and "[invalid_argument]" in text, (tool, text)
            assert "Traceback" not in text and "storage_error" not in text, text
            assert time.monotonic() - start < 10, tool
        # 5,000 bad items: one validation error each, but the answer stays bounded
        text = _error_text(peer.call("store_conversations", {"items": [{"content": 1}] * 5000}))
        assert "items.0.content" in text and len(text) < 4200 and "more characters" in text
        for uri in (
            "session-buddy://handoff/../latest",
            "session-buddy://handoff/..%2F..%2Fetc/latest",
        ):
            answer = peer.wait_for(peer.request("resources/read", {"uri": uri}))
            assert "error" in answer, answer
            assert "Traceback" not in json.dumps(answer)
        _still_serves(peer, "after the mistakes")
    finally:
        _close(peer)
    if mode == "shared":
        stop_service(data_dir)
        log = (data_dir / "logs" / "service.log").read_text(encoding="utf-8")
        assert "Traceback" not in log


def test_one_request_limit_on_every_transport(tmp_path: Path, data_dir: Path) -> None:
    """Beyond the SDK's 4 MiB, up to server.max_request_bytes, the same through the bridge
    and standalone; UTF-8 is forwarded as sent (not 6-byte escapes); over the limit is a
    clear 'too large', never 'service unavailable'."""
    for mode in MODES:
        peer = _peer(tmp_path / mode, mode, SESSION_BUDDY_STORAGE__MAX_CONTENT_BYTES="8000000")
        try:
            big = peer.call("store_reflection", {"content": "a" * 4_500_000, "project": "big"})
            assert not big.get("isError"), str(big)[:500]
            utf8 = peer.call("store_reflection", {"content": "é" * 1_000_000, "project": "big"})
            assert not utf8.get("isError"), str(utf8)[:500]
        finally:
            _close(peer)
            stop_service(tmp_path / mode / "data")
    small = {"SESSION_BUDDY_SERVER__MAX_REQUEST_BYTES": "100000"}
    for mode in MODES:
        peer = _peer(tmp_path / f"{mode}-small", mode, **small)
        try:
            rid = peer.request(
                "tools/call", {"name": "store_reflection", "arguments": {"content": "x" * 200_000}}
            )
            answer = peer.read_message(timeout=30)
            assert answer["id"] is None or answer["id"] == rid
            message = answer["error"]["message"]
            # refused by the front, or (before it read the settings) by the service: the same
            assert "larger than" in message and "100000" in message, message
            assert "unavailable" not in message
            _still_serves(peer, "after the big one")
        finally:
            _close(peer)
            stop_service(tmp_path / f"{mode}-small" / "data")
