"""The session lifecycle and session records, end to end through the MCP client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from session_buddy import di
from session_buddy.core.sessions import spool_files as hooks_core
from tests.test_project import commit_all, git, make_repo


@pytest.fixture(autouse=True)
def _reset_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    yield
    di.reset()


def settings_for(tmp_path: Path, storage: str = "memory") -> Any:
    from session_buddy.settings import load_settings

    return load_settings(
        mode="lite",
        data_dir=tmp_path / "data",
        adapters={"embeddings": "none", "storage": storage},
    ).settings


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "parser-app")
    (repo / "pyproject.toml").write_text('[project]\nname = "parser"\n[tool.ruff]\n')
    (repo / "parser.py").write_text("def parse(s):\n    return s\n")
    (repo / "README.md").write_text("# parser\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_parser.py").write_text("def test_parse():\n    assert True\n")
    commit_all(repo, "initial")
    return repo


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client[Any]]:
    from session_buddy.server.app import create_server

    async with Client(create_server(settings_for(tmp_path))) as c:
        yield c


async def call(client: Client[Any], tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data = result.structured_content
    assert isinstance(data, dict)
    return data


async def test_end_to_end_lifecycle(client: Client[Any], repo: Path) -> None:
    brief = await call(client, "start", working_directory=str(repo))
    session_id = brief["session"]["id"]
    assert brief["session"]["project"] == "parser"  # pyproject.toml names it
    assert brief["project"]["name"] == "parser" and brief["project"]["aliases"] == ["parser-app"]
    assert brief["project"]["package_manager"] == "pip"
    assert brief["project"]["git"]["branch"] == "main"
    assert brief["handoff"] is None and brief["last_quality"] is None
    assert not (repo / ".claude").exists()  # start writes nothing in the project
    assert git(repo, "status", "--porcelain") == ""

    await call(
        client,
        "add_message",
        session_id=session_id,
        role="user",
        content="The tokenizer drops the last token; please fix it.",
    )
    await call(
        client,
        "add_message",
        session_id=session_id,
        role="assistant",
        content="Fixed the off-by-one in the tokenizer loop.\nDecision: keep the hand-written tokenizer instead of regex.\nNext: add a test for empty input",
    )
    stored = await call(
        client,
        "store_reflection",
        content="Tokenizer loops must include the end index (off-by-one fixed in parse).",
        tags=["tokenizer"],
    )
    await call(
        client,
        "store_reflection",
        content="TODO: unicode identifiers are not supported by the tokenizer yet",
        tags=["problem"],
    )

    first = await call(client, "checkpoint", name="after fix", detail=True)
    assert 0 <= first["score"] <= 100 and first["delta"] is None
    keys = {c["key"] for c in first["breakdown"]}
    assert {"tests", "lint", "uncommitted", "reflections", "checkpoint_age"} <= keys
    for c in first["breakdown"]:
        assert c["evidence"] and c["recommendation"]
    assert "test_result" in first["unknown"]  # no recorded run: unknown, not full marks
    assert next(c for c in first["breakdown"] if c["key"] == "conversation")["points"] == 5

    (repo / "parser.py").write_text("def parse(s):\n    return s.strip()\n")
    (repo / "scratch.txt").write_text("untracked notes\n")
    second = await call(client, "checkpoint", git_commit=True)
    assert second["previous_score"] == first["score"]
    assert second["delta"] == second["score"] - first["score"]
    assert second["git_commit"]["committed"] is True
    assert (
        git(repo, "log", "-1", "--format=%s")
        == f"checkpoint: parser (quality: {second['score']}/100)"
    )
    assert "scratch.txt" not in git(repo, "ls-files")

    status = await call(client, "status")
    assert status["session"]["id"] == session_id
    assert status["counts"]["messages"] == 2 and status["counts"]["checkpoints"] == 2
    assert status["last_score"]["score"] == second["score"]
    assert "health" in status

    ended = await call(client, "end")
    assert ended["status"] == "ended"
    path = Path(ended["handoff_path"])
    assert path.is_file() and path.parent == repo / ".claude" / "handoff"
    text = path.read_text()
    assert "# Session handoff: parser" in text
    assert "The tokenizer drops the last token" in text  # what was done
    assert "keep the hand-written tokenizer" in text  # decisions
    assert "unicode identifiers" in text  # open problems
    assert "add a test for empty input" in text  # next steps
    assert stored["id"] in text  # link to the stored reflection
    assert "| Tests present |" in text  # quality breakdown
    assert "checkpoint: parser" in text  # the commit made during the session

    by_project = await client.read_resource("session-buddy://handoff/parser/latest")
    assert by_project[0].text == text  # type: ignore[union-attr]
    by_session = await client.read_resource(f"session-buddy://sessions/{session_id}/handoff")
    assert by_session[0].text == text  # type: ignore[union-attr]

    again = await call(client, "end", session_id=session_id)
    assert again["already_ended"] is True

    brief2 = await call(client, "start", working_directory=str(repo))
    assert brief2["session"]["id"] != session_id
    assert brief2["handoff"]["path"] == str(path)
    assert "add a test for empty input" in brief2["handoff"]["summary"]
    assert "The tokenizer drops the last token" in brief2["handoff"]["summary"]  # the goal
    assert brief2["last_quality"]["score"] is not None
    assert any("unicode identifiers" in r["text"] for r in brief2["reflections"])


async def test_session_records_api(client: Client[Any]) -> None:
    created = await call(
        client, "create_session", name="import job", metadata={"project": "alpha", "source": "test"}
    )
    sid = created["id"]
    assert created["project"] == "alpha" and created["status"] == "active"
    for i, role in enumerate(["user", "assistant", "system"]):
        await call(
            client,
            "add_message",
            session_id=sid,
            role=role,
            content=f"message number {i} about kangaroos",
        )
    page = await call(client, "get_messages", session_id=sid, limit=2)
    assert [m["role"] for m in page["messages"]] == ["user", "assistant"]
    rest = await call(client, "get_messages", session_id=sid, limit=2, cursor=page["next_cursor"])
    assert [m["role"] for m in rest["messages"]] == ["system"] and rest["next_cursor"] is None

    found = await call(
        client, "search", query="kangaroos", project="alpha", mode="keyword", fields=["session_id"]
    )
    assert any(h["session_id"] == sid for h in found["hits"])  # messages are searchable

    updated = await call(
        client, "update_session", session_id=sid, name="renamed", metadata={"source": None, "k": 1}
    )
    assert updated["name"] == "renamed" and updated["metadata"] == {"project": "alpha", "k": 1}
    got = await call(client, "get_session", session_id=sid)
    assert got["message_count"] == 3

    other = await call(client, "create_session", name="second")
    listed = await call(client, "list_sessions", project="alpha")
    assert [s["id"] for s in listed["sessions"]] == [sid]
    first_page = await call(client, "list_sessions", limit=1)
    assert first_page["sessions"][0]["id"] == other["id"] and first_page["next_cursor"]

    md = await call(client, "export_session", session_id=sid, format="markdown")
    assert "# Session renamed" in md["content"] and "kangaroos" in md["content"]
    js = await call(client, "export_session", session_id=sid, format="json")
    assert len(json.loads(js["content"])["messages"]) == 3

    reflection = await call(
        client, "store_reflection", content="kangaroos cannot walk backwards", project="alpha"
    )
    deleted = await call(client, "delete_session", session_id=sid)
    assert deleted["messages_deleted"] == 3
    with pytest.raises(ToolError, match="No session with id"):
        await call(client, "get_session", session_id=sid)
    still = await call(client, "search", query="kangaroos", project="alpha", mode="keyword")
    assert [h["id"] for h in still["hits"]] == [reflection["id"][:8]]  # reflections stay


async def test_clear_errors(client: Client[Any]) -> None:
    with pytest.raises(ToolError, match="No session with id 'nope'"):
        await call(client, "get_messages", session_id="nope")
    sid = (await call(client, "create_session", name="x"))["id"]
    with pytest.raises(ToolError, match=r"(?s)role.*(user|assistant)"):
        await call(client, "add_message", session_id=sid, role="robot", content="hi")
    with pytest.raises(ToolError, match="cursor"):
        await call(client, "list_sessions", cursor="garbage")
    with pytest.raises(ToolError, match="No active session"):
        await call(client, "checkpoint", session_id=None)


async def test_git_commit_refused_outside_a_repository(client: Client[Any], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    await call(client, "start", working_directory=str(plain))
    with pytest.raises(ToolError, match="not inside a git repository"):
        await call(client, "checkpoint", git_commit=True)
    ok = await call(client, "checkpoint")  # without the commit it works
    assert ok["score"] is not None


async def test_prompts_and_tool_descriptions(
    client: Client[Any], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = {p.name for p in await client.list_prompts()}
    assert {"start", "checkpoint", "end", "status"} <= prompts
    tools = {t.name: t for t in await client.list_tools()}
    names = [
        "start",
        "checkpoint",
        "end",
        "status",
        "create_session",
        "get_session",
        "update_session",
        "list_sessions",
        "delete_session",
        "add_message",
        "get_messages",
        "export_session",
    ]
    for name in names:
        assert tools[name].description, name
    monkeypatch.chdir(repo)
    started = await client.get_prompt("start", {"working_directory": str(repo)})
    assert "parser-app" in started.messages[0].content.text  # type: ignore[union-attr]
    checked = await client.get_prompt("checkpoint", {})
    assert "Quality:" in checked.messages[0].content.text  # type: ignore[union-attr]
    ending = await client.get_prompt("end", {})
    assert "next_steps" in ending.messages[0].content.text  # type: ignore[union-attr]
    templates = {t.uriTemplate for t in await client.list_resource_templates()}
    assert "session-buddy://handoff/{project}/latest" in templates


async def test_hook_events_are_applied_when_the_server_was_gone(tmp_path: Path, repo: Path) -> None:
    """SessionStart and SessionEnd spooled by hooks while no server ran: the next lifecycle call
    opens, ends and hands off that session; a new start returns its handoff."""
    from session_buddy.server.app import create_server

    data = tmp_path / "data"
    base = {
        "session_id": "claude-1",
        "cwd": str(repo),
        "transcript_path": str(tmp_path / "t.jsonl"),
    }
    hooks_core.spool_event(
        data, "SessionStart", {**base, "hook_event_name": "SessionStart", "source": "startup"}
    )
    hooks_core.spool_event(
        data, "PreCompact", {**base, "hook_event_name": "PreCompact", "trigger": "auto"}
    )
    hooks_core.spool_event(
        data, "SessionEnd", {**base, "hook_event_name": "SessionEnd", "reason": "logout"}
    )
    async with Client(create_server(settings_for(tmp_path))) as client:
        brief = await call(client, "start", working_directory=str(repo))
        assert brief["spool_events_applied"] == 3
        assert brief["handoff"] is not None
        ended = await call(client, "list_sessions", status="ended")
        assert len(ended["sessions"]) == 1
        s = ended["sessions"][0]
        assert s["claude_session_id"] == "claude-1" and s["metadata"]["end_reason"] == "logout"
        assert s["checkpoints"] == 2  # pre-compact + final
        assert brief["handoff"]["path"] == s["handoff_path"]
        assert hooks_core.pending_count(data) == 0


async def test_start_adopts_the_session_opened_by_the_hook(tmp_path: Path, repo: Path) -> None:
    from session_buddy.server.app import create_server

    data = tmp_path / "data"
    hooks_core.spool_event(
        data, "SessionStart", {"session_id": "claude-2", "cwd": str(repo), "source": "startup"}
    )
    async with Client(create_server(settings_for(tmp_path))) as client:
        brief = await call(client, "start", working_directory=str(repo))
        assert brief["how"] == "adopted" and brief["session"]["claude_session_id"] == "claude-2"
        listed = await call(client, "list_sessions")
        assert len(listed["sessions"]) == 1
        hooks_core.spool_event(
            data, "SessionEnd", {"session_id": "claude-2", "cwd": str(repo), "reason": "clear"}
        )
        status = await call(client, "status")
        assert status["spool_events_applied"] == 1
        assert status["session"] is None  # the hook ended it


async def test_records_persist_in_duckdb(tmp_path: Path, repo: Path) -> None:
    from session_buddy.server.app import create_server

    async with Client(create_server(settings_for(tmp_path, storage="duckdb"))) as client:
        brief = await call(client, "start", working_directory=str(repo))
        await call(client, "checkpoint")
        await call(client, "end")
    await di.shutdown()
    di.reset()
    async with Client(create_server(settings_for(tmp_path, storage="duckdb"))) as client:
        got = await call(client, "get_session", session_id=brief["session"]["id"])
        assert got["status"] == "ended" and got["checkpoints"] == 2
        brief2 = await call(client, "start", working_directory=str(repo))
        assert brief2["last_quality"] is not None and brief2["handoff"] is not None


async def test_end_captures_the_transcript_once_and_reports_its_insights(
    tmp_path: Path, repo: Path
) -> None:
    """`end` indexes the session's transcript once (in its final checkpoint) and reports the
    insights it held; a second capture would find nothing new and report 0."""
    from session_buddy.server.app import create_server
    from tests.claude_fixtures import filler_session, insight

    t = filler_session(3, cwd=str(repo))
    t.assistant(insight("Parsers need one token of lookahead.", "Counted once at the end."))
    transcript = t.write(tmp_path / "transcripts" / f"{t.session_id}.jsonl")
    hooks_core.spool_event(
        tmp_path / "data",
        "SessionStart",
        {"session_id": t.session_id, "cwd": str(repo), "transcript_path": str(transcript)},
    )
    async with Client(create_server(settings_for(tmp_path))) as client:
        brief = await call(client, "start", working_directory=str(repo))
        assert brief["how"] == "adopted"
        ended = await call(client, "end")
        assert ended["insights_captured"] == 1
        assert ended["final_checkpoint"]["insights_captured"] == 1
        found = await call(client, "search_insights", query="*")
        assert len(found["insights"]) == 1


async def test_a_project_has_one_identity(client: Client[Any], tmp_path: Path) -> None:
    """widget-main/ whose pyproject.toml names it widget: reflections stored under either
    name are in its brief; start shows both names; the session's project is widget."""
    repo = make_repo(tmp_path / "widget-main")
    (repo / "pyproject.toml").write_text('[project]\nname = "widget"\n')
    commit_all(repo, "initial")
    for content, project in (
        ("Widget: the cache key includes the locale.", "widget"),
        ("Stored under the folder name: retries are capped at 3.", "widget-main"),
        ("Another project's note about billing.", "billing"),
    ):
        await call(client, "store_reflection", content=content, project=project)
    brief = await call(client, "start", working_directory=str(repo))
    assert brief["project"]["name"] == "widget" and brief["project"]["aliases"] == ["widget-main"]
    assert brief["project"]["name_source"] == "pyproject.toml"
    assert brief["session"]["project"] == "widget"
    assert {r["text"] for r in brief["reflections"]} == {
        "Widget: the cache key includes the locale.",
        "Stored under the folder name: retries are capped at 3.",
    }
    prompt = await client.get_prompt("start", {"working_directory": str(repo)})
    assert "for project widget, also known as widget-main (" in prompt.messages[0].content.text  # type: ignore[union-attr]
    stored = await call(client, "store_reflection", content="Defaults to the session's project.")
    found = await call(
        client, "search", query="Defaults to the session's project", project="widget"
    )
    assert [h["id"] for h in found["hits"]][:1] == [stored["id"][:8]]  # a short id


async def test_session_buddys_own_files_do_not_cost_points(client: Client[Any], repo: Path) -> None:
    """Hook entries in the local or the shared settings file and handoffs are not the
    project's work: checkpoint scores the tree as clean; a real change still counts."""
    from session_buddy.cli import claude_settings

    shared = repo / ".claude" / "settings.json"
    shared.parent.mkdir()
    shared.write_text(json.dumps({"permissions": {"allow": ["Bash(pytest:*)"]}}, indent=2))
    commit_all(repo, "team settings")
    for path in (shared, repo / ".claude" / "settings.local.json"):  # as an older install left it
        claude_settings.apply_plan(claude_settings.plan_install(path), None)
    (repo / ".claude" / "handoff").mkdir()
    (repo / ".claude" / "handoff" / "20260101T000000Z-abc.md").write_text("# Session handoff\n")
    assert len(git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()) == 3

    await call(client, "start", working_directory=str(repo))
    clean = await call(client, "checkpoint", detail=True)
    parts = {c["key"]: c for c in clean["breakdown"]}
    assert parts["uncommitted"]["points"] == 10 and parts["untracked"]["points"] == 5
    assert "not counted" in parts["untracked"]["evidence"]
    assert ".claude/settings.json" in parts["untracked"]["evidence"]

    (repo / "parser.py").write_text("def parse(s):\n    return s.strip()\n")
    (repo / "notes.txt").write_text("mine\n")
    shared.write_text(shared.read_text().replace("pytest:*", "ruff:*"))  # a team change
    dirty = await call(client, "checkpoint", detail=True)
    parts = {c["key"]: c for c in dirty["breakdown"]}
    assert parts["uncommitted"]["evidence"].startswith("2 changed file(s)")
    assert parts["untracked"]["evidence"] == "1 untracked: notes.txt"
