"""The handoff carries the session's work (goal, files, commits, tests, decisions, next steps)
and is written only where a project is; through real MCP clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from session_buddy.core.handoff import notes_of, summarize_handoff
from tests.claude_fixtures import Transcript, insight, project_dir
from tests.mcp_peers import bridge_and_service
from tests.test_project import commit_all, make_repo
from tests.test_session_lifecycle import call, settings_for

GOAL = "Fix the double charge in charge.py: a retried webhook charges the card twice."
DECISION = "Key each charge on the order id, so a retried webhook is idempotent"
NEXT = "add a test for the double-charge case"


@pytest.fixture(autouse=True)
def _no_project_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)


@pytest.fixture
async def lean(tmp_path: Path) -> AsyncIterator[Client[Any]]:
    """An in-memory client on a server without embeddings (these tests search nothing)."""
    from session_buddy.server.app import create_server

    async with Client(create_server(settings_for(tmp_path))) as c:
        yield c


def payments_repo(path: Path) -> Path:
    """A scratch git repository without lint configuration (the score advises one)."""
    repo = make_repo(path)
    (repo / "charge.py").write_text("def charge(order, amount):\n    return gateway(amount)\n")
    (repo / "README.md").write_text("# payments\n")
    commit_all(repo, "initial")
    return repo


def section(markdown: str, title: str) -> str:
    """The text of one ``## title`` section of a handoff."""
    head = f"\n## {title}\n"
    assert head in markdown, (title, markdown)
    rest = markdown.split(head, 1)[1]
    return rest.split("\n## ", 1)[0]


def _structured(result: dict[str, Any]) -> dict[str, Any]:
    data = result.get("structuredContent")
    if data is None:
        data = json.loads(result["content"][0]["text"])
    assert isinstance(data, dict), result
    return data


def test_the_handoff_carries_the_work_over_stdio(tmp_path: Path) -> None:
    """A session through the bridge that edits charge.py (git, and an Edit in its Claude Code
    transcript), commits, stores a decision and says what is next: the handoff has the goal,
    the files, the commit, the test run, the decision and that next step, and the project's
    lint advice only in its own section; the next start brings it back in short."""
    repo = payments_repo(tmp_path / "payments")
    home = tmp_path / "home"
    # the prompt that asked for the work, typed before the agent called start
    t = Transcript(cwd=str(repo.resolve()), start=datetime.now(UTC) - timedelta(seconds=30))
    t.user(GOAL)
    path = t.write(project_dir(home / ".claude" / "projects", str(repo.resolve())) / "s.jsonl")
    with bridge_and_service(tmp_path) as (peer, _env):
        brief = _structured(peer.call("start", {"working_directory": str(repo)}))
        assert brief["handoff"] is None
        # the work: a commit, an Edit of charge.py left uncommitted, a new test file
        (repo / "charge.py").write_text("def charge(order, amount):\n    return once(order)\n")
        commit_all(repo, "Make charge() idempotent on the order id")
        t.clock = datetime.now(UTC)
        (edit,) = t.message(
            "Now the retry path.",
            (
                "Edit",
                {"file_path": str(repo / "charge.py"), "old_string": "once", "new_string": "x"},
            ),
        )
        t.tool_result(edit, "The file charge.py has been updated.")
        (repo / "charge.py").write_text("def charge(order, amount):\n    return once(order.id)\n")
        (repo / "test_charge.py").write_text("def test_charge():\n    assert True\n")
        t.assistant(
            "I changed charge.py to charge once per order.\n\n"
            + insight("Webhooks are retried: every handler must be idempotent.")
            + f"\n\nNext: {NEXT}."
        )
        t.append_to(path, 1)
        peer.call("store_reflection", {"content": DECISION, "tags": ["decision"]})
        peer.call(
            "store_test_result",
            {
                "test_file": "test_charge.py",
                "result": "failed",
                "passed": 3,
                "failing_tests": ["test_charge.py::test_retry"],
            },
        )
        ended = _structured(peer.call("end", {}))
        handoff = Path(ended["handoff_path"])
        assert handoff.parent == repo / ".claude" / "handoff"
        text = handoff.read_text()
        assert GOAL in section(text, "Goal")
        files = section(text, "Files changed")
        assert "`charge.py` (uncommitted)" in files and "`test_charge.py` (new, untracked)" in files
        assert "Make charge() idempotent on the order id" in section(text, "What was done")
        assert "test_charge.py::test_retry" in section(text, "Tests")
        assert "Tests failing" in section(text, "Open problems")
        assert DECISION in section(text, "Decisions")
        assert "every handler must be idempotent" in section(text, "Insights")  # captured
        next_steps = section(text, "Next steps")
        assert NEXT in next_steps
        assert "ruff" not in next_steps.lower() and "configure" not in next_steps.lower()
        health = section(text, "Project health")
        assert "ruff" in health.lower()  # the lint advice is there, and only there
        assert text.index("## Project health") > text.index("## Next steps")

        second = _structured(peer.call("start", {"working_directory": str(repo)}))
        short = second["handoff"]["summary"]
        assert len(short) <= 800, short
        assert "Fix the double charge" in short and NEXT in short
        assert second["handoff"]["uri"] == "session-buddy://handoff/payments/latest"
        assert "content" not in second["handoff"]  # the whole document stays a resource
        # a system folder is refused, with the argument named
        refused = peer.wait_for(
            peer.request(
                "tools/call", {"name": "start", "arguments": {"working_directory": "/etc"}}
            )
        )
        message = json.dumps(refused)
        assert "working_directory /etc is refused" in message and "[invalid_argument]" in message


async def test_end_takes_summary_decisions_and_next_steps_in_one_call(
    lean: Client[Any], tmp_path: Path
) -> None:
    client = lean
    repo = payments_repo(tmp_path / "payments")
    brief = await call(client, "start", working_directory=str(repo))
    sid = brief["session"]["id"]
    await call(client, "add_message", session_id=sid, role="user", content=GOAL)
    await call(
        client,
        "add_message",
        session_id=sid,
        role="assistant",
        content="Done with the gateway.\n\n**Next steps:**\n1. review the refund path\n2. ship it",
    )
    with pytest.raises(ToolError, match=r"next_steps must be a list.*\[invalid_argument\]"):
        await client.call_tool("end", {"next_steps": ["x"] * 51})
    ended = await call(
        client,
        "end",
        summary="Made charge() idempotent; the retry test is still missing.",
        decisions=[DECISION],
        next_steps=[NEXT],
    )
    text = Path(ended["handoff_path"]).read_text()
    assert GOAL in section(text, "Goal")  # add_message's first user message
    assert "Made charge() idempotent" in section(text, "Summary")
    assert DECISION in section(text, "Decisions")
    steps = section(text, "Next steps").strip().splitlines()
    assert steps[0] == f"- {NEXT}"  # given first, then what the messages stated
    assert "- review the refund path" in steps and "- ship it" in steps
    brief2 = await call(client, "start", working_directory=str(repo))
    assert "Made charge() idempotent" in brief2["handoff"]["summary"]


async def test_handoffs_go_where_a_project_is(lean: Client[Any], tmp_path: Path) -> None:
    """A folder that is no project gets nothing written into it (the data dir keeps its
    handoff, and the resource finds it); a folder with .claude/ does; system folders are
    refused."""
    client = lean
    plain = tmp_path / "downloads"
    plain.mkdir()
    await call(client, "start", working_directory=str(plain))
    ended = await call(client, "end")
    path = Path(ended["handoff_path"])
    assert path.is_relative_to(tmp_path / "data" / "handoffs" / "downloads")
    assert list(plain.iterdir()) == []
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    latest = await client.read_resource("session-buddy://handoff/downloads/latest")
    assert latest[0].text == path.read_text()  # type: ignore[union-attr]

    marked = tmp_path / "notes"
    (marked / ".claude").mkdir(parents=True)
    await call(client, "start", working_directory=str(marked))
    ended = await call(client, "end")
    assert Path(ended["handoff_path"]).parent == marked / ".claude" / "handoff"

    for folder in ("/", "/usr/lib", "/proc/self", str(tmp_path / "home")):
        (tmp_path / "home").mkdir(exist_ok=True)
        with pytest.raises(
            ToolError, match=r"working_directory .* refused.*\[invalid_argument\]"
        ) as err:
            await client.call_tool("start", {"working_directory": folder})
        assert "Traceback" not in str(err.value)


def test_notes_and_the_short_form() -> None:
    said = notes_of(
        "Fixed it.\n**Decision:** keep the gateway client\n\n## Next steps\n- one\n- [ ] two\n"
        "Some prose.\nTODO: three\nFIXME: the refund path double-counts"
    )
    assert said["decisions"] == ["keep the gateway client"]
    assert said["next_steps"] == ["one", "two"] and said["todo"] == ["three"]
    assert said["open_problems"] == ["the refund path double-counts"]
    long = "x" * 5000
    markdown = (
        f"# Session handoff: p\n\n- Started: a; ended: b (3 min)\n\n## Goal\n\n{long}\n\n"
        f"## Summary\n\n{long}\n\n## Open problems\n\n- {long}\n\n## Next steps\n\n"
        + "".join(f"- step {i} {long}\n" for i in range(20))
    )
    short = summarize_handoff(markdown)
    assert len(short) <= 800 and short.count("\n") == 4
    assert "(+17 more)" in short


def test_the_short_form_cuts_at_a_word() -> None:
    """A long goal is cut at a word boundary, with an ellipsis, not in the middle of one."""
    goal = " ".join(f"word{i:03d}" for i in range(200))
    short = summarize_handoff(f"# Session handoff: p\n\n## Goal\n\n{goal}\n")
    line = next(x for x in short.splitlines() if x.startswith("Goal: "))
    kept = line.removeprefix("Goal: ").removesuffix("…")
    assert line.endswith("…") and kept.split(" ")[-1] in goal.split(" ")
