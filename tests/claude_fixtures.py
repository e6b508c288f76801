"""Builds realistic Claude Code transcript files (JSON Lines) for the capture tests.

The shape follows the public descriptions of the format: one event per line with ``type``,
``uuid``/``parentUuid`` chaining, ``sessionId``, ``cwd``, ``gitBranch``, ``timestamp``,
``isSidechain``, ``userType``, ``version``, and a ``message`` whose ``content`` is a string or
a list of blocks. Everything here is generated; nothing is copied from real transcripts.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BAR = "─" * 49
INSIGHT_OPEN = "`★ Insight ─────────────────────────────────────`"
INSIGHT_CLOSE = f"`{BAR}`"


def insight(*points: str, backticks: bool = True) -> str:
    """An insight block as the explanatory output style writes it."""
    opening = INSIGHT_OPEN if backticks else INSIGHT_OPEN.strip("`")
    closing = INSIGHT_CLOSE if backticks else BAR
    return "\n".join([opening, *(f"- {p}" for p in points), closing])


class Transcript:
    """Accumulates the lines of one session's transcript."""

    def __init__(
        self,
        session_id: str | None = None,
        cwd: str = "/home/dev/work/acme-api",
        branch: str = "main",
        start: datetime | None = None,
        sidechain: bool = False,
        agent_id: str | None = None,
    ) -> None:
        self.session_id = session_id or str(uuid.uuid4())
        self.cwd = cwd
        self.branch = branch
        self.clock = start or datetime(2025, 9, 14, 9, 30, tzinfo=UTC)
        self.sidechain = sidechain
        self.agent_id = agent_id
        self.lines: list[bytes] = []
        self.parent: str | None = None
        self._tool_ids = 0

    # -- building blocks ------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.clock += timedelta(seconds=7)
        event: dict[str, Any] = {
            "parentUuid": self.parent,
            "isSidechain": self.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": "1.0.98",
            "gitBranch": self.branch,
        }
        if self.agent_id:
            event["agentId"] = self.agent_id
        event["type"] = kind
        event.update(fields)
        event["uuid"] = str(uuid.uuid4())
        event["timestamp"] = self.clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.parent = event["uuid"]
        return event

    def add(self, event: dict[str, Any]) -> dict[str, Any]:
        self.lines.append(json.dumps(event, ensure_ascii=False).encode("utf-8"))
        return event

    def raw(self, data: bytes) -> None:
        self.lines.append(data)

    # -- events ---------------------------------------------------------------------------

    def user(self, content: str | list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return self.add(self._event("user", message={"role": "user", "content": content}, **extra))

    def assistant(
        self,
        *blocks: dict[str, Any] | str,
        model: str = "claude-sonnet-4-5",
        message_id: str | None = None,
    ) -> dict[str, Any]:
        content = [{"type": "text", "text": b} if isinstance(b, str) else b for b in blocks]
        message = {
            "id": message_id or f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 4, "cache_read_input_tokens": 15230, "output_tokens": 212},
        }
        return self.add(
            self._event("assistant", message=message, requestId=f"req_{uuid.uuid4().hex[:20]}")
        )

    def tool_use(self, name: str, **arguments: Any) -> str:
        self._tool_ids += 1
        tool_id = f"toolu_{self._tool_ids:02d}{uuid.uuid4().hex[:20]}"
        self.assistant({"type": "tool_use", "id": tool_id, "name": name, "input": arguments})
        return tool_id

    def message(self, text: str, *calls: tuple[str, dict[str, Any]]) -> list[str]:
        """One assistant message as Claude Code writes it: its text, then each tool call, on
        lines of their own with the same message id. Returns the tool ids."""
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        self.assistant(text, message_id=message_id)
        ids = []
        for name, arguments in calls:
            self._tool_ids += 1
            tool_id = f"toolu_{self._tool_ids:02d}{uuid.uuid4().hex[:20]}"
            block = {"type": "tool_use", "id": tool_id, "name": name, "input": arguments}
            self.assistant(block, message_id=message_id)
            ids.append(tool_id)
        return ids

    def tool_result(
        self, tool_id: str, content: str | list[dict[str, Any]], is_error: bool = False
    ) -> None:
        block = {
            "tool_use_id": tool_id,
            "type": "tool_result",
            "content": content,
            "is_error": is_error,
        }
        self.user(
            [block],
            toolUseResult={"stdout": content if isinstance(content, str) else "", "stderr": ""},
        )

    def thinking(self, text: str) -> None:
        self.assistant(
            {"type": "thinking", "thinking": text, "signature": "EqQBCkYIBxgCKkB" + "x" * 40}
        )

    def summary(self, text: str) -> None:
        self.add({"type": "summary", "summary": text, "leafUuid": str(uuid.uuid4())})

    def system(self, content: str, subtype: str = "informational", level: str = "info") -> None:
        self.add(self._event("system", content=content, subtype=subtype, level=level, isMeta=False))

    def meta(self, text: str) -> None:
        self.user(text, isMeta=True)

    def snapshot(self) -> None:
        self.add(
            {
                "type": "file-history-snapshot",
                "messageId": str(uuid.uuid4()),
                "snapshot": {"trackedFileBackups": {}},
                "isSnapshotUpdate": False,
            }
        )

    # -- output ---------------------------------------------------------------------------

    def data(self, *, last_newline: bool = True) -> bytes:
        body = b"\n".join(self.lines)
        return body + b"\n" if (last_newline and self.lines) else body

    def write(self, path: Path, *, last_newline: bool = True) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.data(last_newline=last_newline))
        return path

    def append_to(self, path: Path, start: int) -> None:
        """Append lines[start:] to ``path``."""
        with path.open("ab") as fh:
            for line in self.lines[start:]:
                fh.write(line + b"\n")


def project_dir(projects: Path, cwd: str) -> Path:
    """The folder Claude Code uses for a working directory."""
    return projects / "".join(c if c.isalnum() else "-" for c in cwd)


def rich_session(projects: Path, cwd: str = "/home/dev/work/acme-api") -> tuple[Transcript, Path]:
    """A session exercising most of the format. Turns stored: see ``RICH_TURNS``."""
    t = Transcript(cwd=cwd)
    t.summary("Fix flaky retry test in the HTTP client")  # 1 (system)
    t.snapshot()  # skipped
    t.meta(
        "Caveat: The messages below were generated by the user while running local commands."
    )  # skipped
    t.user(
        "The retry test in tests/test_client.py fails about one run in five. Can you find out why?"
    )  # 2
    t.thinking("The user wants me to look at the flaky test. Let me read it first.")  # skipped
    # a tool call alone is no turn (skipped); its result is one, labelled with the call
    read = t.tool_use("Read", file_path="/home/dev/work/acme-api/tests/test_client.py")
    t.tool_result(read, "     1\timport pytest\n" + "     2\t# retry tests\n" * 3000)  # 3 (cut)
    bash = t.tool_use(
        "Bash",
        command="pytest tests/test_client.py -q -p no:randomly",
        description="Run the retry tests",
    )  # skipped
    t.tool_result(bash, "1 failed, 11 passed in 2.31s", is_error=True)  # 4
    t.assistant(
        "The backoff uses `random.uniform` without a seeded generator, so the jitter sometimes "
        "exceeds the test's 0.5 s budget.\n\n"
        + insight(
            "`RetryPolicy.delay()` adds full jitter: the upper bound doubles every attempt.",
            "Tests that assert on wall time need an injected clock or a seeded `random.Random`.",
        )
        + "\n\nI'll inject a `random.Random` into `RetryPolicy`."
    )  # 5 (+1 insight)
    t.system("Conversation compacted", subtype="compact_boundary")  # 6
    t.system("", subtype="stop_hook_summary")  # skipped
    t.user([{"type": "text", "text": "Good. Also keep the public signature unchanged."}])  # 7
    t.assistant(
        "Done: `RetryPolicy(rng=None)` keeps the old behaviour and the test passes 200/200 runs."
    )  # 8
    t.raw(b'{"type": "user", "message": {"role": "user", "content": "unterminated')  # malformed
    t.raw(
        b'{"type":"user","sessionId":"'
        + t.session_id.encode()
        + b'","cwd":"'
        + cwd.encode()
        + b'","message":{"role":"user","content":"caf\xe9 cr\xe8me is not UTF-8 here"},"uuid":"u-latin1","timestamp":"2025-09-14T10:00:00Z"}'
    )  # 9 (invalid utf-8)
    path = t.write(project_dir(projects, cwd) / f"{t.session_id}.jsonl")
    return t, path


RICH_TURNS = 9
RICH_MALFORMED = 1
RICH_INVALID_UTF8 = 1


def internal_agent(main: Transcript, kind: str, text: str) -> Transcript:
    """A transcript of one of Claude Code's helper agents (``acompact``: compaction,
    ``aprompt_suggestion``: prompt suggestions) of the session ``main``."""
    agent = Transcript(
        cwd=main.cwd, session_id=main.session_id, sidechain=True, agent_id=f"{kind}-5e6f7a"
    )
    agent.user(f"Your task is to {text} for the conversation so far.")
    agent.assistant(f"Here is the {text}: the user worked on the retry policy.")
    return agent


def filler_session(
    turns: int,
    *,
    cwd: str = "/home/dev/work/acme-api",
    session_id: str | None = None,
    seed: int = 0,
) -> Transcript:
    """A long, plausible session of ``turns`` unique user/assistant turns."""
    topics = [
        ("the DuckDB writer", "a single connection guarded by a lock", "WAL checkpoints"),
        ("the ONNX embedder", "batches sorted by token count", "padding waste"),
        ("the hook installer", "merging into settings.json", "idempotent writes"),
        ("the search ranker", "reciprocal rank fusion", "BM25 saturation"),
        ("the CLI", "typer sub-apps", "progress on stderr"),
    ]
    t = Transcript(cwd=cwd, session_id=session_id)
    for i in range(turns):
        subject, approach, concern = topics[(i + seed) % len(topics)]
        if i % 2 == 0:
            t.user(
                f"Step {seed}-{i}: how should {subject} handle {concern}? Keep it simple (ticket ACME-{1000 + i})."
            )
        else:
            t.assistant(
                f"For step {seed}-{i}, {subject} can rely on {approach}; it bounds {concern} and stays testable."
            )
    return t
