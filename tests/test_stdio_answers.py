"""Issue 13 over stdio through the bridge to the shared service: a project named by its
manifest keeps its folder name as an alias, and indexed transcripts bring back no tool
markers, no answers of session-buddy's own tools and no helper-agent transcripts (points 2
and 4); answers are compact and one setting bounds them all (point 3)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.claude_fixtures import project_dir
from tests.mcp_peers import StdioPeer, bridge_and_service, close_peer, server_env
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
        code = close_peer(peer, tmp_path / "data")
    assert code == 0, peer.stderr_text()


# -- issue 13 point 3: answers cost little context -------------------------------------------

LONG_TURN = (
    "Looking at the nightly job: the worker fails with duckdb.IOException: Could not set lock "
    "on file. {filler} The fix was to batch the writes of one job in a single transaction. "
)
FILLER = "The ingest service retried every write on its own connection, so they raced. " * 20


def _text(result: dict[str, Any]) -> str:
    assert not result.get("isError"), result
    return "".join(c.get("text", "") for c in result["content"])


def _stored_turns(n: int) -> list[dict[str, Any]]:
    return [
        {
            "content": LONG_TURN.format(filler=FILLER) + f"(turn {i})",
            "role": "assistant",
            "project": "widget",
            "metadata": {"transcript": f"/home/dev/.claude/projects/-w/{i:04d}.jsonl", "line": i},
        }
        for i in range(n)
    ]


def _git_repo(folder: Path) -> Path:
    repo = folder / "widget"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "widget"\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def test_compact_answers_through_the_bridge(tmp_path: Path) -> None:
    """The default answers of search, get, start and checkpoint stay within the issue's
    targets with the real model over stdio through the bridge; the long forms are asked for."""
    repo = _git_repo(tmp_path)
    with bridge_and_service(tmp_path) as (peer, _env):
        stored = peer.call("store_conversations", {"items": _stored_turns(30)})
        assert stored["structuredContent"]["stored"] == 30
        query = "duckdb could not set lock on file"
        found = peer.call("search", {"query": query})
        text, answer = _text(found), found["structuredContent"]
        assert answer["count"] == 10 and answer["confidence"] in ("high", "medium")
        assert len(text) <= 5000, len(text)  # was ~12,000 with whole contents
        for hit in answer["hits"]:
            assert len(hit["id"]) == 8 and len(hit["snippet"]) <= 250
            assert "lock on file" in hit["snippet"]
            assert not {"metadata", "content", "semantic_score"} & set(hit), hit
        # a short id gives the whole item; verbose gives every field of each hit
        whole = peer.call("get", {"id": answer["hits"][0]["id"]})["structuredContent"]
        assert whole["id"].startswith(answer["hits"][0]["id"])
        assert (
            whole["content"].startswith("Looking at the nightly job")
            and len(whole["content"]) == whole["content_length"] > 1500
        )
        assert whole["metadata"]["transcript"].endswith(".jsonl")
        verbose = peer.call("search", {"query": query, "verbose": True})["structuredContent"]
        assert len(verbose["hits"][0]["id"]) == 36 and "metadata" in verbose["hits"][0]
        assert verbose["hits"][0]["metadata"]["transcript"].endswith(".jsonl")
        assert verbose["hits"][0]["id"] == whole["id"]  # the same hit, whole id

        nothing = peer.call("search", {"query": "kubernetes helm chart rollout"})
        text, answer = _text(nothing), nothing["structuredContent"]
        assert answer["confidence"] == "none" and answer["hits"] == [], answer
        assert "Nothing relevant is stored" in answer["message"] and len(text) <= 800

        # a previous session leaves a handoff; the next start brings back its summary only
        peer.call("start", {"working_directory": str(repo)})
        peer.call(
            "end",
            {"summary": "Batched the writes.", "next_steps": ["Add a test for empty batches."]},
        )
        brief = peer.call("start", {"working_directory": str(repo)})
        text, answer = _text(brief), brief["structuredContent"]
        assert len(text) <= 4000, len(text)
        assert "Add a test for empty batches." in answer["handoff"]["summary"]
        assert answer["handoff"]["uri"].startswith("session-buddy://handoff/")
        checkpoint = peer.call("checkpoint", {})
        text, answer = _text(checkpoint), checkpoint["structuredContent"]
        assert len(text) <= 2000, len(text)
        assert 0 <= answer["score"] <= 100 and "delta" in answer
        assert len(answer["recommendations"]) <= 3 and "breakdown" not in answer
        detail = peer.call("checkpoint", {"detail": True})["structuredContent"]
        assert {c["key"] for c in detail["breakdown"]} >= {"tests", "uncommitted"}


def test_one_setting_bounds_every_answer_and_says_what_was_cut(tmp_path: Path) -> None:
    """responses.max_chars bounds any answer, here a verbose search of 20 long hits: the
    list is cut from its end and the answer says how much was left out."""
    with bridge_and_service(
        tmp_path,
        SESSION_BUDDY_ADAPTERS__EMBEDDINGS="none",
        SESSION_BUDDY_RESPONSES__MAX_CHARS="3000",
    ) as (peer, _env):
        peer.call("store_conversations", {"items": _stored_turns(25)})
        found = peer.call(
            "search", {"query": "lock on file", "limit": 20, "verbose": True, "mode": "keyword"}
        )
        text, answer = _text(found), found["structuredContent"]
        assert len(text) <= 3000, len(text)
        kept = len(answer["hits"])
        assert 0 < kept < 20
        assert answer["cut"].startswith(f"{20 - kept} of 20 hits left out"), answer["cut"]
        assert "responses.max_chars=3000" in answer["cut"]
        # one item longer than the bound: its content is cut, the rest is asked with offset
        long = peer.call("store_reflection", {"content": FILLER * 3, "project": "widget"})
        item = long["structuredContent"]["id"]
        whole = peer.call("get", {"id": item})
        got = whole["structuredContent"]
        assert len(_text(whole)) <= 3000 and "content" in got["cut"]
        rest = peer.call("get", {"id": item[:8], "offset": 1000})["structuredContent"]
        assert rest["offset"] == 1000 and rest["content_length"] == got["content_length"]
        # compact hits of such items are short: 5 need no cut at all
        compact = peer.call("search", {"query": "lock on file", "mode": "keyword", "limit": 5})
        assert "cut" not in compact["structuredContent"] and len(_text(compact)) <= 3000


def test_own_files_and_the_callers_project_through_the_bridge(tmp_path: Path) -> None:
    """Issue 13 over stdio through the bridge: session-buddy's own entries in
    .claude/settings.local.json and its handoffs cost no checkpoint points, and
    search_across_projects without a project searches the caller's (its folder, named by
    its manifest, with what was stored under the folder's name)."""
    from session_buddy.cli import claude_settings
    from tests.test_project import commit_all, make_repo

    repo = make_repo(tmp_path / "widget-main")
    (repo / "pyproject.toml").write_text('[project]\nname = "widget"\n')
    commit_all(repo, "init")
    claude_settings.apply_plan(
        claude_settings.plan_install(repo / ".claude" / "settings.local.json"), None
    )
    (repo / ".claude" / "handoff").mkdir()
    (repo / ".claude" / "handoff" / "20260101T000000Z-abc.md").write_text("# Session handoff\n")
    env = server_env(tmp_path, SESSION_BUDDY_ADAPTERS__EMBEDDINGS="none")
    env.pop("CLAUDE_PROJECT_DIR", None)
    peer = StdioPeer(env, repo)  # the client works in the repository
    try:
        peer.initialize()
        for content, project in (
            ("The widget cache key includes the locale.", "widget-main"),
            ("The billing cache is flushed nightly.", "billing"),
        ):
            assert not peer.call("store_reflection", {"content": content, "project": project}).get(
                "isError"
            )
        found = peer.call("search_across_projects", {"query": "cache key"})
        answer = found["structuredContent"]
        assert answer["project"] == "widget", answer
        assert [h["project"] for h in answer["hits"]] == ["widget"]

        assert peer.call("start", {})["structuredContent"]["project"]["name"] == "widget"
        checked = peer.call("checkpoint", {"detail": True})["structuredContent"]
        parts = {c["key"]: c for c in checked["breakdown"]}
        assert parts["uncommitted"]["points"] == 10 and parts["untracked"]["points"] == 5, parts
        assert "settings.local.json" not in parts["untracked"]["evidence"].split("not counted")[0]
    finally:
        code = close_peer(peer, tmp_path / "data")
    assert code == 0, peer.stderr_text()
