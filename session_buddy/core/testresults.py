"""Test results: what the project's runners leave behind, parsed, and stored once.

**Parsing** (synchronous, standard library plus ``defusedxml``; the project analysis calls
:func:`latest_run` so the quality score's test component has evidence):

* JUnit XML of pytest (``--junitxml``), Maven Surefire/Failsafe and Gradle (one
  ``TEST-*.xml`` per class: the files of one folder are one run), Jest/Vitest junit reporters
  and gotestsum (``--junitfile``), found at the usual places (:data:`JUNIT_PATTERNS`);
* pytest's cache (``.pytest_cache/v/cache/nodeids`` and ``lastfailed``);
* coverage: Cobertura ``coverage.xml``, coverage.py's ``coverage.json``, istanbul's
  ``coverage-summary.json`` and lcov (``lcov.info``).

The newest run wins; a JUnit report written within :data:`SAME_RUN_S` of pytest's cache is
preferred to it (it says more). XML is parsed with ``defusedxml`` (no entity expansion, no
external entities: a report is a file anybody could have written) and streamed, so a 5 MB
report costs tens of milliseconds; a parsed run is remembered by path, size and time.

**Storing** (:class:`TestResultService`): one record per run in the ``test_results``
collection, its id derived from the report's content hash and time, so the same report
picked up at every checkpoint is stored once. Each record names the session, the project
and the commit (``HEAD`` when it was picked up).

==================== =============================== ======== ==============================
collection           id                              project  data
==================== =============================== ======== ==============================
test_results         sha256(content hash, time)[:32] project  session_id, commit, source,
                                                              runner, total, passed, failed,
                                                              skipped, errors, duration_ms,
                                                              coverage, failing, recorded_at
==================== =============================== ======== ==============================

No MCP in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

# defusedxml: the well-kept drop-in for parsing untrusted XML (no entity expansion, no
# external entities); small and standard-library based, so the project analysis stays light.
from defusedxml import ElementTree as SafeET

from session_buddy.errors import ValidationError

if TYPE_CHECKING:  # storage types only: this module is imported by the light project analysis
    from session_buddy.adapters.storage._base import Record, StorageBase
    from session_buddy.core.project import ProjectInfo

log = logging.getLogger(__name__)

COLLECTION = "test_results"
#: where runners write JUnit XML (relative to the project root)
JUNIT_PATTERNS = (
    "junit*.xml",
    "*junit*.xml",
    "TEST-*.xml",
    "test-results*.xml",
    "test-report*.xml",
    "report.xml",
    "test-results/**/*.xml",
    "test-reports/**/*.xml",
    "reports/**/*.xml",
    "target/surefire-reports/*.xml",
    "target/failsafe-reports/*.xml",
    "build/test-results/**/*.xml",
)
#: coverage reports: (pattern, format)
COVERAGE_PATTERNS = (
    ("coverage.xml", "cobertura"),
    ("coverage/cobertura-coverage.xml", "cobertura"),
    ("target/site/cobertura/coverage.xml", "cobertura"),
    ("coverage.json", "coverage.py"),
    ("coverage/coverage-summary.json", "istanbul"),
    ("lcov.info", "lcov"),
    ("coverage/lcov.info", "lcov"),
)
#: a JUnit report this close to pytest's cache is the same run
SAME_RUN_S = 120.0
MAX_REPORT_BYTES = 50 * 1024 * 1024
#: failing test ids kept per run
MAX_FAILING = 50
RESULTS = ("passed", "failed", "error", "skipped")
Result = Literal["passed", "failed", "error", "skipped"]


@dataclass
class TestRun:
    """One run of a test suite (from a report, pytest's cache, or ``store_test_result``)."""

    __test__ = False  # not a pytest test class

    source: str  # the report (relative to the project), ".pytest_cache" or the caller's name
    passed: bool  # nothing failed
    failures: int  # failed + errored tests
    total: int | None
    recorded_at: float | None  # unix time of the run
    skipped: int = 0
    errors: int = 0  # of the failures, those that errored
    duration_ms: float | None = None
    failing: list[str] = field(default_factory=list)  # ids of failing tests (capped)
    runner: str | None = None  # pytest, maven, gradle, jest, vitest, gotestsum, junit...
    coverage: float | None = None  # line coverage, percent
    coverage_source: str | None = None
    content_hash: str | None = None  # sha256 of the report(s)

    @property
    def succeeded(self) -> int | None:
        """How many tests passed."""
        if self.total is None:
            return None
        return max(0, self.total - self.failures - self.skipped)

    @property
    def pass_rate(self) -> float | None:
        """Passed / (passed + failed), percent; None when nothing ran."""
        ran = None if self.total is None else self.total - self.skipped
        if not ran:
            return None
        return round(100.0 * (self.succeeded or 0) / ran, 1)


# -- JUnit XML ------------------------------------------------------------------------------
#
# A report can be large (5 MB for a big suite) and parsing all of it costs more than a
# checkpoint may spend (expat alone reads ~40 MB/s here). What a run's result needs is small:
# the root element, the suites' own counts (every runner writes tests/failures/errors/skipped
# on <testsuite>) and the ids of the failing cases. So the prolog and the root element go
# through defusedxml (which refuses entity declarations and external DTDs: nothing below can
# expand), and each tag read after that is located in the bytes and parsed on its own by
# defusedxml too. Tags inside CDATA or comments could mislead the locator; runners escape
# what they write, and the counts come from the runner's own attributes.


class _Root(Exception):
    """Raised by the head parser's target at the root element (parsing stops there)."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs


class _HeadTarget:
    def start(self, tag: str, attrs: dict[str, str]) -> None:
        raise _Root(tag, attrs)

    def close(self) -> None:
        return None


def _tag_pattern(name: bytes) -> re.Pattern[bytes]:
    # a start tag whose quoted attribute values may hold '>' (legal in XML)
    return re.compile(
        b"<" + name + rb"(?=[\s/>])(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*/?>"
    )


_SUITE = _tag_pattern(b"testsuite")
_CASE = _tag_pattern(b"testcase")
_OUTCOME = re.compile(rb"<(failure|error)(?=[\s/>])")
_HEAD_BYTES = 256 * 1024


def _root_of(data: bytes) -> tuple[str, dict[str, str]] | None:
    parser = SafeET.DefusedXMLParser(target=_HeadTarget())
    try:
        parser.feed(data[:_HEAD_BYTES])
    except _Root as root:
        return root.tag, root.attrs
    return None


def _attrs(tag: bytes) -> dict[str, str]:
    """The attributes of one start tag, parsed by defusedxml as an empty element."""
    closed = tag if tag.endswith(b"/>") else tag[:-1] + b"/>"
    return dict(SafeET.fromstring(closed).attrib)


def _int(attrs: dict[str, str], name: str) -> int | None:
    try:
        return int(float(attrs[name]))
    except (KeyError, ValueError):
        return None


def _runner_from(name: str | None, path: Path, data: bytes) -> str | None:
    lowered = (name or "").lower()
    for runner in ("pytest", "jest", "vitest", "mocha", "karma", "cypress", "playwright"):
        if runner in lowered:
            return runner
    if b'name="go.version"' in data[:_HEAD_BYTES]:
        return "gotestsum"
    parts = {p.lower() for p in path.parts}
    if "surefire-reports" in parts or "failsafe-reports" in parts or b"surefire" in data[:2048]:
        return "maven"
    if "test-results" in parts and "build" in parts:
        return "gradle"
    return None


@dataclass
class _Counts:
    total: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failing: list[str] = field(default_factory=list)
    runner: str | None = None


def _case_id(attrs: dict[str, str]) -> str:
    name = attrs.get("name") or "?"
    where = attrs.get("file") or attrs.get("classname") or ""
    return f"{where}::{name}" if where else name


def _failing_cases(data: bytes, counts: _Counts) -> tuple[int, int]:
    """Record the ids of the failing cases; returns (failing cases, errored cases) seen."""
    seen: dict[int, str] = {}
    for match in _OUTCOME.finditer(data):
        start = data.rfind(b"<testcase", 0, match.start())
        if start < 0 or start in seen:
            continue
        case = _CASE.match(data, start)
        if case is None or case.group().endswith(b"/>"):
            continue  # the outcome is not inside this case
        seen[start] = match.group(1).decode()
        if len(counts.failing) < MAX_FAILING:
            counts.failing.append(_case_id(_attrs(case.group())))
    return len(seen), sum(1 for kind in seen.values() if kind == "error")


def _read_junit_counts(path: Path, counts: _Counts) -> bool:
    """Add one JUnit file to ``counts``; False when it is not a JUnit report."""
    data = path.read_bytes()
    root = _root_of(data)
    if root is None or root[0] not in ("testsuites", "testsuite"):
        return False
    suites = [_attrs(m.group()) for m in _SUITE.finditer(data)]
    counted = [s for s in suites if _int(s, "tests") is not None]
    if not counted and _int(root[1], "tests") is not None:
        counted = [root[1]]
    failing, errored = _failing_cases(data, counts)
    if counted:
        counts.total += sum(_int(s, "tests") or 0 for s in counted)
        errors = max(errored, sum(_int(s, "errors") or 0 for s in counted))
        counts.failed += max(failing, sum(_int(s, "failures") or 0 for s in counted) + errors)
        counts.errors += errors
        counts.skipped += sum(
            (_int(s, "skipped") or 0) + (_int(s, "disabled") or 0) for s in counted
        )
    else:  # no runner counts: count the cases themselves
        counts.total += data.count(b"<testcase")
        counts.failed += failing
        counts.errors += errored
        counts.skipped += len(re.findall(rb"<skipped(?=[\s/>])", data))
    timed = [s for s in (counted or [root[1]]) if "time" in s]
    with contextlib.suppress(ValueError):
        counts.seconds += sum(float(s["time"]) for s in timed)
    names = [root[1].get("name"), *(s.get("name") for s in suites[:1])]
    counts.runner = counts.runner or next(
        (r for n in names if (r := _runner_from(n, path, data)) is not None), None
    )
    return True


def parse_junit(paths: list[Path], root: Path) -> TestRun | None:
    """One run from one JUnit file, or from the per-class files of one folder."""
    counts = _Counts()
    readable: list[Path] = []
    for path in sorted(paths):
        try:
            if path.stat().st_size > MAX_REPORT_BYTES:
                log.info("test report %s is over %d bytes: skipped", path, MAX_REPORT_BYTES)
                continue
            if _read_junit_counts(path, counts):
                readable.append(path)
        except (OSError, SafeET.ParseError) as exc:
            log.info("test report %s is not readable JUnit XML: %s", path, exc)
        except Exception as exc:  # defusedxml refuses entities and external DTDs
            log.warning("test report %s refused: %s: %s", path, type(exc).__name__, exc)
    if not readable:
        return None
    first = readable[0]
    source = str(first.relative_to(root)) if len(readable) == 1 else _folder(first, root)
    return TestRun(
        source=source,
        passed=counts.failed == 0,
        failures=counts.failed,
        total=counts.total,
        recorded_at=max(p.stat().st_mtime for p in readable),
        skipped=counts.skipped,
        errors=counts.errors,
        duration_ms=round(counts.seconds * 1000.0, 1),
        failing=counts.failing,
        runner=counts.runner or "junit",
        content_hash=_hash_files(readable),
    )


def _hash_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _folder(path: Path, root: Path) -> str:
    return str(path.parent.relative_to(root)) + "/"


# -- pytest's cache -------------------------------------------------------------------------


def parse_pytest_cache(root: Path) -> TestRun | None:
    cache = root / ".pytest_cache" / "v" / "cache"
    nodeids = cache / "nodeids"
    lastfailed = cache / "lastfailed"
    if not nodeids.is_file():
        return None
    try:
        total = len(json.loads(nodeids.read_text(encoding="utf-8")))
        failed: dict[str, Any] = {}
        recorded = nodeids.stat().st_mtime
        raw = nodeids.read_bytes()
        if lastfailed.is_file():
            failed = json.loads(lastfailed.read_text(encoding="utf-8")) or {}
            recorded = max(recorded, lastfailed.stat().st_mtime)
            raw += lastfailed.read_bytes()
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(failed, dict):
        return None
    return TestRun(
        source=".pytest_cache",
        passed=not failed,
        failures=len(failed),
        total=total,
        recorded_at=recorded,
        failing=sorted(failed)[:MAX_FAILING],
        runner="pytest",
        content_hash=hashlib.sha256(raw).hexdigest(),
    )


# -- coverage -------------------------------------------------------------------------------


def _coverage_cobertura(path: Path) -> float | None:
    for _event, elem in SafeET.iterparse(str(path), events=("start",)):
        if elem.tag != "coverage":
            return None
        rate = elem.get("line-rate")
        return None if rate is None else round(100.0 * float(rate), 1)
    return None


def _coverage_json(path: Path) -> float | None:
    data = json.loads(path.read_text(encoding="utf-8"))
    totals = data.get("totals") or {}
    if "percent_covered" in totals:
        return round(float(totals["percent_covered"]), 1)
    lines = (data.get("total") or {}).get("lines") or {}
    return round(float(lines["pct"]), 1) if "pct" in lines else None


def _coverage_lcov(path: Path) -> float | None:
    found = hit = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("LF:"):
                found += int(line[3:])
            elif line.startswith("LH:"):
                hit += int(line[3:])
    return round(100.0 * hit / found, 1) if found else None


_COVERAGE_READERS: dict[str, Callable[[Path], float | None]] = {
    "cobertura": _coverage_cobertura,
    "coverage.py": _coverage_json,
    "istanbul": _coverage_json,
    "lcov": _coverage_lcov,
}


def parse_coverage(root: Path) -> tuple[float, str, float] | None:
    """The newest coverage report: (percent, relative path, mtime)."""
    best: tuple[float, str, float] | None = None
    for pattern, fmt in COVERAGE_PATTERNS:
        path = root / pattern
        try:
            if not path.is_file() or path.stat().st_size > MAX_REPORT_BYTES:
                continue
            mtime = path.stat().st_mtime
            if best is not None and mtime <= best[2]:
                continue
            percent = _COVERAGE_READERS[fmt](path)
        except Exception as exc:  # a broken report is skipped, never fatal
            log.info("coverage report %s not readable: %s", path, exc)
            continue
        if percent is not None:
            best = (percent, pattern, mtime)
    return best


# -- finding the newest run -----------------------------------------------------------------

_cache_lock = threading.Lock()
_parsed: dict[tuple[str, ...], TestRun | None] = {}


def _junit_groups(root: Path) -> list[list[Path]]:
    """Report files found, grouped: per-class ``TEST-*.xml`` files of a folder are one run."""
    seen: set[Path] = set()
    singles: list[list[Path]] = []
    folders: dict[Path, list[Path]] = {}
    for pattern in JUNIT_PATTERNS:
        for path in root.glob(pattern):
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            if path.name.startswith("TEST-") and path.parent != root:
                folders.setdefault(path.parent, []).append(path)
            else:
                singles.append([path])
    return singles + list(folders.values())


def _parse_group(group: list[Path], root: Path) -> TestRun | None:
    """Parse a group, remembering the answer by paths, sizes and times."""
    try:
        key = tuple(f"{p}:{s.st_size}:{s.st_mtime_ns}" for p in sorted(group) for s in (p.stat(),))
    except OSError:
        return None
    with _cache_lock:
        if key in _parsed:
            return _parsed[key]
    run = parse_junit(group, root)
    with _cache_lock:
        if len(_parsed) > 256:
            _parsed.clear()
        _parsed[key] = run
    return run


def latest_run(root: Path | str) -> TestRun | None:
    """The newest recorded run of the project at ``root``, with the newest coverage."""
    root = Path(root)
    candidates = [r for g in _junit_groups(root) if (r := _parse_group(g, root)) is not None]
    cache_run = parse_pytest_cache(root)
    newest = max(candidates, key=lambda r: r.recorded_at or 0.0, default=None)
    run = newest
    if cache_run is not None and (
        newest is None or (cache_run.recorded_at or 0.0) > (newest.recorded_at or 0.0) + SAME_RUN_S
    ):
        run = cache_run
    coverage = parse_coverage(root)
    if coverage is not None:
        percent, source, _mtime = coverage
        if run is None:
            return None  # coverage without a test result says nothing about the tests
        run = replace(run, coverage=percent, coverage_source=source)
    return run


# -- storing --------------------------------------------------------------------------------


def run_id(run: TestRun) -> str:
    """Stable for the same report at the same time: picked up again, stored once."""
    base = run.content_hash or json.dumps(asdict(run), sort_keys=True, default=str)
    return hashlib.sha256(f"{base}|{run.recorded_at}".encode()).hexdigest()[:32]


def run_summary(run: TestRun, *, commit: str | None = None) -> dict[str, Any]:
    """The run as the stored shape (a test_results record's data, a checkpoint's test_run)."""
    result = "passed" if run.passed else ("error" if run.errors else "failed")
    if run.total is not None and run.total == run.skipped and run.passed:
        result = "skipped"
    return {
        "id": run_id(run),
        "commit": commit,
        "result": result,
        "source": run.source,
        "runner": run.runner,
        "total": run.total,
        "passed": run.succeeded,
        "failed": run.failures,
        "skipped": run.skipped,
        "errors": run.errors,
        "pass_rate": run.pass_rate,
        "duration_ms": run.duration_ms,
        "coverage": run.coverage,
        "coverage_source": run.coverage_source,
        "failing": run.failing[:MAX_FAILING],
        "content_hash": run.content_hash,
        "recorded_at": _iso(run.recorded_at),
    }


def head_commit(path: str) -> str | None:
    """The commit checked out in ``path`` (None outside git)."""
    from session_buddy.core.project import run_git

    try:
        result = run_git(["rev-parse", "HEAD"], path)
    except (OSError, ValueError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def result_view(record: Record) -> dict[str, Any]:
    """The compact public shape of a stored result."""
    d = record.data
    return {
        "id": record.id,
        "session_id": d.get("session_id"),
        "project": record.project,
        "commit": d.get("commit"),
        "result": d.get("result"),
        "source": d.get("source"),
        "runner": d.get("runner"),
        "total": d.get("total"),
        "passed": d.get("passed"),
        "failed": d.get("failed"),
        "skipped": d.get("skipped"),
        "coverage": d.get("coverage"),
        "duration_ms": d.get("duration_ms"),
        "failing": (d.get("failing") or [])[:10],
        "recorded_at": d.get("recorded_at"),
    }


class TestResultService:
    """Stores test runs (reported by a tool, or picked up from a project) once each."""

    __test__ = False

    def __init__(self, storage: StorageBase) -> None:
        self.storage = storage

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> TestResultService:
        from session_buddy.adapters.storage._base import StorageBase

        return cls(resolve(StorageBase))

    async def save(
        self,
        run: TestRun,
        *,
        session_id: str | None,
        project: str | None,
        commit: str | None = None,
        origin: str = "pickup",
    ) -> tuple[Record, bool]:
        """Store ``run`` unless it is stored already; returns the record and whether it is new."""
        from session_buddy.adapters.storage._base import Record

        summary = run_summary(run, commit=commit)
        record_id = summary.pop("id")
        created = False
        at = datetime.fromtimestamp(run.recorded_at, UTC) if run.recorded_at else None

        def change(current: Record | None) -> Record | None:
            nonlocal created
            if current is not None:
                return None
            created = True
            data = {"session_id": session_id, "origin": origin, **summary}
            now = datetime.now(UTC)
            return Record(
                collection=COLLECTION,
                id=record_id,
                data=data,
                project=project,
                status=summary["result"],
                created_at=at or now,
                updated_at=now,
            )

        record = await self.storage.modify_record(COLLECTION, record_id, change)
        assert record is not None
        return record, created

    async def pickup(
        self,
        run: TestRun | None,
        *,
        session_id: str | None,
        project: str | None,
        commit: str | None,
    ) -> dict[str, Any] | None:
        """Store the run the project analysis found (``ProjectInfo.test_result``), once.
        The checkpoint calls this; a failure is logged, never raised (the checkpoint goes on)."""
        if run is None:
            return None
        try:
            record, created = await self.save(
                run, session_id=session_id, project=project, commit=commit
            )
        except Exception as exc:
            log.warning("storing the test result %s failed: %s", run.source, exc)
            return None
        return {**result_view(record), "created": created}

    async def pickup_project(
        self, info: ProjectInfo | None, *, session_id: str | None, project: str | None
    ) -> dict[str, Any] | None:
        """:meth:`pickup` of what :func:`~session_buddy.core.project.analyze_project` found,
        linked to the commit it saw (the one-line hook of a checkpoint)."""
        if info is None:
            return None
        commit = info.git.head if info.git is not None else None
        return await self.pickup(
            info.test_result, session_id=session_id, project=project, commit=commit
        )

    async def store(
        self,
        *,
        session_id: str | None,
        project: str | None,
        test_file: str,
        result: str,
        passed: int | None = None,
        failed: int | None = None,
        skipped: int = 0,
        coverage: float | None = None,
        duration_ms: float | None = None,
        failing: list[str] | None = None,
        project_path: str | None = None,
        recorded_at: datetime | None = None,
    ) -> dict[str, Any]:
        """A result a caller reports (``store_test_result``), linked to the commit checked
        out in ``project_path``."""
        if result not in RESULTS:
            raise ValidationError(f"result must be one of {', '.join(RESULTS)}, not {result!r}")
        if not test_file.strip():
            raise ValidationError("test_file must name the test file, suite or command")
        failing = [str(f) for f in (failing or [])]
        n_failed = failed if failed is not None else len(failing)
        if n_failed == 0 and result in ("failed", "error"):
            n_failed = 1
        n_passed = passed if passed is not None else (1 if result == "passed" else 0)
        if coverage is not None and not 0.0 <= coverage <= 100.0:
            raise ValidationError(f"coverage is a percentage (0-100), not {coverage}")
        at = (recorded_at or datetime.now(UTC)).timestamp()
        run = TestRun(
            source=test_file.strip(),
            passed=n_failed == 0 and result != "error",
            failures=n_failed,
            total=n_passed + n_failed + skipped,
            recorded_at=at,
            skipped=skipped,
            errors=n_failed if result == "error" else 0,
            duration_ms=duration_ms,
            failing=failing[:MAX_FAILING],
            runner="reported",
            coverage=coverage,
        )
        commit = await asyncio.to_thread(head_commit, project_path) if project_path else None
        record, created = await self.save(
            run, session_id=session_id, project=project, commit=commit, origin="tool"
        )
        return {**result_view(record), "created": created}
