"""What the SessionStart and UserPromptSubmit hooks put into the agent's context, through the
real hook command (a fresh process, as Claude Code runs it) and a real shared service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mcp_peers import StdioPeer, bridge_and_service, run_hook, server_env, stop_service

FIX = (
    "The double charge came from the payment webhook being retried: charge() is now "
    "idempotent, keyed on the order id."
)


def context_of(stdout: str, event: str) -> str:
    """The additionalContext of a hook's stdout (which must be exactly one JSON object)."""
    if not stdout.strip():
        return ""
    answer = json.loads(stdout)
    assert answer["hookSpecificOutput"]["hookEventName"] == event
    return str(answer["hookSpecificOutput"]["additionalContext"])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "payments"
    (folder / ".git").mkdir(parents=True)
    return folder


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[StdioPeer, dict[str, str]]]:
    with bridge_and_service(tmp_path) as running:
        yield running


def test_session_start_brings_the_brief_and_prompts_recall_once(
    service: tuple[StdioPeer, dict[str, str]], project: Path, tmp_path: Path
) -> None:
    peer, env = service
    empty, _, _ = run_hook(env, "SessionStart", {"cwd": str(project), "session_id": "s0"})
    assert empty == "", "a project with no memory gets nothing"
    stored = peer.call("store_reflection", {"content": FIX, "project": "payments"})
    assert not stored.get("isError"), stored
    for n in range(8):
        peer.call(
            "store_reflection",
            {"content": f"Release note {n}: bumped the invoice template", "project": "other"},
        )

    out, err, _ = run_hook(
        env, "SessionStart", {"cwd": str(project), "session_id": "s1", "source": "startup"}
    )
    brief = context_of(out, "SessionStart")
    assert "idempotent" in brief and "payments" in brief, (brief, err)
    assert "invoice" not in brief, "another project's memories are not in this brief"
    assert len(brief) <= 2500

    prompt = {"cwd": str(project), "session_id": "s2", "prompt": "why was the card charged twice?"}
    out, err, _ = run_hook(env, "UserPromptSubmit", prompt)
    recalled = context_of(out, "UserPromptSubmit")
    assert "order id" in recalled, err
    assert len(recalled) <= 1500
    again, _, _ = run_hook(env, "UserPromptSubmit", prompt)
    assert again == "", "a memory is injected once per session"

    unrelated = {**prompt, "session_id": "s3", "prompt": "kubernetes helm chart rollout"}
    nothing, _, _ = run_hook(env, "UserPromptSubmit", unrelated)
    assert nothing == "", "nothing relevant stored: nothing injected"


def test_recall_can_be_turned_off(tmp_path: Path, project: Path) -> None:
    with bridge_and_service(tmp_path, SESSION_BUDDY_HOOKS__RECALL="false") as (peer, env):
        peer.call("store_reflection", {"content": FIX, "project": "payments"})
        out, _, _ = run_hook(
            env,
            "UserPromptSubmit",
            {"cwd": str(project), "session_id": "s", "prompt": "why was the card charged twice?"},
        )
        assert out == ""


def test_without_a_service_the_brief_falls_back_to_the_handoff_file_and_warms_it(
    tmp_path: Path, project: Path
) -> None:
    env = server_env(tmp_path)
    handoffs = project / ".claude" / "handoff"
    handoffs.mkdir(parents=True)
    (handoffs / "20261201-100000-abc.md").write_text(
        "# Handoff: payments\n\n## Summary\n\nMade charge() idempotent.\n\n"
        "## Next steps\n\n- add a test for the double-charge case\n"
    )
    try:
        out, err, seconds = run_hook(
            env, "SessionStart", {"cwd": str(project), "session_id": "s1", "source": "startup"}
        )
        brief = context_of(out, "SessionStart")
        assert "double-charge" in brief, err
        assert "no service running" in err
        assert seconds < 2.5
        # the hook started the service for the session's bridge
        deadline = time.monotonic() + 30
        while not (tmp_path / "data" / "service.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "data" / "service.json").exists()
    finally:
        stop_service(tmp_path / "data")
    # nothing said on stdout but the JSON
    assert out.count("\n") <= 1


def test_the_hook_path_imports_nothing_heavy() -> None:
    code = (
        "import sys; import session_buddy.cli.hook_runtime, session_buddy.server.hook_link; "
        "heavy = [m for m in ('typer', 'rich', 'pydantic', 'fastmcp', 'duckdb', 'onnxruntime', "
        "'acb', 'numpy') if m in sys.modules]; print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported on the hook path: {done.stdout}"


def test_a_hook_acts_as_the_services_user(tmp_path: Path, project: Path) -> None:
    """The hook mints its token under the login name (it reads no settings when the data dir
    is in its environment); the service answers for its own configured user all the same."""
    with bridge_and_service(tmp_path, SESSION_BUDDY_USER="alice") as (peer, env):
        peer.call("store_reflection", {"content": FIX, "project": "payments"})
        hook_env = {k: v for k, v in env.items() if k != "SESSION_BUDDY_USER"}
        hook_env["USER"] = "bob"
        prompt = {
            "cwd": str(project),
            "session_id": "s",
            "prompt": "why was the card charged twice?",
        }
        out, err, _ = run_hook(hook_env, "UserPromptSubmit", prompt)
        assert "order id" in context_of(out, "UserPromptSubmit"), err
