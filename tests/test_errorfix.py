"""Error -> fix memory and patterns across sessions: real commands (a Python traceback, real
pytest runs, real ruff output) in Claude Code transcripts of the fixture format, imported and
searched through a real MCP client on DuckDB with the real ONNX model; test runs picked up at
checkpoints; the recall through the real hook command; both SQL backends for the records."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastmcp import Client

from session_buddy import di
from session_buddy.core.errorfix import COLLECTION, ErrorMemory, query_signatures
from session_buddy.core.failures import FixEvent, FixTracker, program_of, recognise
from session_buddy.core.recurring import cluster
from tests.claude_fixtures import Transcript, insight, project_dir
from tests.mcp_peers import bridge_and_service, run_hook
from tests.test_hook_context import context_of
from tests.test_project import commit_all
from tests.test_session_lifecycle import call
from tests.test_storage import _params, make_storage
from tests.test_testresults import run_pytest, scratch_python_repo

BUGGY_APP = 'import json\n\ncfg = json.loads(\'{"name": "calc"}\')\nprint("user", cfg["user_id"])\n'
FIXED_APP = (
    'import json\n\ncfg = json.loads(\'{"name": "calc"}\')\n'
    'print("user", cfg.get("user_id", "anonymous"))\n'
)
KEY_ERROR = "KeyError: 'user_id'"
WHY = "The config has no user_id key: read it with cfg.get and an anonymous default."
TOPIC_A = (
    "Tests import the package from the repository root, so PYTHONPATH must include the "
    "root before pytest runs"
)
TOPIC_B = (
    "The test suite only finds the package when the repo root is on PYTHONPATH; set it "
    "before running pytest"
)
UNRELATED = "The invoice PDF template uses a fixed A4 page size and ignores the locale"


@pytest.fixture(autouse=True)
def _reset(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    yield
    di.reset()


def calc_repo(tmp_path: Path) -> Path:
    repo = scratch_python_repo(tmp_path / "calc", failing=True)
    (repo / "app.py").write_text(BUGGY_APP)
    commit_all(repo, "app")
    return repo


def run_app(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py"], cwd=repo, capture_output=True, text=True, timeout=60
    )


def traceback_round(t: Transcript, repo: Path) -> None:
    """The app crashes with a real traceback, the agent edits app.py, the app runs."""
    (repo / "app.py").write_text(BUGGY_APP)
    (run,) = t.message("Let me run the app.", ("Bash", {"command": "python app.py"}))
    crashed = run_app(repo)
    assert crashed.returncode == 1 and KEY_ERROR in crashed.stderr
    t.tool_result(run, f"Exit code 1\n{crashed.stderr}", is_error=True)
    edit_args = {"file_path": str(repo / "app.py"), "old_string": 'cfg["user_id"]'}
    (edit,) = t.message(WHY, ("Edit", edit_args))
    (repo / "app.py").write_text(FIXED_APP)
    t.tool_result(edit, f"The file {repo / 'app.py'} has been updated.")
    (again,) = t.message("Run it again.", ("Bash", {"command": "python app.py"}))
    ran = run_app(repo)
    assert ran.returncode == 0
    t.tool_result(again, ran.stdout)


def pytest_round(t: Transcript, repo: Path) -> None:
    """A real failing pytest run, the test corrected, a real passing run."""
    (run,) = t.message("Now the tests.", ("Bash", {"command": "uv run pytest -q"}))
    failed = run_pytest(repo)
    assert failed.returncode == 1, failed.stdout
    t.tool_result(run, f"Exit code 1\n{failed.stdout}", is_error=True)
    test_file = repo / "tests" / "test_calc.py"
    (edit,) = t.message(
        "add(2, 2) is 4, the expectation of 5 is wrong: correct the test.",
        ("Edit", {"file_path": str(test_file), "old_string": "== 5"}),
    )
    test_file.write_text(test_file.read_text().replace("== 5", "== 4"))
    t.tool_result(edit, f"The file {test_file} has been updated.")
    (again,) = t.message("And again.", ("Bash", {"command": "uv run pytest -q"}))
    passed = run_pytest(repo)
    assert passed.returncode == 0, passed.stdout
    t.tool_result(again, passed.stdout)


def transcript(projects: Path, repo: Path, session: str, start: datetime, *rounds: Any) -> Path:
    t = Transcript(session_id=session, cwd=str(repo), start=start)
    t.user("app.py crashes and the tests fail, please fix it")
    for step in rounds:
        if callable(step):
            step(t, repo)
        else:
            t.assistant(insight(step))
    return t.write(project_dir(projects, str(repo)) / f"{session}.jsonl")


def test_failures_are_recognised_in_real_tool_output(tmp_path: Path) -> None:
    repo = calc_repo(tmp_path)
    crash = run_app(repo).stderr
    assert [(f.signature, f.kind) for f in recognise(crash)] == [(KEY_ERROR, "exception")]
    tests = recognise(run_pytest(repo).stdout)  # the assertion lines are not failures of their own
    assert [f.signature for f in tests] == ["test tests/test_calc.py::test_sum_of_twos"]
    (repo / "lint.py").write_text("import os\n\n\nx = 1\n" + "y = '" + "a" * 100 + "'\n")
    ruff = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "--isolated",
         "--select", "E501,F401", "--output-format", "full", "lint.py"],
        cwd=repo, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert {f.signature for f in recognise(ruff.stdout)} == {"E501", "F401"}, ruff.stdout
    samples = {
        "src/x.py:12: error: Item has no attribute 'bar'  [attr-defined]": "mypy [attr-defined]",
        "src/cart.ts(14,22): error TS2345: Argument of type 'string' is not...": "TS2345",
        "error[E0308]: mismatched types": "E0308",
        "  12:5  error  'x' is defined but never used  no-unused-vars": "eslint no-unused-vars",
        "OSError: [Errno 2] No such file: '/home/a/b/c.txt' at 0x7f3a": (
            "OSError: [Errno <n>] No such file: '<path>' at <hex>"
        ),
    }
    for line, signature in samples.items():
        assert [f.signature for f in recognise(line)] == [signature], line
    assert recognise("All checks passed!\n3 passed in 0.02s") == []
    assert program_of("cd /x && uv run pytest -q") == "pytest"
    assert program_of("npx tsc --noEmit") == "tsc"
    assert "test tests.test_calc::test_y" in query_signatures("FAILED tests/test_calc.py::test_y")


def test_a_failure_that_goes_away_without_an_edit_is_no_fix() -> None:
    tracker = FixTracker()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    run = {"tool": "Bash", "tool_call": "[tool_use Bash] command=python app.py"}
    seen = tracker.feed("tool", KEY_ERROR, {**run, "is_error": True}, session_id="s",
                        project="p", at=at)  # fmt: skip
    assert [e.event for e in seen] == ["seen"]
    other = {"tool": "Bash", "tool_call": "[tool_use Bash] command=ls"}
    assert tracker.feed("tool", "app.py", other, session_id="s", project="p", at=at) == []
    assert tracker.open, "another program's output says nothing about it"
    # the state carries over to the next import of the transcript
    tracker = FixTracker(json.loads(json.dumps(tracker.state())))
    assert tracker.feed("tool", "user anonymous", run, session_id="s", project="p", at=at) == []
    assert not tracker.open and tracker.state() is None


async def test_error_fix_memory_and_patterns_through_mcp(tmp_path: Path) -> None:
    from session_buddy.server.app import create_server
    from session_buddy.settings import load_settings

    repo = calc_repo(tmp_path)
    projects = tmp_path / "claude" / "projects"
    settings = load_settings(
        mode="lite",
        data_dir=tmp_path / "data",
        adapters={"embeddings": "onnx", "storage": "duckdb"},
    ).settings
    start = datetime.now(UTC) - timedelta(hours=3)
    async with Client(create_server(settings)) as client:
        await call(client, "start", working_directory=str(repo))
        run_pytest(repo, "--junitxml=junit.xml")  # a failing run, picked up by the checkpoint
        await call(client, "checkpoint", name="red")

        transcript(projects, repo, "sess-a", start, traceback_round, pytest_round, TOPIC_A)
        imported = await call(client, "index_transcripts", path=str(projects))
        assert imported["errors_fixed"] == 2 and imported["insights"] == 1, imported

        found = await call(client, "search_errors", query=f"python app.py crashed: {KEY_ERROR}")
        assert next(iter(found)) == "fixes", "the pairs come first"
        fix = found["fixes"][0]
        assert fix["error"] == KEY_ERROR and fix["files"] == ["app.py"], fix
        assert fix["fixed_by"] == WHY and fix["session_id"] == "sess-a"
        assert fix["run"] == "python app.py" and fix["match"] == 1.0 and fix["project"] == "calc"
        assert any(KEY_ERROR in h["snippet"] for h in found["hits"]), "then the mentions"
        assert len(json.dumps(found["fixes"])) < 1500

        # the fix is committed; the passing run's checkpoint links the JUnit ids to git's diff
        commit_all(repo, "fix")
        run_pytest(repo, "--junitxml=junit.xml")
        await call(client, "checkpoint", name="green")
        tests = await call(
            client, "search_errors", query="FAILED tests/test_calc.py::test_sum_of_twos"
        )
        by_error = {f["error"]: f for f in tests["fixes"]}
        from_transcript = by_error["test tests/test_calc.py::test_sum_of_twos"]
        assert from_transcript["files"] == ["tests/test_calc.py"]
        assert from_transcript["fixed_by"].startswith("add(2, 2) is 4")
        from_runs = by_error["test tests.test_calc::test_sum_of_twos"]
        assert set(from_runs["files"]) == {"app.py", "tests/test_calc.py"}, from_runs
        # runs the agent reports: failing, then passing (nothing changed that anyone saw)
        for failing in (["tests/test_calc.py::test_div"], []):
            await call(client, "store_test_result", test_file="pytest tests/",
                       result="failed" if failing else "passed", passed=3,
                       failing_tests=failing)  # fmt: skip
        (reported,) = (await call(client, "search_errors", query="test_calc.py::test_div"))["fixes"]
        assert reported["error"] == "test tests/test_calc.py::test_div" and reported["files"] == []
        assert reported["fixed_by"] == "not known (a later run of pytest tests/ passed)"
        nothing = await call(client, "search_errors", query="ZeroDivisionError: division by zero")
        assert nothing["fixes"] == []

        # the same error in a second session, with insights on the same topic and another
        transcript(projects, repo, "sess-b", start + timedelta(hours=1), traceback_round,
                   TOPIC_B, UNRELATED)  # fmt: skip
        again = await call(client, "index_transcripts", path=str(projects))
        assert again["errors_fixed"] == 1 and again["insights"] == 2, again
        patterns = await call(client, "patterns", project="calc")
        assert len(json.dumps(patterns)) < 3000
        recurring = patterns["recurring_errors"][0]
        assert recurring["error"] == KEY_ERROR and recurring["sessions"] == 2, recurring
        assert recurring["fixed"] == 2 and recurring["last_fix"]["files"] == ["app.py"]
        assert patterns["breaking_files"][0]["file"] == "app.py"
        # sess-a, sess-b, and the session-buddy session whose runs' commits changed it (a
        # client without Claude Code's session id: its runs are not tied to sess-a)
        assert patterns["breaking_files"][0]["sessions"] == 3
        (topic,) = patterns["topics"]
        assert topic["items"] == 2 and topic["sessions"] == 2 and "PYTHONPATH" in topic["topic"]
        assert "invoice" not in json.dumps(patterns["topics"])
        one = await call(client, "patterns", project="calc", limit=1)
        assert len(one["recurring_errors"]) <= 1 and one["totals"] == patterns["totals"]
        await call(client, "end")

    # the report (what `session-buddy report` asks the service for), in Markdown, JSON, HTML
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.server.cli_routes import report_job

    settings = load_settings(
        mode="lite",
        data_dir=tmp_path / "data",
        adapters={"embeddings": "none", "storage": "duckdb"},
    ).settings
    out = tmp_path / "out" / "calc.md"
    out.parent.mkdir()
    di.configure(settings)
    storage = di.get(StorageBase)
    await storage.initialize()
    try:

        async def report(fmt: str) -> str:
            answer = await report_job(
                {"project": "calc", "format": fmt, "chart_link": "calc.svg"}, lambda _: None
            )
            return str(answer["text"])

        out.write_text(await report("md"))
        as_json = json.loads(await report("json"))
        html = await report("html")
    finally:
        await storage.close()
    assert as_json["patterns"]["recurring_errors"][0]["error"] == KEY_ERROR
    assert "<h2>Patterns across sessions</h2>" in html and "KeyError: &#x27;user_id&#x27;" in html
    text = out.read_text()
    section = text.split("## Patterns across sessions", 1)[1].split("\n## ", 1)[0]
    assert f"`{KEY_ERROR}`: 2 sessions, fixed 2x" in section and WHY in section
    assert "`app.py`: 3 sessions" in section and "PYTHONPATH" in section


def test_a_prompt_with_a_known_error_gets_the_fix_from_the_hook(tmp_path: Path) -> None:
    repo = calc_repo(tmp_path)
    projects = tmp_path / "claude" / "projects"
    transcript(projects, repo, "sess-a", datetime.now(UTC) - timedelta(hours=1), traceback_round)
    with bridge_and_service(tmp_path) as (peer, env):
        imported = peer.call("index_transcripts", {"path": str(projects)})
        assert not imported.get("isError"), imported
        pasted = {
            "cwd": str(repo),
            "session_id": "later",
            "prompt": f'  File "app.py", line 4, in <module>\n{KEY_ERROR}\nit crashes again',
        }
        out, err, _ = run_hook(env, "UserPromptSubmit", pasted)
        recalled = context_of(out, "UserPromptSubmit")
        assert f"[fixed before] {KEY_ERROR} -> {WHY}" in recalled, (recalled, err)
        assert "files: app.py; session sess-a" in recalled and len(recalled) < 600
        once, _, _ = run_hook(env, "UserPromptSubmit", pasted)
        assert once == "", "a fix is injected once per session"
        plain = {**pasted, "session_id": "other", "prompt": "rename the calc module"}
        nothing, _, _ = run_hook(env, "UserPromptSubmit", plain)
        assert nothing == ""


@pytest.mark.parametrize("backend", _params(["duckdb", "postgres"]))
async def test_error_records_and_vectors_on_each_backend(backend: str, tmp_path: Path) -> None:
    from tests.pg_support import drop_schemas

    storage = make_storage(backend, tmp_path)
    await storage.initialize()
    try:
        memory = ErrorMemory(storage)
        at = "2026-11-30T10:00:00+00:00"
        seen = FixEvent("seen", "TS2345", "type", "a.ts(1,2): error TS2345: x", "s1", "web", at)
        fixed = FixEvent(
            "fixed", "TS2345", "type", seen.sample, "s1", "web", at, command="npx tsc",
            fixed_at="2026-11-30T10:05:00+00:00", files=["src/a.ts"], description="cast it",
        )  # fmt: skip
        assert await memory.record([seen, seen]) == 0  # the same occurrence once
        assert await memory.record([fixed]) == 1
        (record,) = await storage.list_records(COLLECTION, project="web")
        assert record.status == "fixed" and record.data["occurrences"] == 1
        assert record.data["files"] == ["src/a.ts"] and record.created_at.isoformat() == at
        found = await memory.search("error TS2345 in the build", projects=["web"])
        assert [(f["error"], f["files"], f["run"]) for f in found] == [
            ("TS2345", ["src/a.ts"], "npx tsc")
        ]
        assert await memory.search("TS2345", projects=["other"]) == []
        assert [r.id for r in await memory.recall("tsc says TS2345 again", ["web"])] == [record.id]

        from session_buddy.adapters.storage._base import NewItem

        vec = np.zeros(storage.dimension, dtype=np.float32)
        vec[0] = 1.0
        added = await storage.add_items(
            [NewItem("insight", "with a vector", embedding=vec), NewItem("insight", "none")]
        )
        vectors = await storage.get_vectors([a.id for a in added] + ["missing"])
        assert list(vectors) == [added[0].id] and vectors[added[0].id][0] == 1.0
    finally:
        await storage.close()
        if backend == "postgres":
            await drop_schemas()


def test_average_linkage_does_not_chain() -> None:
    # a-b and b-c are close, a-c is not: single linkage would chain them, average does not
    a, b, c = np.array([1.0, 0.0]), np.array([0.8, 0.6]), np.array([0.28, 0.96])
    rows = np.stack([a, b, c]).astype(np.float32)
    assert cluster(rows, threshold=0.75) == [[0, 1], [2]]


def test_clusters_are_those_of_plain_average_linkage() -> None:
    """The nearest-neighbour bookkeeping gives the clusters of the textbook loop (merge the
    closest pair of the whole matrix while it is close enough)."""

    def reference(x: np.ndarray, threshold: float) -> list[list[int]]:
        n = len(x)
        sims = (x @ x.T).astype(np.float64)
        np.fill_diagonal(sims, -np.inf)
        sizes, members = np.ones(n), {i: [i] for i in range(n)}
        while len(members) > 1:
            a, b = divmod(int(np.argmax(sims)), n)
            if sims[a, b] < threshold:
                break
            merged = (sizes[a] * sims[a] + sizes[b] * sims[b]) / (sizes[a] + sizes[b])
            sims[a], sims[:, a] = merged, merged
            sims[b], sims[:, b] = -np.inf, -np.inf
            sims[a, a] = -np.inf
            sizes[a] += sizes[b]
            members[a] += members.pop(b)
        return sorted(sorted(m) for m in members.values())

    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(40, 8))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        for threshold in (0.2, 0.4, 0.6):
            assert sorted(sorted(m) for m in cluster(x, threshold)) == reference(x, threshold)


async def test_error_fixes_belong_to_whoever_recorded_them(tmp_path: Path) -> None:
    """On a shared store an error and its fix are their recorder's, as items are: another
    user's search, recall and patterns do not show them; the install's own user keeps the
    records written before authors were kept (no author)."""
    from session_buddy.adapters.storage._base import Access
    from session_buddy.core.access import own_authors
    from session_buddy.core.recurring import find_patterns
    from session_buddy.core.users import acting_as
    from session_buddy.settings import load_settings

    settings = load_settings(mode="lite", data_dir=tmp_path / "data", user="alice").settings
    storage = make_storage("duckdb", tmp_path)
    await storage.initialize()
    try:
        at = "2026-11-30T10:00:00+00:00"

        def fix(signature: str, session: str) -> list[FixEvent]:
            sample = f"a.ts(1,2): error {signature}: x"
            return [
                FixEvent("seen", signature, "type", sample, session, "web", at),
                FixEvent("seen", signature, "type", sample, "2" + session, "web", at),
                FixEvent(
                    "fixed",
                    signature,
                    "type",
                    sample,
                    session,
                    "web",
                    at,
                    command="npx tsc",
                    fixed_at=at,
                    files=["src/a.ts"],
                ),
            ]

        await ErrorMemory(storage).record(fix("TS1111", "s0"))  # before authors: none
        with acting_as("bob"):
            await ErrorMemory(storage, settings).record(fix("TS2345", "s1"))
        mine = ErrorMemory(storage, settings)

        async def seen(memory: ErrorMemory) -> tuple[set[str], ...]:
            found = {f["error"] for f in await memory.search("error TS2345 TS1111", limit=5)}
            recalled = await memory.recall("TS2345 and TS1111 again", None, limit=5)
            records = {str(r.data["signature"]) for r in await memory.records("web", None)}
            return found, {str(r.data["signature"]) for r in recalled}, records

        assert await seen(mine) == ({"TS1111"},) * 3
        with acting_as("bob"):
            assert await seen(mine) == ({"TS2345"},) * 3
        every = await storage.list_records(COLLECTION)
        assert sorted(str(r.data.get("author")) for r in every) == ["None", "None", "bob", "bob"]
        alice = Access(own_authors("alice", settings))
        patterns = await find_patterns(storage, "web", None, access=alice)
        assert patterns["totals"]["errors_recorded"] == 2  # TS1111's two sessions, not bob's
    finally:
        await storage.close()


async def test_a_teammates_many_fixes_do_not_hide_the_callers_own(tmp_path: Path) -> None:
    """Searches read the newest SCAN fixed records and then kept the caller's: on a shared
    store a teammate's SCAN newer fixes left none of alice's own, so search_errors, the
    prompt hook's recall and patterns lost it. They read on until they have the caller's."""
    from session_buddy.core.errorfix import SCAN
    from session_buddy.core.users import acting_as
    from session_buddy.settings import load_settings

    settings = load_settings(mode="lite", data_dir=tmp_path / "data", user="alice").settings
    storage = make_storage("duckdb", tmp_path)
    await storage.initialize()
    try:

        def fixed(signature: str, session: str, at: str = "2026-11-30T10:00:00+00:00") -> FixEvent:
            sample = f"a.ts(1,2): error {signature}: x"
            return FixEvent(
                "fixed", signature, "type", sample, session, "web", at,
                command="npx tsc", fixed_at=at, files=["src/a.ts"],
            )  # fmt: skip

        memory = ErrorMemory(storage, settings)
        await memory.record([fixed("TS1111", "mine", "2026-11-29T10:00:00+00:00")])  # older
        with acting_as("bob"):
            await memory.record([fixed(f"TS{20000 + n}", f"b{n}") for n in range(SCAN)])
        found = await memory.search("error TS1111", limit=5)
        assert [f["error"] for f in found] == ["TS1111"]
        recalled = await memory.recall("TS1111 is back", None)
        assert [r.data["signature"] for r in recalled] == ["TS1111"]
        assert [r.data["signature"] for r in await memory.records("web", None, limit=SCAN)] == [
            "TS1111"
        ]
    finally:
        await storage.close()


async def test_a_teammates_many_records_do_not_hide_the_callers_own_patterns(
    tmp_path: Path,
) -> None:
    """``patterns`` read the newest 5000 error records of everyone and then kept the
    caller's: a teammate's 5000 newer records left none of alice's recurring error. Memory
    backend (the rule is ErrorMemory's; 5000 DuckDB record writes take a minute)."""
    from session_buddy.adapters.storage._base import Access
    from session_buddy.core.access import own_authors
    from session_buddy.core.errorfix import merge
    from session_buddy.core.recurring import find_patterns
    from session_buddy.settings import load_settings

    settings = load_settings(mode="lite", data_dir=tmp_path / "data", user="alice").settings
    storage = make_storage("memory", tmp_path)
    await storage.initialize()
    try:

        def seen(signature: str, session: str, at: str) -> FixEvent:
            return FixEvent("seen", signature, "type", f"a.ts(1,2): error {signature}: x",
                            session, "web", at)  # fmt: skip

        old = "2026-11-29T10:00:00+00:00"
        for session in ("s1", "s2"):  # alice's error, in two sessions: recurring
            await storage.put_record(merge(None, seen("TS1111", session, old), "t", None, "alice"))
        new = "2026-11-30T10:00:00+00:00"
        for n in range(5000):
            await storage.put_record(
                merge(None, seen(f"TS{20000 + n}", f"b{n}", new), "t", None, "bob")
            )
        alice = Access(own_authors("alice", settings))
        patterns = await find_patterns(storage, "web", None, access=alice)
        assert patterns["totals"]["errors_recorded"] == 2
        assert [e["error"] for e in patterns["recurring_errors"]][:1] == ["TS1111"]
    finally:
        await storage.close()
