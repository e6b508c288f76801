"""The cost of quality history: ``report`` over a large history, and test-result pickup at a
checkpoint with a large JUnit file.

1. **report**: a DuckDB store (or PostgreSQL with ``--storage postgres``) holding
   ``--sessions`` sessions (default 1,000) with ``--checkpoints`` checkpoint records in all
   (default 10,000, each with a full 14-component breakdown and a test run, as checkpoints
   store them), a test result per session and two reflections per session. Timed, median
   of ``--runs``: reading the history (``AnalyticsService.history``) and rendering it as
   Markdown (with the SVG chart), HTML and JSON; then ``session-buddy report`` as a process.
2. **pickup**: a git repository with a JUnit report of ``--junit-mb`` MB (default 5; ~67,000
   test cases, 10 failing, as pytest writes them). Timed: ``analyze_project`` with and
   without the report (what the checkpoint runs), the first time (parsed) and again (the
   parsed run is remembered by path, size and time), and storing the run once
   (``TestResultService.pickup_project``).

    .venv/bin/python benchmarks/report.py [--sessions 1000] [--checkpoints 10000] [--runs 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COMPONENTS = [
    ("tests", "Tests present", "project", 10),
    ("test_result", "Last recorded test result", "project", 10),
    ("lint", "Lint configuration", "project", 5),
    ("types", "Type checking", "project", 5),
    ("ci", "Continuous integration", "project", 5),
    ("docs", "Documentation", "project", 5),
    ("lockfile", "Lockfile", "project", 5),
    ("uncommitted", "Uncommitted tracked changes", "git", 10),
    ("untracked", "Untracked files", "git", 5),
    ("last_commit", "Time since last commit", "git", 5),
    ("repo_state", "Repository state", "git", 10),
    ("conversation", "Conversation stored", "session", 5),
    ("reflections", "Reflections and insights", "session", 10),
    ("checkpoint_age", "Time since last checkpoint", "session", 10),
]


def quality_data(n: int, score: int, rate: float) -> dict[str, Any]:
    breakdown = [
        {
            "key": key,
            "label": label,
            "category": category,
            "max_points": top,
            "points": top if (n + i) % 4 else top / 2,
            "status": "ok" if (n + i) % 4 else "partial",
            "evidence": f"evidence of {key}: 3 changed file(s): src/a.py, src/b.py, tests/t.py",
            "recommendation": f"Advice for {label.lower()}: do the next concrete thing",
        }
        for i, (key, label, category, top) in enumerate(COMPONENTS)
    ]
    run = {"result": "passed" if rate == 100 else "failed", "pass_rate": rate, "coverage": 80.0}
    return {
        "score": score,
        "earned": score,
        "possible": 100,
        "breakdown": breakdown,
        "test_run": run,
    }


async def fill(storage: Any, sessions: int, checkpoints: int) -> None:
    from session_buddy.adapters.storage._base import NewItem, Record
    from session_buddy.core.analytics import QUALITY, SESSIONS
    from session_buddy.core.testresults import COLLECTION

    start = datetime.now(UTC) - timedelta(hours=sessions * 3)
    per = max(1, checkpoints // sessions)
    for n in range(sessions):
        at = start + timedelta(hours=3 * n)
        sid = f"bench{n:06d}"
        final = 40 + (n * 7 + per - 1) % 55
        data = {
            "name": f"session {n}",
            "project_path": None,
            "checkpoints": per,
            "last_score": final,
        }
        data["ended_at"] = (at + timedelta(hours=2)).isoformat()
        await storage.put_record(Record(SESSIONS, sid, data, "bench", "ended", at, at))
        for k in range(per):
            score = 40 + (n * 7 + k) % 55
            rate = 100.0 if n % 3 else 92.5
            cp = at + timedelta(minutes=10 * (k + 1))
            body = {
                "session_id": sid,
                "name": None,
                "score": score,
                "quality": quality_data(n, score, rate),
            }
            await storage.put_record(Record(QUALITY, f"{sid}-{k}", body, "bench", None, cp, cp))
        run = {"session_id": sid, "passed": 180, "failed": n % 3, "coverage": 75.0 + n % 20}
        tr = at + timedelta(minutes=15)
        await storage.put_record(Record(COLLECTION, f"{sid}-t", run, "bench", None, tr, tr))
        await storage.add_items(
            [
                NewItem(
                    kind="reflection",
                    content=f"Reflection {n}.{j}: keep parse() total",
                    project="bench",
                    session_id=sid,
                    created_at=at + timedelta(minutes=20 + j),
                )
                for j in range(2)
            ]
        )


async def time_report(storage: Any, runs: int) -> dict[str, float]:
    from session_buddy.core.analytics import AnalyticsService
    from session_buddy.core.report import render_html, render_json, render_markdown

    service = AnalyticsService(storage)
    from session_buddy.core.recurring import find_patterns

    timings: dict[str, list[float]] = {
        "history": [],
        "patterns": [],
        "md+svg": [],
        "html": [],
        "json": [],
    }
    for _ in range(runs):
        t0 = time.perf_counter()
        history = await service.history("bench", None)
        tp = time.perf_counter()
        history.patterns = await find_patterns(storage, "bench", None)
        t1 = time.perf_counter()
        render_markdown(history, "chart.svg")
        history.chart()
        t2 = time.perf_counter()
        render_html(history)
        t3 = time.perf_counter()
        render_json(history)
        t4 = time.perf_counter()
        timings["history"].append(tp - t0)
        timings["patterns"].append(t1 - tp)
        timings["md+svg"].append(t2 - t1)
        timings["html"].append(t3 - t2)
        timings["json"].append(t4 - t3)
    assert len(history.sessions) > 0
    from session_buddy.core.analytics import analytics_answer, trend_answer

    sizes = {
        "quality_trend": len(json.dumps(trend_answer(history, 15), ensure_ascii=False)),
        "session_analytics": len(
            json.dumps(analytics_answer(history, 5, False), ensure_ascii=False)
        ),
    }
    print("answer sizes (characters, defaults):", ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return {k: statistics.median(v) for k, v in timings.items()}


def write_junit(path: Path, megabytes: float) -> int:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        '<testsuite name="pytest" errors="0" failures="{F}" skipped="0" tests="{N}" time="61.2">'
    ]
    size = n = failed = 0
    while size < megabytes * 1024 * 1024:
        if n % 6700 == 1:
            case = (
                f'<testcase classname="tests.test_mod{n // 100}" name="test_case_{n}" time="0.004">'
                '<failure message="assert 1 == 2">def test():\n&gt;  assert parse(x) == 2\n'
                "E  assert 1 == 2\n" + "context line\n" * 20 + "</failure></testcase>"
            )
            failed += 1
        else:
            case = f'<testcase classname="tests.test_mod{n // 100}" name="test_case_{n}" time="0.001" />'
        parts.append(case)
        size += len(case)
        n += 1
    parts.append("</testsuite></testsuites>")
    parts[0] = parts[0].replace("{F}", str(failed)).replace("{N}", str(n))
    path.write_text("".join(parts))
    return n


async def time_pickup(folder: Path, megabytes: float, runs: int, storage: Any) -> dict[str, float]:
    from session_buddy.core import testresults
    from session_buddy.core.project import analyze_project
    from session_buddy.core.testresults import TestResultService

    repo = Path(tempfile.mkdtemp(prefix="big-suite-", dir=folder))
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "b@example.com"],
        ["config", "user.name", "B"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "src.py").write_text("def parse(x):\n    return x\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_src.py").write_text("def test_parse():\n    assert True\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    without = statistics.median(_timed(lambda: analyze_project(repo)) for _ in range(runs))
    cases = write_junit(repo / "junit.xml", megabytes)
    cold, warm = [], []
    for _ in range(runs):
        testresults._parsed.clear()
        cold.append(_timed(lambda: analyze_project(repo)))
        warm.append(_timed(lambda: analyze_project(repo)))
    info = analyze_project(repo)
    assert info.test_result is not None and info.test_result.total == cases
    service = TestResultService(storage)
    t0 = time.perf_counter()
    await service.pickup_project(info, session_id="bench", project=repo.name)
    first_store = time.perf_counter() - t0
    t0 = time.perf_counter()
    await service.pickup_project(info, session_id="bench", project=repo.name)
    again_store = time.perf_counter() - t0
    return {
        "cases": cases,
        "size_mb": (repo / "junit.xml").stat().st_size / 1024 / 1024,
        "analyze_without": without,
        "analyze_cold": statistics.median(cold),
        "analyze_warm": statistics.median(warm),
        "store_first": first_store,
        "store_again": again_store,
    }


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cli_report(data: Path, runs: int) -> float:
    env = {
        **os.environ,
        "SESSION_BUDDY_DATA_DIR": str(data),
        "SESSION_BUDDY_ADAPTERS__STORAGE": "duckdb",
    }
    cmd = [
        sys.executable,
        "-m",
        "session_buddy.cli",
        "report",
        "--project",
        "bench",
        "-o",
        str(data / "r.md"),
    ]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=10000)
    parser.add_argument("--junit-mb", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--storage", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--dsn", default=os.environ.get("SESSION_BUDDY_TEST_PG_DSN"))
    parser.add_argument("--data", help="Keep the DuckDB store in this folder and reuse it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sb-report-bench-") as tmp:
        folder = Path(tmp)
        if args.data:  # keep (and reuse) the DuckDB store: filling it takes minutes
            folder = Path(args.data)
            folder.mkdir(parents=True, exist_ok=True)
        if args.storage == "postgres":
            from session_buddy.adapters.storage.postgres import Storage as PgStorage

            schema = f"bench_report_{os.getpid()}"
            storage: Any = PgStorage(args.dsn, schema=schema, dimension=384)
        else:
            from session_buddy.adapters.storage.duckdb import Storage

            storage = Storage(folder / "data" / "memory.duckdb", dimension=384)
        await storage.initialize()
        t0 = time.perf_counter()
        from session_buddy.core.analytics import SESSIONS

        if await storage.list_records(SESSIONS, project="bench", limit=1):
            print(f"reusing the store in {folder}")
        else:
            await fill(storage, args.sessions, args.checkpoints)
            print(
                f"filled {args.sessions} sessions / {args.checkpoints} checkpoints "
                f"({args.storage}) in {time.perf_counter() - t0:.1f} s"
            )
        report = await time_report(storage, args.runs)
        total = sum(report.values())
        print(
            "report, median of",
            args.runs,
            "runs:",
            ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report.items()),
            f"(all {total * 1000:.0f} ms)",
        )
        pickup = await time_pickup(folder, args.junit_mb, args.runs, storage)
        print(
            f"pickup, {pickup['size_mb']:.1f} MB JUnit ({pickup['cases']} cases): analyze_project "
            f"{pickup['analyze_without'] * 1000:.0f} ms without the report, "
            f"{pickup['analyze_cold'] * 1000:.0f} ms first time (+"
            f"{(pickup['analyze_cold'] - pickup['analyze_without']) * 1000:.0f} ms), "
            f"{pickup['analyze_warm'] * 1000:.0f} ms again; storing it "
            f"{pickup['store_first'] * 1000:.1f} ms, again {pickup['store_again'] * 1000:.1f} ms"
        )
        if args.storage == "postgres":
            import asyncpg

            await storage.close()
            con = await asyncpg.connect(args.dsn)
            await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await con.close()
        else:
            await storage.close()
            print(
                f"session-buddy report (process, DuckDB): {cli_report(folder / 'data', 3):.2f} s median of 3"
            )


if __name__ == "__main__":
    asyncio.run(main())
