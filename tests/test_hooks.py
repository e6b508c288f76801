"""Claude Code hooks: install/uninstall in settings.json, and the hook command itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from session_buddy.cli import claude_settings
from session_buddy.cli.hooks import hooks_app
from session_buddy.core import hooks as hooks_core
from session_buddy.core.hooks import EVENTS

EXISTING = {
    "permissions": {"allow": ["Bash(npm test:*)"]},
    "hooks": {
        "SessionStart": [
            {"matcher": "startup", "hooks": [{"type": "command", "command": "echo hello"}]}
        ],
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [{"type": "command", "command": "./guard.sh", "timeout": 5}],
            }
        ],
    },
    "env": {"GREETING": "héllo ✓"},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SESSION_BUDDY_DATA_DIR", str(tmp_path / "data"))
    return home


def write_settings(project: Path, text: str, name: str = "settings.local.json") -> Path:
    """A settings file of the project (``--project`` installs into settings.local.json)."""
    path = project / ".claude" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(EXISTING, indent=2, ensure_ascii=False) + "\n",  # as Claude Code writes it
        json.dumps(EXISTING, indent=4),  # other indentation, no final newline
        '{"hooks": {"PreToolUse": [ {"matcher": "Bash", "hooks": []} ]}, "model":"x"}\n',  # hand-made
    ],
)
def test_install_uninstall_is_byte_identical(tmp_path: Path, home: Path, text: str) -> None:
    project = tmp_path / "proj"
    path = write_settings(project, text)
    original = path.read_bytes()
    runner = CliRunner()
    result = runner.invoke(hooks_app, ["install", "--project", str(project)])
    assert result.exit_code == 0, result.output
    installed = json.loads(path.read_text())
    for event in (
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "PreCompact",
        "SessionEnd",
    ):
        commands = [h["command"] for g in installed["hooks"][event] for h in g["hooks"]]
        assert any(f"hook {event}" in c for c in commands)
    # what was there is still there
    assert installed.get("permissions") == json.loads(text).get("permissions")
    theirs = json.loads(text)["hooks"]["PreToolUse"]
    assert installed["hooks"]["PreToolUse"][: len(theirs)] == theirs  # ours come after theirs
    if "SessionStart" in json.loads(text)["hooks"]:
        assert installed["hooks"]["SessionStart"][0]["hooks"][0]["command"] == "echo hello"
    # idempotent
    once = path.read_bytes()
    result = runner.invoke(hooks_app, ["install", "--project", str(project)])
    assert result.exit_code == 0 and "already installed" in result.output
    assert path.read_bytes() == once
    result = runner.invoke(hooks_app, ["uninstall", "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == original


def test_structural_uninstall_after_the_user_edited_the_file(tmp_path: Path) -> None:
    """Without the saved original (or after an edit) only session-buddy's hooks are removed."""
    text = json.dumps(EXISTING, indent=2, ensure_ascii=False) + "\n"
    path = write_settings(tmp_path / "p", text)
    claude_settings.apply_plan(
        claude_settings.plan_install(path, executable="/opt/bin/session-buddy"), None
    )
    assert path.read_text() != text
    plan = claude_settings.plan_uninstall(path, None)
    assert sorted(plan.events) == [
        "PostToolUse",
        "PreCompact",
        "PreToolUse",
        "SessionEnd",
        "SessionStart",
        "UserPromptSubmit",
    ]
    claude_settings.apply_plan(plan, None)
    assert path.read_text() == text


def test_edited_after_install_keeps_the_users_edit(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = write_settings(tmp_path / "p", json.dumps(EXISTING, indent=2) + "\n")
    claude_settings.apply_plan(claude_settings.plan_install(path), state)
    data = json.loads(path.read_text())
    data["model"] = "opus"
    path.write_text(json.dumps(data, indent=2) + "\n")
    claude_settings.apply_plan(claude_settings.plan_uninstall(path, state), state)
    after = json.loads(path.read_text())
    assert after["model"] == "opus"
    assert after["hooks"] == EXISTING["hooks"]


def test_install_creates_and_uninstall_removes_a_new_file(tmp_path: Path, home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(hooks_app, ["install", "--user"])
    assert result.exit_code == 0, result.output
    path = home / ".claude" / "settings.json"
    assert path.is_file()
    assert runner.invoke(hooks_app, ["uninstall", "--user"]).exit_code == 0
    assert not path.exists()


def test_dry_run_shows_a_diff_and_writes_nothing(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "proj"
    path = write_settings(project, json.dumps(EXISTING, indent=2) + "\n")
    before = path.read_bytes()
    result = CliRunner().invoke(hooks_app, ["install", "--project", str(project), "--dry-run"])
    assert result.exit_code == 0
    assert "+++" in result.output and "hook PreCompact" in result.output
    assert path.read_bytes() == before


def test_needs_project_or_user(home: Path) -> None:
    result = CliRunner().invoke(hooks_app, ["install"])
    assert result.exit_code == 2


def test_invalid_settings_json_is_refused_untouched(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "proj"
    path = write_settings(project, "{not json")
    result = CliRunner().invoke(hooks_app, ["install", "--project", str(project)])
    assert result.exit_code == 1
    assert path.read_text() == "{not json"


# -- the hook command --------------------------------------------------------------------


def run_hook(
    event: str, stdin: bytes, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[bytes], float]:
    code = "import sys; from session_buddy.cli.hook_runtime import hook_command; sys.exit(hook_command(sys.argv[1]))"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, event], input=stdin, env=env, capture_output=True, timeout=20
    )
    return proc, time.monotonic() - start


def hook_env(home: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env.update(
        {
            "HOME": str(home),
            "SESSION_BUDDY_DATA_DIR": str(data_dir),
            "XDG_CONFIG_HOME": str(home / ".config"),
        }
    )
    return env


def test_hook_spools_the_event_quickly(tmp_path: Path, home: Path) -> None:
    data = tmp_path / "data"
    payload = {
        "session_id": "abc-123",
        "cwd": str(tmp_path),
        "hook_event_name": "PreCompact",
        "trigger": "auto",
    }
    proc, elapsed = run_hook("PreCompact", json.dumps(payload).encode(), hook_env(home, data))
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 2.5
    files = list((data / "spool").glob("*.json"))
    assert len(files) == 1 and "PreCompact-abc-123" in files[0].name
    record = json.loads(files[0].read_text())
    assert record["event"] == "PreCompact" and record["payload"]["session_id"] == "abc-123"


@pytest.mark.parametrize("stdin", [b"", b"\xff\xfe garbage {{{", b"[1, 2, 3]", b"x" * 3_000_000])
def test_hook_exits_zero_with_garbage_stdin(tmp_path: Path, home: Path, stdin: bytes) -> None:
    proc, elapsed = run_hook("SessionEnd", stdin, hook_env(home, tmp_path / "data"))
    assert proc.returncode == 0
    assert elapsed < 2.5


def test_hook_exits_zero_with_an_unusable_data_dir(tmp_path: Path, home: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc, elapsed = run_hook(
        "SessionStart", b'{"session_id": "s", "cwd": "/"}', hook_env(home, blocker / "data")
    )
    assert proc.returncode == 0
    assert elapsed < 2.5
    assert b"cannot spool" in proc.stderr


def test_hook_exits_zero_for_an_unknown_event(tmp_path: Path, home: Path) -> None:
    proc, _ = run_hook("Bogus", b"{}", hook_env(home, tmp_path / "data"))
    assert proc.returncode == 0
    assert not (tmp_path / "data" / "spool").exists()


def test_hook_does_not_wait_for_an_open_stdin(tmp_path: Path, home: Path) -> None:
    code = "import sys; from session_buddy.cli.hook_runtime import hook_command; sys.exit(hook_command('SessionEnd'))"
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        env=hook_env(home, tmp_path / "data"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.wait(timeout=10) == 0  # stdin never closed
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
    assert time.monotonic() - start < 3.0


def test_session_start_hook_prints_the_latest_handoff(tmp_path: Path, home: Path) -> None:
    from session_buddy.core.handoff import HandoffContent, render_handoff, write_handoff

    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    markdown = render_handoff(
        HandoffContent(
            project="proj",
            session_id="s1",
            summary="Fixed the parser.",
            next_steps=["Write the docs"],
        )
    )
    path = write_handoff(project / ".claude" / "handoff", "s1", markdown)
    payload = {"session_id": "new", "cwd": str(project / "sub"), "source": "startup"}
    (project / "sub").mkdir()
    proc, _ = run_hook(
        "SessionStart", json.dumps(payload).encode(), hook_env(home, tmp_path / "data")
    )
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert str(path) in out and "Fixed the parser." in out and "Write the docs" in out


def test_spool_claims_are_exclusive(tmp_path: Path) -> None:
    for i in range(3):
        hooks_core.spool_event(tmp_path, "SessionEnd", {"session_id": f"s{i}"})
    first = hooks_core.claim_spooled(tmp_path)
    second = hooks_core.claim_spooled(tmp_path)
    assert [e.payload["session_id"] for e in first] == ["s0", "s1", "s2"]
    assert second == []
    for event in first:
        hooks_core.finish_spooled(event)
    assert hooks_core.pending_count(tmp_path) == 0


# -- the project's files: settings.local.json, and the migration from settings.json -------


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    return path


def git_status(repo: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_project_install_uses_the_local_settings_file_git_ignores(
    tmp_path: Path, home: Path
) -> None:
    repo = git_repo(tmp_path / "proj")
    shared = write_settings(repo, json.dumps(EXISTING, indent=2) + "\n", "settings.json")
    shared_bytes = shared.read_bytes()
    result = CliRunner().invoke(hooks_app, ["install", "--project", str(repo)])
    assert result.exit_code == 0, result.output
    local = repo / ".claude" / "settings.local.json"
    installed = json.loads(local.read_text())
    assert sorted(installed["hooks"]) == sorted(EVENTS)
    assert shared.read_bytes() == shared_bytes  # the shared file is not touched
    assert "git now ignores settings.local.json" in result.output
    assert git_status(repo) == "?? .claude/settings.json\n"  # the local file is ignored
    again = CliRunner().invoke(hooks_app, ["install", "--project", str(repo)])
    assert "already installed" in again.output and "git now ignores" not in again.output
    result = CliRunner().invoke(hooks_app, ["uninstall", "--project", str(repo)])
    assert result.exit_code == 0, result.output
    assert not local.exists() and shared.read_bytes() == shared_bytes


@pytest.mark.parametrize("command", ["install", "uninstall"])
@pytest.mark.parametrize("answer", ["y", "n"])
def test_hooks_an_older_version_put_in_settings_json_are_offered_for_removal(
    tmp_path: Path, home: Path, command: str, answer: str
) -> None:
    repo = git_repo(tmp_path / "proj")
    text = json.dumps(EXISTING, indent=2) + "\n"
    shared = write_settings(repo, text, "settings.json")
    claude_settings.apply_plan(claude_settings.plan_install(shared), None)  # the old install
    legacy = shared.read_text()
    result = CliRunner().invoke(hooks_app, [command, "--project", str(repo)], input=answer + "\n")
    assert result.exit_code == 0, result.output
    assert "older version" in result.output and "Remove them" in result.output
    local = repo / ".claude" / "settings.local.json"
    if answer == "y":  # only our entries go; the team's settings stay
        assert shared.read_text() == text
        assert local.exists() == (command == "install")
    else:
        assert shared.read_text() == legacy
        assert not local.exists()  # install adds nothing: the old hooks still run
    dry = CliRunner().invoke(hooks_app, [command, "--project", str(repo), "--dry-run"])
    assert dry.exit_code == 0 and shared.read_text() == (text if answer == "y" else legacy)
