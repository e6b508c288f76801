"""Test results: real pytest runs (JUnit XML, pytest's cache, coverage) on scratch repos,
Maven Surefire and Jest reports, hostile XML, and storing each run once on every backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from session_buddy.core.project import analyze_project
from session_buddy.core.quality import compute_quality
from session_buddy.core.testresults import (
    COLLECTION,
    TestResultService,
    latest_run,
    parse_coverage,
)
from tests.test_project import commit_all, git, make_repo
from tests.test_storage import _params, make_storage

HAS_COV = importlib.util.find_spec("pytest_cov") is not None

SUREFIRE_PARSER = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd"
  version="3.0" name="com.acme.ParserTest" time="0.412" tests="3" errors="0" skipped="1" failures="1">
  <properties>
    <property name="java.version" value="21.0.2"/>
    <property name="surefire.test.class.path" value="/work/target/test-classes"/>
  </properties>
  <testcase name="parsesNumbers" classname="com.acme.ParserTest" time="0.011"/>
  <testcase name="parsesEmpty" classname="com.acme.ParserTest" time="0.390">
    <failure message="expected: &lt;[]&gt; but was: &lt;null&gt;" type="org.opentest4j.AssertionFailedError"><![CDATA[org.opentest4j.AssertionFailedError: expected: <[]> but was: <null>
	at com.acme.ParserTest.parsesEmpty(ParserTest.java:27)
]]></failure>
    <system-out><![CDATA[parsing ""]]></system-out>
  </testcase>
  <testcase name="parsesUnicode" classname="com.acme.ParserTest" time="0">
    <skipped message="not yet"/>
  </testcase>
</testsuite>
"""
SUREFIRE_LEXER = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.acme.LexerTest" time="0.05" tests="2" errors="1" skipped="0" failures="0">
  <testcase name="lexesIdentifiers" classname="com.acme.LexerTest" time="0.01"/>
  <testcase name="lexesStrings" classname="com.acme.LexerTest" time="0.04">
    <error message="Index 3 out of bounds" type="java.lang.ArrayIndexOutOfBoundsException">java.lang.ArrayIndexOutOfBoundsException: Index 3 out of bounds for length 3</error>
  </testcase>
</testsuite>
"""
# jest-junit's default output (./junit.xml)
JEST = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="4" failures="1" errors="0" time="1.532">
  <testsuite name="cart" errors="0" failures="1" skipped="0" timestamp="2026-11-30T10:12:01" time="1.2" tests="3">
    <testcase classname="cart adds items" name="cart adds items" time="0.004">
    </testcase>
    <testcase classname="cart applies a discount &gt; 10%" name="cart applies a discount &gt; 10%" time="0.003">
      <failure><![CDATA[Error: expect(received).toBe(expected) // Object.is equality

Expected: 90
Received: 100
    at Object.<anonymous> (/app/src/cart.test.js:14:22)]]></failure>
    </testcase>
    <testcase classname="cart empties" name="cart empties" time="0.001">
    </testcase>
  </testsuite>
  <testsuite name="price" errors="0" failures="0" skipped="0" timestamp="2026-11-30T10:12:02" time="0.3" tests="1">
    <testcase classname="price formats euros" name="price formats euros" time="0.002">
    </testcase>
  </testsuite>
</testsuites>
"""
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<testsuite name="evil" tests="1" failures="0"><testcase name="&lol3;"/></testsuite>
"""


def scratch_python_repo(path: Path, *, failing: bool) -> Path:
    repo = make_repo(path)
    (repo / "calc.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef div(a, b):\n    if b == 0:\n"
        "        raise ZeroDivisionError('b')\n    return a / b\n"
    )
    (repo / "tests").mkdir()
    body = "assert add(2, 2) == 5" if failing else "assert add(2, 2) == 4"
    (repo / "tests" / "test_calc.py").write_text(
        "import pytest\nfrom calc import add, div\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
        f"def test_sum_of_twos():\n    {body}\n\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n\n\n"
        "def test_div():\n    assert div(4, 2) == 2\n"
    )
    (repo / ".gitignore").write_text(".pytest_cache/\njunit.xml\ncoverage.*\n.coverage\n")
    commit_all(repo, "calc")
    return repo


def run_pytest(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["PYTHONPATH"] = str(repo)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", f"--rootdir={repo}", *extra],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_real_pytest_run_with_junit_and_coverage(tmp_path: Path) -> None:
    repo = scratch_python_repo(tmp_path / "calc", failing=True)
    cov = ["--cov=calc", "--cov-report=xml", "--cov-report=json"] if HAS_COV else []
    done = run_pytest(repo, "--junitxml=junit.xml", *cov)
    assert done.returncode == 1, done.stdout + done.stderr  # one test fails
    run = latest_run(repo)
    assert run is not None
    assert run.source == "junit.xml" and run.runner == "pytest"
    assert (run.total, run.failures, run.skipped, run.succeeded) == (4, 1, 1, 2)
    assert run.failing == ["tests.test_calc::test_sum_of_twos"]
    assert run.duration_ms is not None and run.duration_ms >= 0
    assert run.content_hash and len(run.content_hash) == 64
    if HAS_COV:
        assert run.coverage is not None and 50 < run.coverage < 100  # the zero branch never runs
        assert run.coverage_source in ("coverage.xml", "coverage.json")
        data = json.loads((repo / "coverage.json").read_text())
        assert abs(run.coverage - data["totals"]["percent_covered"]) < 0.6

    component = next(
        c for c in compute_quality(analyze_project(repo), None).components if c.key == "test_result"
    )
    assert component.points == 0 and component.status == "missing"
    assert component.evidence.startswith("1 of 4 failed (1 skipped, junit.xml by pytest")
    assert "tests.test_calc::test_sum_of_twos" in component.evidence
    assert "tests.test_calc::test_sum_of_twos" in component.recommendation
    if HAS_COV:
        assert "coverage" in component.evidence


def test_pytest_cache_alone_gives_the_failing_ids(tmp_path: Path) -> None:
    repo = scratch_python_repo(tmp_path / "calc", failing=True)
    run_pytest(repo)
    run = latest_run(repo)
    assert run is not None and run.source == ".pytest_cache" and run.runner == "pytest"
    assert run.failures == 1 and run.failing == ["tests/test_calc.py::test_sum_of_twos"]
    # fixed and re-run: the cache says it passes now
    (repo / "tests" / "test_calc.py").write_text(
        (repo / "tests" / "test_calc.py").read_text().replace("== 5", "== 4")
    )
    run_pytest(repo)
    again = latest_run(repo)
    assert again is not None and again.passed and again.failures == 0


def test_maven_surefire_reports_of_one_folder_are_one_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "acme")
    reports = repo / "target" / "surefire-reports"
    reports.mkdir(parents=True)
    (reports / "TEST-com.acme.ParserTest.xml").write_text(SUREFIRE_PARSER)
    (reports / "TEST-com.acme.LexerTest.xml").write_text(SUREFIRE_LEXER)
    (reports / "com.acme.ParserTest.txt").write_text("Tests run: 3, Failures: 1\n")
    run = latest_run(repo)
    assert run is not None
    assert run.source == "target/surefire-reports/" and run.runner == "maven"
    assert (run.total, run.failures, run.errors, run.skipped) == (5, 2, 1, 1)
    assert sorted(run.failing) == [
        "com.acme.LexerTest::lexesStrings",
        "com.acme.ParserTest::parsesEmpty",
    ]
    assert run.duration_ms == pytest.approx(462.0)


def test_jest_junit_report_and_lcov_coverage(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop")
    (repo / "junit.xml").write_text(JEST)
    (repo / "coverage").mkdir()
    (repo / "coverage" / "lcov.info").write_text(
        "TN:\nSF:src/cart.js\nLF:40\nLH:30\nend_of_record\nSF:src/price.js\nLF:10\nLH:10\n"
        "end_of_record\n"
    )
    run = latest_run(repo)
    assert run is not None and run.runner == "jest"
    assert (run.total, run.failures, run.skipped) == (4, 1, 0)
    assert run.failing == ["cart applies a discount > 10%::cart applies a discount > 10%"]
    assert run.coverage == 80.0 and run.coverage_source == "coverage/lcov.info"
    (repo / "coverage" / "coverage-summary.json").write_text(
        json.dumps({"total": {"lines": {"total": 50, "covered": 41, "pct": 82}}})
    )
    found = parse_coverage(repo)  # the newest report wins
    assert found is not None and found[:2] == (82.0, "coverage/coverage-summary.json")


def test_hostile_xml_is_refused_not_expanded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "evil")
    (repo / "junit.xml").write_text(BILLION_LAUGHS)
    assert latest_run(repo) is None
    (repo / "junit.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<testsuite name="x" tests="1"><testcase name="&x;"/></testsuite>'
    )
    assert latest_run(repo) is None
    (repo / "junit.xml").write_text("<html><body>not a report</body></html>")
    (repo / "report.xml").write_text("<testsuite tests='2' failures='0'><testcase name='a'/>")
    run = latest_run(repo)  # a truncated report still counts; an html page does not
    assert run is not None and run.source == "report.xml" and run.total == 2


@pytest.mark.parametrize("backend", _params(["memory", "duckdb", "postgres"]))
async def test_a_picked_up_run_is_stored_once_with_session_and_commit(
    backend: str, tmp_path: Path
) -> None:
    from tests.pg_support import drop_schemas

    repo = make_repo(tmp_path / "shop")
    (repo / "README.md").write_text("# shop\n")
    commit_all(repo)
    (repo / "junit.xml").write_text(JEST)
    storage = make_storage(backend, tmp_path)
    await storage.initialize()
    try:
        service = TestResultService(storage)
        info = analyze_project(repo)
        first = await service.pickup_project(info, session_id="s1", project="shop")
        second = await service.pickup_project(
            analyze_project(repo), session_id="s2", project="shop"
        )
        assert first is not None and second is not None
        assert first["created"] and not second["created"] and first["id"] == second["id"]
        assert first["commit"] == git(repo, "rev-parse", "HEAD")
        rows = await storage.list_records(COLLECTION, project="shop")
        assert len(rows) == 1 and rows[0].data["session_id"] == "s1"
        assert rows[0].status == "failed" and rows[0].data["failing"]
        # a new run (the report rewritten) is a second record
        (repo / "junit.xml").write_text(
            JEST.replace('failures="1"', 'failures="0"', 2)
            .replace("<failure>", "<system-out>")
            .replace("</failure>", "</system-out>")
        )
        os.utime(repo / "junit.xml", (2_000_000_000, 2_000_000_000))
        third = await service.pickup_project(analyze_project(repo), session_id="s2", project="shop")
        assert third is not None and third["created"] and third["result"] == "passed"
        assert len(await storage.list_records(COLLECTION, project="shop")) == 2
    finally:
        await storage.close()
        await drop_schemas()


async def test_store_validates_and_links(tmp_path: Path) -> None:
    from session_buddy.adapters.storage.memory import Storage
    from session_buddy.errors import ValidationError

    storage: Any = Storage(dimension=8)
    await storage.initialize()
    service = TestResultService(storage)
    with pytest.raises(ValidationError, match="percentage"):
        await service.store(
            session_id="s", project="p", test_file="tests/", result="passed", coverage=120
        )
    with pytest.raises(ValidationError, match="result must be"):
        await service.store(session_id="s", project="p", test_file="tests/", result="green")
    stored = await service.store(
        session_id="s",
        project="p",
        test_file="tests/test_api.py",
        result="failed",
        passed=8,
        failing=["tests/test_api.py::test_login", "tests/test_api.py::test_logout"],
        coverage=71.5,
        duration_ms=1234,
    )
    assert stored["created"] and stored["failed"] == 2 and stored["total"] == 10
    assert stored["commit"] is None and stored["coverage"] == 71.5
