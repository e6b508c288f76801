"""Quality over time through a real MCP client, the report CLI, the chart, and the history
on DuckDB and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from session_buddy import di
from session_buddy.adapters.storage._base import Record
from session_buddy.core.analytics import QUALITY, SESSIONS, AnalyticsService, parse_since
from session_buddy.core.charts import sparkline
from session_buddy.core.handoff import HandoffContent, render_handoff, write_handoff
from session_buddy.core.testresults import COLLECTION
from tests.conftest import session_buddy_cmd
from tests.test_session_lifecycle import call, settings_for
from tests.test_storage import _params, make_storage
from tests.test_testresults import run_pytest, scratch_python_repo

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    yield
    di.reset()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client[Any]]:
    from session_buddy.server.app import create_server

    async with Client(create_server(settings_for(tmp_path))) as c:
        yield c


def chart_points(svg: str) -> dict[str, list[float]]:
    root = ET.fromstring(svg)  # our own output: it must be well-formed XML
    assert root.tag == f"{SVG}svg"
    points: dict[str, list[float]] = {}
    for circle in root.iter(f"{SVG}circle"):
        points.setdefault(circle.get("data-series", ""), []).append(
            float(circle.get("data-value", "nan"))
        )
    return points


async def test_sessions_with_real_pytest_runs_make_a_trend(
    client: Client[Any], tmp_path: Path
) -> None:
    repo = scratch_python_repo(tmp_path / "calc", failing=True)
    scores: list[int] = []
    pass_rates: list[float] = []
    for fixed in (False, True):
        brief = await call(client, "start", working_directory=str(repo))
        assert brief["session"]["project"] == "calc"
        run_pytest(repo, "--junitxml=junit.xml")
        await call(client, "store_reflection", content=f"calc session fixed={fixed}", tags=["calc"])
        point = await call(client, "checkpoint", name="tests ran", detail=True)
        component = next(c for c in point["breakdown"] if c["key"] == "test_result")
        assert component["points"] == (10 if fixed else 0), component
        assert ("passed (4 tests" if fixed else "1 of 4 failed") in component["evidence"]
        ended = await call(client, "end")
        scores.append(ended["final_checkpoint"]["score"])
        # the checkpoint picked the JUnit file up and the handoff carries the trend and chart
        handoff = Path(ended["handoff_path"])
        text = handoff.read_text()
        assert "## Quality trend" in text
        charts = list(handoff.parent.glob("*.svg"))
        assert charts and charts[-1].name in text
        pass_rates.append(100.0 if fixed else 66.7)
        if not fixed:
            path = repo / "tests" / "test_calc.py"
            path.write_text(path.read_text().replace("== 5", "== 4"))
    assert scores[1] > scores[0]

    trend = await call(client, "quality_trend", project="calc")
    assert len(json.dumps(trend)) < 2000
    assert trend["project"] == "calc" and trend["sessions"] == 2 and trend["checkpoints"] == 4
    assert [p["score"] for p in trend["points"]] == scores
    assert [p["pass_rate"] for p in trend["points"]] == pass_rates
    assert trend["direction"] == "improving"
    assert trend["sparkline"]["score"] == sparkline(scores)

    stats = await call(client, "session_analytics", project="calc")
    assert len(json.dumps(stats)) < 2000
    assert stats["sessions"] == 2 and stats["active"] == 0
    assert (
        stats["tests"]["last_pass_rate"] == 100.0 and stats["tests"]["sessions_with_results"] == 2
    )
    assert stats["reflections"] == 2
    assert any(f.startswith("tests/test_calc.py") for f in stats["most_touched_files"])
    assert [s["score"]["last"] for s in stats["last_sessions"]] == scores

    # a result reported by the agent is stored once, linked to the session and the commit
    again = await call(client, "start", working_directory=str(repo))
    args = {
        "test_file": "tests/test_calc.py",
        "result": "failed",
        "passed": 3,
        "failing_tests": ["tests/test_calc.py::test_div"],
        "coverage": 88.5,
    }
    stored = await call(client, "store_test_result", **args)
    assert stored["created"] and stored["session_id"] == again["session"]["id"]
    assert stored["commit"] and len(stored["commit"]) == 40 and stored["project"] == "calc"
    detail = await call(client, "session_analytics", limit=1, detail=True)
    last = detail["last_sessions"][0]
    assert last["id"] == again["session"]["id"] and last["test_runs"] == 1
    assert last["pass_rate"] == 75.0 and last["coverage"] == 88.5

    with pytest.raises(ToolError):
        await call(client, "store_test_result", test_file="t", result="passed", coverage=101)
    with pytest.raises(ToolError, match="since"):
        await call(client, "quality_trend", since="the day after never")


async def test_empty_history_says_so(client: Client[Any]) -> None:
    trend = await call(client, "quality_trend", project="nothing-here")
    assert trend["checkpoints"] == 0 and "first checkpoint" in trend["message"]
    stats = await call(client, "session_analytics", project="nothing-here", since="7d")
    assert stats["sessions"] == 0 and "No session" in stats["message"]
    assert len(json.dumps(stats)) < 800


def test_parse_since() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_since("30d", now) == now - timedelta(days=30)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("last 3 days", now) is not None
    assert parse_since(None) is None and parse_since(" ") is None


async def seed(storage: Any, project: str, scores: list[int], rates: list[float | None]) -> None:
    """One session per score, two checkpoints each (the second is the score), with a test
    result when a rate is given."""
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    for n, (score, rate) in enumerate(zip(scores, rates, strict=True)):
        at = start + timedelta(days=n)
        sid = f"{project}{n:03d}"
        data = {
            "name": None,
            "project_path": None,
            "ended_at": (at + timedelta(hours=1)).isoformat(),
            "checkpoints": 2,  # as the session service keeps them
            "last_score": score,
            "last_checkpoint_at": (at + timedelta(minutes=60)).isoformat(),
        }
        await storage.put_record(Record(SESSIONS, sid, data, project, "ended", at, at))
        for k, value in enumerate((score - 5, score)):
            cp = at + timedelta(minutes=30 * (k + 1))
            await storage.put_record(
                Record(
                    QUALITY,
                    f"{sid}-{k}",
                    {"session_id": sid, "score": value},
                    project,
                    None,
                    cp,
                    cp,
                )
            )
        if rate is not None:
            failed = 100 - int(rate)
            result = {
                "session_id": sid,
                "passed": int(rate),
                "failed": failed,
                "coverage": 70.0 + n % 30,
            }
            cp = at + timedelta(minutes=40)
            await storage.put_record(Record(COLLECTION, f"{sid}-r", result, project, None, cp, cp))


@pytest.mark.parametrize("backend", _params(["duckdb", "postgres"]))
async def test_history_chart_and_handoff_on_a_real_store(backend: str, tmp_path: Path) -> None:
    from tests.pg_support import drop_schemas

    storage = make_storage(backend, tmp_path)
    await storage.initialize()
    try:
        scores, rates = [60, 64, 70, 75, 82], [80.0, None, 90.0, 95.0, 100.0]
        await seed(storage, "shop", scores, rates)
        await seed(storage, "other", [10], [None])
        service = AnalyticsService(storage)
        history = await service.history("shop", None)
        assert [s.last_score for s in history.sessions] == scores
        assert [s.pass_rate for s in history.sessions] == rates
        assert history.direction() == "improving"
        points = chart_points(history.chart())
        assert points["score"] == [float(s) for s in scores]
        assert points["test pass rate"] == [r for r in rates if r is not None]

        since = await service.history("shop", datetime(2026, 11, 3, tzinfo=UTC))
        assert [s.last_score for s in since.sessions] == scores[2:]
        assert since.checkpoints == 6

        trend, svg = await service.handoff_trend("shop", "20261201-100000-abc.md")
        assert trend is not None and svg is not None and trend["chart"] == "20261201-100000-abc.svg"
        markdown = render_handoff(HandoffContent(project="shop", session_id="abc", trend=trend))
        assert (
            "![score and test pass rate over the last sessions](20261201-100000-abc.svg)"
            in markdown
        )
        assert sparkline(scores) in markdown
        at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        path = write_handoff(tmp_path / "handoff", "abc", markdown, at, chart=svg)
        assert path.name == "20261201-100000-abc.md"
        assert chart_points(path.with_suffix(".svg").read_text())["score"] == [
            float(s) for s in scores
        ]
    finally:
        await storage.close()
        await drop_schemas()


async def test_default_answers_stay_compact_on_a_long_history() -> None:
    from session_buddy.adapters.storage.memory import Storage

    storage: Any = Storage(dimension=8)
    await storage.initialize()
    scores = [40 + (n * 7) % 55 for n in range(60)]
    await seed(storage, "long", scores, [float(90 + n % 10) for n in range(60)])
    service = AnalyticsService(storage)
    trend = await service.quality_trend("long", None)
    stats = await service.session_analytics("long", None)
    assert trend["sessions"] == 60 and trend["checkpoints"] == 120
    assert len(trend["points"]) == 15 and len(stats["last_sessions"]) == 5
    assert trend["sparkline"]["score"] == sparkline(scores[-30:])
    assert stats["score"] == {
        "min": min(scores),
        "avg": round(sum(scores) / 60, 1),
        "last": scores[-1],
    }
    for answer in (trend, stats):
        assert len(json.dumps(answer, ensure_ascii=False)) <= 2000


def test_report_cli_in_three_formats(tmp_path: Path) -> None:
    import asyncio

    from session_buddy.adapters.storage.duckdb import Storage

    data = tmp_path / "data"
    store = Storage(data / "memory.duckdb", dimension=384)

    async def fill() -> None:
        await store.initialize()
        await seed(store, "shop", [50, 55, 61], [70.0, 85.0, 100.0])
        await store.close()

    asyncio.run(fill())
    env = {
        **os.environ,
        "SESSION_BUDDY_DATA_DIR": str(data),
        "SESSION_BUDDY_ADAPTERS__STORAGE": "duckdb",
    }
    env["SESSION_BUDDY_STORAGE__PATH"] = str(data / "memory.duckdb")

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*session_buddy_cmd(), "report", "--project", "shop", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )

    md = report("--format", "md", "--output", str(tmp_path / "out" / "shop.md"))
    assert md.returncode == 0, md.stderr
    text = (tmp_path / "out" / "shop.md").read_text()
    assert "](shop.svg)" in text and sparkline([50, 55, 61]) in text
    assert chart_points((tmp_path / "out" / "shop.svg").read_text())["score"] == [50.0, 55.0, 61.0]
    assert "| 2026-11-03 09:00 |" in text and "improving" in text

    html = report("--format", "html")
    assert html.returncode == 0, html.stderr
    assert html.stdout.startswith("<!DOCTYPE html>") and "<svg" in html.stdout
    assert 'data-value="61"' in html.stdout

    js = report("--format", "json", "--since", "2026-11-02")
    assert js.returncode == 0, js.stderr
    parsed = json.loads(js.stdout)
    assert parsed["sessions"] == 2 and parsed["score"]["last"] == 61

    bad = report("--format", "pdf")
    assert bad.returncode != 0


async def test_tests_that_changed_state_and_the_files_changed_in_between(tmp_path: Path) -> None:
    from session_buddy.adapters.storage.memory import Storage
    from session_buddy.core.project import analyze_project
    from session_buddy.core.report import render_markdown
    from session_buddy.core.testresults import TestResultService
    from tests.test_project import commit_all, git

    storage: Any = Storage(dimension=8)
    await storage.initialize()
    repo = scratch_python_repo(tmp_path / "calc", failing=True)
    at = datetime.now(UTC) - timedelta(hours=1)
    data = {"project_path": str(repo), "checkpoints": 3, "last_score": 80}
    await storage.put_record(Record(SESSIONS, "s1", data, "calc", "active", at, at))
    results = TestResultService(storage)

    async def run_and_pick_up() -> str:
        run_pytest(repo, "--junitxml=junit.xml")
        picked = await results.pickup_project(
            analyze_project(repo), session_id="s1", project="calc"
        )
        assert picked is not None and picked["created"]
        return git(repo, "rev-parse", "HEAD")

    first = await run_and_pick_up()  # test_sum_of_twos fails
    test_file = repo / "tests" / "test_calc.py"
    test_file.write_text(test_file.read_text().replace("== 5", "== 4"))
    (repo / "NOTES.md").write_text("fixed the expectation\n")
    commit_all(repo, "fix the sum test")
    second = await run_and_pick_up()  # fixed in a new commit
    (repo / "calc.py").write_text((repo / "calc.py").read_text().replace("a + b", "a - b"))
    await run_and_pick_up()  # broken again, not committed yet

    history = await AnalyticsService(storage).history("calc", None)
    changes = history.test_changes
    assert [(c["went"], c["test"]) for c in changes] == [
        ("broke", "tests.test_calc::test_add"),
        ("broke", "tests.test_calc::test_sum_of_twos"),
        ("fixed", "tests.test_calc::test_sum_of_twos"),
    ]
    fixed = changes[-1]
    assert (fixed["from"], fixed["to"]) == (first[:10], second[:10])
    assert fixed["files"] == ["NOTES.md", "tests/test_calc.py"] and fixed["files_changed"] == 2
    assert "not committed" in changes[0]["note"]
    stats = await AnalyticsService(storage).session_analytics("calc", None)
    assert stats["test_changes"] == 3
    text = render_markdown(history, None)
    assert "## Tests that changed state" in text
    assert (
        "`tests.test_calc::test_sum_of_twos` fixed" in text
        and "NOTES.md, tests/test_calc.py" in text
    )
