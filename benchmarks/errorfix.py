"""The cost of the error -> fix memory and of the patterns across sessions.

1. The failure tracker during a transcript import: ``FixTracker.feed`` over tool results
   (Bash output with and without failures, edits), per turn.
2. On a DuckDB store holding ``--errors`` error records (half fixed, signatures recurring over
   ``--sessions`` sessions) and ``--insights`` insights with 384-dimensional vectors:
   ``search_errors``'s fix lookup (``ErrorMemory.search``), the prompt recall's
   (``ErrorMemory.recall``) and ``patterns`` (``find_patterns``: records, runs, vectors and
   the average-linkage clustering).

    .venv/bin/python benchmarks/errorfix.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from session_buddy.adapters.storage._base import NewItem
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.core.errorfix import ErrorMemory
from session_buddy.core.failures import FixEvent, FixTracker
from session_buddy.core.recurring import find_patterns

TRACEBACK = (
    'Exit code 1\nTraceback (most recent call last):\n  File "/w/app.py", line 4, in <module>\n'
    "    main()\nKeyError: 'user_id'\n"
)
PYTEST_OK = "....\n4 passed in 0.02s\n"


def time_tracker(turns: int) -> float:
    """Microseconds per turn fed to the tracker (a failure, an edit and a passing run)."""
    tracker = FixTracker()
    bash = {"tool": "Bash", "tool_call": "[tool_use Bash] command=python app.py"}
    edit = {"tool": "Edit", "tool_call": "[tool_use Edit] file_path=/w/app.py old_string=x"}
    cycle = [
        (TRACEBACK, {**bash, "is_error": True}),
        ("The file /w/app.py has been updated.", edit),
        ("user anonymous\n" + PYTEST_OK, bash),
    ]
    at = datetime.now(UTC)
    start = time.perf_counter()
    for n in range(turns):
        content, meta = cycle[n % 3]
        tracker.feed("tool", content, meta, session_id="s", project="p", at=at)
    return (time.perf_counter() - start) / turns * 1e6


async def fill(storage: Storage, errors: int, sessions: int, insights: int) -> None:
    memory = ErrorMemory(storage)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for n in range(errors):
        at = (start + timedelta(minutes=n)).isoformat()
        signature = f"KeyError: 'field_{n % 200}'"
        session = f"s{n % sessions}"
        events.append(FixEvent("seen", signature, "exception", signature, session, "bench", at))
        if n % 2 == 0:
            events.append(
                FixEvent(
                    "fixed", signature, "exception", signature, session, "bench", at,
                    command="pytest", fixed_at=at, files=[f"src/m{n % 50}.py"],
                    description="validated the input first",
                )
            )  # fmt: skip
    await memory.record(events)
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, storage.dimension))
    items = []
    for n in range(insights):
        vec = centres[n % 20] + 0.6 * rng.normal(size=storage.dimension)
        vec /= np.linalg.norm(vec)
        items.append(
            NewItem(
                "insight", f"insight {n} about topic {n % 20}", project="bench",
                session_id=f"s{n % sessions}", embedding=vec.astype(np.float32),
            )
        )  # fmt: skip
    await storage.add_items(items)


async def time_queries(storage: Storage, runs: int) -> dict[str, list[float]]:
    memory = ErrorMemory(storage)
    timings: dict[str, list[float]] = {"search": [], "recall": [], "patterns": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        found = await memory.search("KeyError: 'field_42'", projects=["bench"])
        t1 = time.perf_counter()
        recalled = await memory.recall("it fails again: KeyError: 'field_8'", ["bench"])
        t2 = time.perf_counter()
        patterns = await find_patterns(storage, "bench", None)
        t3 = time.perf_counter()
        assert found and recalled and patterns["recurring_errors"] and patterns["topics"]
        timings["search"].append(t1 - t0)
        timings["recall"].append(t2 - t1)
        timings["patterns"].append(t3 - t2)
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--errors", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--insights", type=int, default=500)
    parser.add_argument("--turns", type=int, default=30000)
    args = parser.parse_args()
    print(f"tracker: {time_tracker(args.turns):.1f} µs per tool result ({args.turns} turns)")
    with tempfile.TemporaryDirectory() as folder:
        storage = Storage(Path(folder) / "bench.duckdb", dimension=384)
        await storage.initialize()
        try:
            t0 = time.perf_counter()
            await fill(storage, args.errors, args.sessions, args.insights)
            print(f"filled in {time.perf_counter() - t0:.1f} s: {args.errors} errors, "
                  f"{args.insights} insights over {args.sessions} sessions")  # fmt: skip
            for name, values in (await time_queries(storage, args.runs)).items():
                print(
                    f"{name}: median {statistics.median(values) * 1000:.1f} ms "
                    f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"
                )
        finally:
            await storage.close()


if __name__ == "__main__":
    asyncio.run(main())
