"""Driving the real Claude Code CLI (``claude -p``) against session-buddy in tests.

The CLI comes from npm (``@anthropic-ai/claude-code``); ``./run setup`` installs it into
``.tools/claude-code`` when npm is there. Each test gets its own HOME (Claude Code keeps its
config in ``~/.claude.json`` and its transcripts in ``~/.claude/projects/``), a git project,
and a :class:`~tests.messages_standin.MessagesStandIn` that plays the model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_peers import stop_service
from tests.messages_standin import MessagesStandIn, Step

ROOT = Path(__file__).resolve().parent.parent
CLAUDE_ENV = "SESSION_BUDDY_CLAUDE"
INSTALLED = ROOT / ".tools" / "claude-code" / "node_modules" / ".bin" / "claude"


def claude_binary() -> str:
    """The Claude Code CLI, or skip (fail under CI) with the reason it is missing."""
    for candidate in (os.environ.get(CLAUDE_ENV), str(INSTALLED), shutil.which("claude")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    reason = (
        "the Claude Code CLI is not installed: `./run setup` installs it with npm "
        f"(@anthropic-ai/claude-code into {INSTALLED.parent.parent.parent}); "
        + ("npm is not available here" if shutil.which("npm") is None else "the npm install failed")
    )
    if os.environ.get("CI") and shutil.which("npm") is not None:
        pytest.fail(reason)
    pytest.skip(reason)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


@dataclass
class ClaudeRun:
    returncode: int
    result: dict[str, Any]
    stderr: str
    seconds: float


@dataclass
class ClaudeHarness:
    """A HOME, a project and the model stand-in; ``run`` is one ``claude -p`` session."""

    home: Path
    project: Path
    data_dir: Path
    binary: str
    standins: list[MessagesStandIn] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SESSION_BUDDY_DATA_DIR": str(self.data_dir),
            "ANTHROPIC_API_KEY": "sk-ant-test-standin",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            # the code under test, also for hooks and the service the bridge starts
            "PYTHONPATH": str(ROOT),
        }
        for key in ("LANG", "LC_ALL", "TMPDIR", "SESSION_BUDDY_TEST_PG_DSN"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(self.extra_env)
        return env

    def server_command(self) -> list[str]:
        return [sys.executable, "-m", "session_buddy.cli", "serve"]

    def claude(
        self, *args: str, timeout: float = 120.0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            cwd=self.project,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def add_server(self) -> None:
        done = self.claude("mcp", "add", "session-buddy", "--", *self.server_command())
        assert done.returncode == 0, done.stderr

    def install_hooks(self) -> None:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "session_buddy.cli",
                "hooks",
                "install",
                "--project",
                str(self.project),
            ],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def run(
        self,
        prompt: str,
        script: list[Step],
        *,
        allowed: str = "mcp__session-buddy,ToolSearch,Bash",
    ) -> tuple[ClaudeRun, MessagesStandIn]:
        """One headless session: ``claude -p PROMPT`` with the model played by ``script``."""
        standin = MessagesStandIn(script).start()
        self.standins.append(standin)
        started = time.monotonic()
        done = self.claude(
            "-p",
            prompt,
            "--output-format",
            "json",
            "--allowedTools",
            allowed,
            ANTHROPIC_BASE_URL=standin.url,
        )
        seconds = time.monotonic() - started
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        except ValueError:
            result = {"unparsed": done.stdout[-2000:]}
        return ClaudeRun(done.returncode, result, done.stderr, seconds), standin

    def wait_for_spool(self, timeout: float = 60.0) -> None:
        """Wait until the service has applied every event the hooks spooled (the SessionEnd
        hook nudges it; a person's next session comes later than a test's)."""
        spool = self.data_dir / "spool"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = list(spool.glob("*.json")) + list(spool.glob("processing/*.json"))
            if not pending:
                return
            time.sleep(0.2)
        raise AssertionError(f"spooled hook events not applied in {timeout}s: {pending}")

    def transcripts(self) -> list[Path]:
        return sorted((self.home / ".claude" / "projects").glob("*/*.jsonl"))

    def close(self) -> None:
        for standin in self.standins:
            standin.stop()
        stop_service(self.data_dir)


def make_harness(tmp_path: Path) -> ClaudeHarness:
    binary = claude_binary()
    home = Path(os.environ.get("HOME") or tmp_path / "home")
    home.mkdir(parents=True, exist_ok=True)
    project = tmp_path / "payments"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.email", "dev@example.com")
    git(project, "config", "user.name", "Dev")
    (project / "charge.py").write_text("def charge(amount):\n    return amount\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    data_dir = Path(os.environ.get("SESSION_BUDDY_DATA_DIR") or tmp_path / "data")
    return ClaudeHarness(home=home, project=project, data_dir=data_dir, binary=binary)
