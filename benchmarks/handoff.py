"""What the handoff's evidence costs at `end`, and how long its short form is.

Writes a synthetic Claude Code transcript (``--turns`` exchanges: a prompt, assistant prose,
an Edit call and its result, a Bash call with a 2 KB result), then times
``transcripts.transcript_work`` over it (the scan `end` makes for the goal, the edited files
and the stated next steps) and prints the sizes of the composed handoff and of the short form
the next `start` shows.

    .venv/bin/python benchmarks/handoff.py [--turns 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def write_transcript(path: Path, turns: int) -> None:
    clock = datetime.now(UTC) - timedelta(hours=2)
    lines = []

    def event(kind: str, content: object) -> None:
        nonlocal clock
        clock += timedelta(milliseconds=300)
        lines.append(
            json.dumps(
                {
                    "type": kind,
                    "sessionId": "bench",
                    "cwd": "/work/payments",
                    "timestamp": clock.isoformat().replace("+00:00", "Z"),
                    "message": {"role": kind, "content": content},
                }
            )
        )

    for i in range(turns):
        event("user", f"Step {i}: make the charge path of module {i % 50} idempotent.")
        event("assistant", [{"type": "text", "text": f"Working on step {i}.\nNext: check {i}"}])
        event(
            "assistant",
            [
                {
                    "type": "tool_use",
                    "id": f"e{i}",
                    "name": "Edit",
                    "input": {"file_path": f"/work/payments/m{i % 50}.py", "old_string": "a"},
                }
            ],
        )
        event("user", [{"type": "tool_result", "tool_use_id": f"e{i}", "content": "updated"}])
        event(
            "assistant",
            [{"type": "tool_use", "id": f"b{i}", "name": "Bash", "input": {"command": "pytest"}}],
        )
        event("user", [{"type": "tool_result", "tool_use_id": f"b{i}", "content": "x" * 2000}])
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from session_buddy.core.handoff import (
        GitFacts,
        HandoffInputs,
        compose_handoff,
        summarize_handoff,
    )
    from session_buddy.core.transcripts import transcript_work

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        write_transcript(path, args.turns)
        size = path.stat().st_size
        since = datetime.now(UTC) - timedelta(hours=1)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            work = transcript_work([path], since)
            times.append(time.perf_counter() - started)
        best = min(times)
        print(f"transcript: {args.turns:,} exchanges, {size / 1e6:.1f} MB")
        print(
            f"transcript_work: best {best * 1000:.0f} ms of {args.runs} ({size / 1e6 / best:.0f} MB/s)"
        )
        print(
            f"  goal found: {bool(work.goal)}, edited files: {len(work.edited)}, texts kept: {len(work.texts)}"
        )
        inputs = HandoffInputs(
            project="payments",
            session_id="bench",
            started_at=since,
            ended_at=datetime.now(UTC),
            transcript=work,
            git=GitFacts(files={f"m{i}.py": "uncommitted" for i in range(50)}),
        )
        markdown = compose_handoff(inputs)
        short = summarize_handoff(markdown)
        print(f"handoff: {len(markdown):,} characters; short form in the brief: {len(short)}")


if __name__ == "__main__":
    main()
