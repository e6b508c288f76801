"""The current session belongs to the calling client: two bridges on one shared service, each
in its own project, never act on the other's session or repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from session_buddy.server.auth import load_secret, mint_token
from session_buddy.server.discovery import read_service
from tests.mcp_peers import StdioPeer, stop_service
from tests.test_project import commit_all, git, make_repo
from tests.test_service import HEADERS, _message, _rpc, close, data_dir, services_for, shared_env

__all__ = ["data_dir"]  # the fixture, shared with test_service


def project_repo(path: Path) -> Path:
    repo = make_repo(path)
    (repo / "app.py").write_text("VALUE = 1\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "notes.md").write_text("notes\n")
    commit_all(repo, "initial")
    return repo


def ok(peer: StdioPeer, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    result = peer.call(tool, arguments or {})
    assert not result.get("isError"), result
    data = result["structuredContent"]
    assert isinstance(data, dict)
    return data


def test_two_bridges_in_two_projects_keep_their_own_sessions(
    tmp_path: Path, data_dir: Path
) -> None:
    repo_a = project_repo(tmp_path / "alpha-repo")
    repo_b = project_repo(tmp_path / "beta-repo")
    env = shared_env(tmp_path)
    env.pop("CLAUDE_PROJECT_DIR", None)
    # A runs in its repository; B in a subfolder of its own, with CLAUDE_PROJECT_DIR set (as
    # Claude Code sets it): "this project" is where each client works, never the service's
    a = StdioPeer(env, repo_a)
    b = StdioPeer(dict(env, CLAUDE_PROJECT_DIR=str(repo_b)), repo_b / "sub")
    try:
        a.initialize()
        b.initialize()
        brief_a = ok(a, "start")
        brief_b = ok(b, "start")
        assert len(services_for(data_dir)) == 1  # one service serves both
        sid_a, sid_b = brief_a["session"]["id"], brief_b["session"]["id"]
        assert brief_a["session"]["project"] == "alpha-repo"
        assert brief_a["project"]["path"] == str(repo_a)
        assert brief_b["session"]["project"] == "beta-repo"
        assert brief_b["project"]["path"] == str(repo_b)

        # each stores a reflection without naming a project: filed under its own
        ok(a, "store_reflection", {"content": "alpha: the parser needs a lookahead"})
        ok(b, "store_reflection", {"content": "beta: retries need jitter"})
        assert ok(a, "reflection_stats", {"project": "alpha-repo"})["total"] == 1
        assert ok(a, "reflection_stats", {"project": "beta-repo"})["total"] == 1

        assert ok(a, "status")["session"]["id"] == sid_a
        assert ok(b, "status")["session"]["id"] == sid_b

        # B has an uncommitted edit; A's checkpoint commits only A's repository
        (repo_a / "app.py").write_text("VALUE = 2\n")
        (repo_b / "app.py").write_text("VALUE = 'B, not committed'\n")
        head_b = git(repo_b, "rev-parse", "HEAD")
        checked = ok(a, "checkpoint", {"git_commit": True})
        assert checked["session_id"] == sid_a and checked["project"] == "alpha-repo"
        assert checked["git_commit"]["committed"] is True
        assert git(repo_a, "log", "-1", "--format=%s").startswith("checkpoint: alpha-repo")
        assert git(repo_a, "status", "--porcelain") == ""
        assert git(repo_b, "rev-parse", "HEAD") == head_b
        assert git(repo_b, "status", "--porcelain") == "M app.py"

        # A's end ends A's session only, and writes its handoff into A's repository
        ended = ok(a, "end")
        assert ended["session_id"] == sid_a
        assert Path(ended["handoff_path"]).parent == repo_a / ".claude" / "handoff"
        assert not (repo_b / ".claude").exists()
        status_b = ok(b, "status")["session"]
        assert status_b["id"] == sid_b and status_b["status"] == "active"
        assert ok(a, "status")["session"] is None  # A has no session now; B's is not A's

        ended_b = ok(b, "end")
        assert ended_b["session_id"] == sid_b
        assert Path(ended_b["handoff_path"]).parent == repo_b / ".claude" / "handoff"
        assert git(repo_b, "rev-parse", "HEAD") == head_b  # nothing committed in B
    finally:
        close(a)
        close(b)


def test_a_bridge_keeps_its_session_across_a_service_restart(
    tmp_path: Path, data_dir: Path
) -> None:
    """The current sessions live in the service's memory; after it restarts, the bridge
    (same client id) still finds its own session, and `start` resumes it."""
    repo = project_repo(tmp_path / "delta-repo")
    env = shared_env(tmp_path)
    env.pop("CLAUDE_PROJECT_DIR", None)
    peer = StdioPeer(env, repo)
    try:
        peer.initialize()
        sid = ok(peer, "start")["session"]["id"]
        stop_service(data_dir)
        assert ok(peer, "status")["session"]["id"] == sid  # the service came back
        again = ok(peer, "start")
        assert again["session"]["id"] == sid and again["how"] == "resumed"
    finally:
        close(peer)


def test_a_direct_http_client_names_its_folder(tmp_path: Path, data_dir: Path) -> None:
    """Without the bridge's headers the client is its token's user, and it says where it
    works with working_directory; the service's own folder is never "this project"."""
    repo = project_repo(tmp_path / "gamma-repo")
    peer = StdioPeer(shared_env(tmp_path), tmp_path)
    peer.initialize()
    ok(peer, "reflection_stats")
    info = read_service(data_dir)
    assert info is not None
    url = str(info["url"])
    token = mint_token(load_secret(data_dir, create=False), "dana")
    headers = dict(HEADERS, Authorization=f"Bearer {token}")

    def call(name: str, arguments: dict[str, object]) -> dict[str, Any]:
        answer = _message(httpx.post(url, json=_rpc(name, arguments), headers=headers, timeout=60))
        result: dict[str, Any] = answer["result"]
        return result

    try:
        refused = call("start", {})
        assert refused.get("isError") and "working_directory" in refused["content"][0]["text"]
        started = call("start", {"working_directory": str(repo)})["structuredContent"]
        assert started["session"]["project"] == "gamma-repo"
        # the same user's next call without a session id finds that session
        checked = call("checkpoint", {})["structuredContent"]
        assert checked["session_id"] == started["session"]["id"]
        # the bridge (another client, same data dir) does not see it as its own
        assert ok(peer, "status")["session"] is None
    finally:
        close(peer)


def test_client_headers_travel_as_ascii_and_come_back() -> None:
    from session_buddy.core.sessions.current import (
        CLIENT_HEADER,
        CWD_HEADER,
        ClientContext,
        client_from_headers,
        client_headers,
    )

    sent = client_headers("3f2a9c", "/home/zoë/my project", "/home/zoë")
    assert all(v.isascii() for v in sent.values())
    got = client_from_headers(sent, "zoe")
    assert got == ClientContext("client:zoe:3f2a9c", "/home/zoë/my project", "/home/zoë")
    assert got.directory == "/home/zoë"  # CLAUDE_PROJECT_DIR first
    # client ids are per user: the same id under another token is another client
    assert client_from_headers(sent, "mallory").key == "client:mallory:3f2a9c"
    # a bad id or a relative / NUL / oversized folder is ignored, never trusted
    bad = {CLIENT_HEADER: "../x y", CWD_HEADER: "relative/dir"}
    assert client_from_headers(bad, None) == ClientContext("user:anonymous")
    assert client_from_headers({CWD_HEADER: "/a%00b"}, "u").working_directory is None
    assert client_from_headers({CWD_HEADER: "/" + "a" * 5000}, "u").working_directory is None


def test_the_hook_and_bridge_paths_stay_light() -> None:
    """The hook and the bridge import the spool format and the client headers from
    core/sessions without the session service and its dependencies."""
    import subprocess
    import sys

    code = (
        "import sys, session_buddy.cli.hooks, session_buddy.server.bridge;"
        "heavy = [m for m in ('numpy', 'duckdb', 'fastmcp', 'pydantic',"
        " 'session_buddy.core.sessions.service') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
