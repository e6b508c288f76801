"""session-buddy as Claude Code uses it: the real CLI (``claude -p``) from npm, a scripted
stand-in for the Messages API on loopback, a temp HOME and a real git project.

These tests are slow (each session starts the CLI, the bridge and the shared service): they
are marked ``claude_cli`` and ``slow``, run by ``./run test`` (and so CI), and skipped locally
with ``./run test -m "not slow"``. They skip with a clear reason only where npm itself is
unavailable (under CI with npm present, a missing CLI fails).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.claude_cli import ClaudeHarness, make_harness
from tests.messages_standin import last_tool_results, request_text, text, tool_use

pytestmark = [pytest.mark.claude_cli, pytest.mark.slow]

INSIGHT = (
    "`★ Insight ─────────────────────────────────────`\n"
    "- A double charge happens when the payment webhook is retried: make charge() idempotent "
    "by keying it on the order id.\n"
    "`─────────────────────────────────────────────────`"
)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ClaudeHarness]:
    h = make_harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


def load(*names: str) -> Any:
    """A model's first move: load deferred MCP tools through Claude Code's ToolSearch."""
    return [tool_use("ToolSearch", query="select:" + ",".join(names), max_results=len(names))]


def tools_offered(request: dict[str, Any]) -> set[str]:
    return {str(t.get("name")) for t in request.get("tools") or []}


def test_mcp_add_and_list_show_the_server_connected(harness: ClaudeHarness) -> None:
    harness.add_server()
    listed = harness.claude("mcp", "list", timeout=90)
    assert listed.returncode == 0, listed.stderr
    line = next((row for row in listed.stdout.splitlines() if row.startswith("session-buddy")), "")
    assert "Connected" in line, listed.stdout


def test_a_session_calls_tools_and_the_next_one_finds_its_insight(
    harness: ClaudeHarness,
) -> None:
    # the brief carries the handoff only, so the insight reaches the next session through the
    # prompt's recall (a memory is injected once per session: in the brief or the recall)
    harness.extra_env["SESSION_BUDDY_HOOKS__BRIEF_MEMORIES"] = "0"
    harness.add_server()
    harness.install_hooks()
    first, standin = harness.run(
        "Fix the double charge in charge.py",
        [
            load("mcp__session-buddy__start"),
            [tool_use("mcp__session-buddy__start")],
            [
                tool_use(
                    "Bash",
                    command="printf '# idempotent on order id\\n' >> charge.py",
                    description="note the fix",
                )
            ],
            [
                text(
                    "I changed charge.py.\n\n"
                    + INSIGHT
                    + "\n\nNext: add a test for the double-charge case."
                )
            ],
        ],
    )
    assert first.returncode == 0, (first.stderr, first.result)
    assert first.result.get("is_error") is False, first.result
    main = standin.main_requests
    assert len(main) == 4
    # no service was running: the front listed the tools at once, so Claude Code's very
    # first model request already offers them (deferred behind ToolSearch)
    assert "mcp__session-buddy__start" in request_text(main[0])
    # the start tool was offered once loaded, called, and answered with this project
    assert "mcp__session-buddy__start" in tools_offered(main[1])
    started = json.loads(last_tool_results(main[2])[0])
    assert started["session"]["project"] == "payments"
    assert Path(started["session"]["project_path"]).resolve() == harness.project.resolve()
    # the Bash edit happened in the project
    assert "idempotent on order id" in (harness.project / "charge.py").read_text()
    # Claude Code wrote the session's transcript under the temp HOME
    transcripts = harness.transcripts()
    assert transcripts and any("★ Insight" in p.read_text() for p in transcripts)

    harness.wait_for_spool()
    # the next session: start applies the previous session's end (spooled by the SessionEnd
    # hook) and the insight, captured from the transcript without any tool call, is found
    # by a paraphrase
    second, standin2 = harness.run(
        "How do we avoid charging twice?",
        [
            load("mcp__session-buddy__start", "mcp__session-buddy__search"),
            [tool_use("mcp__session-buddy__start")],
            [
                tool_use(
                    "mcp__session-buddy__search", query="retried webhook charges the card twice"
                )
            ],
            [text("Found it.")],
        ],
    )
    assert second.returncode == 0, (second.stderr, second.result)
    main2 = standin2.main_requests
    assert len(main2) == 4
    # the very first model request already carries the memory, with no tool call: the
    # SessionStart hook's brief and the UserPromptSubmit recall of the insight
    first_context = request_text(main2[0])
    assert "session-buddy memory of project payments" in first_context, first_context[-3000:]
    assert "Last handoff" in first_context
    assert "session-buddy recalls" in first_context
    assert "keying it on the order id" in first_context
    found = last_tool_results(main2[3])[0]
    assert "idempotent" in found and "order id" in found, found[:2000]
    assert "insight" in found
    # nothing but the model's own context reached the stand-in: no request carried our
    # service's log lines or a traceback (stdout stays JSON-RPC / hook JSON only)
    for request in standin2.requests:
        assert "Traceback (most recent call last)" not in request_text(request)


def test_the_plugin_installs_the_server_hooks_and_commands(harness: ClaudeHarness) -> None:
    """`/plugin install` from this checkout (a local marketplace) is the whole setup: the MCP
    server (through ./run), the hooks and the slash commands."""
    from tests.claude_cli import ROOT

    if not (ROOT / ".venv" / "bin" / "session-buddy").exists():
        pytest.skip("the plugin runs ./run from the checkout: run `./run setup` first")
    validated = harness.claude("plugin", "validate", str(ROOT), timeout=60)
    assert validated.returncode == 0, validated.stdout[-2000:]
    assert "Validation passed" in validated.stdout
    for args in (
        ("plugin", "marketplace", "add", str(ROOT)),
        ("plugin", "install", "session-buddy@session-buddy"),
    ):
        done = harness.claude(*args, timeout=90)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    listed = harness.claude("mcp", "list", timeout=90)
    line = next((r for r in listed.stdout.splitlines() if "session-buddy" in r), "")
    assert line.startswith("plugin:session-buddy") and "Connected" in line, listed.stdout

    run, standin = harness.run(
        "/session-buddy:status", [load("mcp__session-buddy__status"), [text("All good.")]]
    )
    assert run.returncode == 0, (run.stderr, run.result)
    first = request_text(standin.main_requests[0])
    assert "Call the session-buddy `status` tool" in first  # the plugin's slash command
    hook_log = (harness.data_dir / "logs" / "hooks.log").read_text()
    assert "SessionStart:" in hook_log and "UserPromptSubmit:" in hook_log  # the plugin's hooks


def test_a_learned_low_risk_command_runs_without_a_prompt_a_destructive_one_never(
    harness: ClaudeHarness,
) -> None:
    harness.extra_env["SESSION_BUDDY_PERMISSIONS__ENABLED"] = "true"
    harness.add_server()
    harness.install_hooks()
    (harness.project / "build").mkdir()
    (harness.project / "build" / "out.bin").write_text("artefact")
    steps: list[Any] = [[tool_use("Bash", command="ls -la", description="list")] for _ in range(3)]
    steps += [[tool_use("Bash", command="rm -rf build", description="clean")] for _ in range(3)]
    # the user approves both, three times (here: --allowedTools Bash)
    first, _ = harness.run("tidy up", [*steps[:3], *steps[3:4], [text("ok")]])
    assert first.returncode == 0, first.stderr
    (harness.project / "build").mkdir(exist_ok=True)
    (harness.project / "build" / "out.bin").write_text("artefact")
    first, _ = harness.run("again", [*steps[4:6], [text("ok")]])
    assert first.returncode == 0, first.stderr
    (harness.project / "build").mkdir(exist_ok=True)
    (harness.project / "build" / "out.bin").write_text("artefact")

    # now without Bash allowed: Claude Code would ask (in -p: refuse) unless a hook allows it
    second, standin = harness.run(
        "list and clean",
        [
            [tool_use("Bash", command="ls", description="list")],
            [tool_use("Bash", command="rm -rf build", description="clean")],
            [text("done")],
        ],
        allowed="mcp__session-buddy,ToolSearch",
    )
    assert second.returncode == 0, second.stderr
    listed = last_tool_results(standin.main_requests[1])[0]
    assert "charge.py" in listed, listed  # ls ran: approved by the learned pattern
    refused = last_tool_results(standin.main_requests[2])[0]
    assert (harness.project / "build" / "out.bin").exists(), refused  # rm -rf never ran
    log = (harness.data_dir / "logs" / "permissions.log").read_text()
    assert "allowed Bash(ls *)" in log and "rm" not in log.split("allowed", 1)[-1]
