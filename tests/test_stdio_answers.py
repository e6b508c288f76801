"""Issue 13, points 2 and 4 over stdio through the bridge to the shared service: a project
named by its manifest keeps its folder name as an alias, and indexed transcripts bring back
no tool markers, no answers of session-buddy's own tools and no helper-agent transcripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.claude_fixtures import project_dir
from tests.mcp_peers import StdioPeer, server_env, stop_service
from tests.test_transcripts import tool_heavy_session


def test_identity_and_no_noise_through_the_bridge(tmp_path: Path) -> None:
    repo = tmp_path / "widget-main"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "package.json").write_text('{"name": "@acme/widget", "version": "1.0.0"}\n')
    projects = tmp_path / "home" / ".claude" / "projects"
    t, path = tool_heavy_session(projects)
    assert path.parent == project_dir(projects, t.cwd)
    # keyword search only: the ONNX model is not what this test is about
    peer = StdioPeer(server_env(tmp_path, SESSION_BUDDY_ADAPTERS__EMBEDDINGS="none"), tmp_path)
    try:
        peer.initialize()
        for content, project in (
            ("Widget releases are tagged vX.Y.Z and built by CI.", "widget"),
            ("Under the folder's name: widget releases need a changelog entry.", "widget-main"),
        ):
            stored = peer.call("store_reflection", {"content": content, "project": project})
            assert not stored.get("isError"), stored
        brief = peer.call("start", {"working_directory": str(repo)})["structuredContent"]
        assert brief["project"]["name"] == "widget"
        assert brief["project"]["aliases"] == ["widget-main"]
        assert len(brief["reflections"]) == 2

        report = peer.call("index_transcripts", {"path": str(projects)})["structuredContent"]
        assert report["files"] == 1 and report["stored"] == 5
        for query in ("tool_use mcp__session-buddy__checkpoint", "tool_result", "Your task is"):
            found = peer.call(
                "search", {"query": query, "mode": "keyword", "limit": 50, "verbose": True}
            )
            for hit in found["structuredContent"]["hits"]:
                assert not hit["content"].startswith("[tool_use"), hit
                assert hit["content"] != "[tool_result Edit] ", hit
                assert "Your task is to" not in hit["content"], hit
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        code = peer.proc.wait(timeout=60)
        stop_service(tmp_path / "data")
    assert code == 0, peer.stderr_text()
