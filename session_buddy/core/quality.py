"""The quality score: 0–100 with a breakdown a person can check.

Every component reports its evidence, the points it earned out of its maximum, and one
concrete recommendation. A component whose data is missing is reported as ``unknown`` and
left out of the denominator: it never earns full marks by default.

Weights (maximum points; they add up to 100 when everything is known):

=========  ==========================  ===
project    tests present                10
project    last recorded test result    10
project    lint configuration            5
project    type checking                 5
project    continuous integration        5
project    documentation                 5
project    lockfile                      5
git        uncommitted tracked changes  10
git        untracked files               5
git        time since last commit        5
git        repository state             10
session    conversation stored           5
session    reflections and insights     10
session    time since last checkpoint   10
=========  ==========================  ===

The git components leave out session-buddy's own files (:func:`.project.own_files`):
Claude Code's ``.claude/settings.local.json``, handoffs in ``.claude/handoff/``, and a
``.claude/settings.json`` whose only change is session-buddy's hook entries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from session_buddy.core.project import GitState, ProjectInfo, lockfile_expected
from session_buddy.core.testresults import TestRun, run_summary

Status = Literal["ok", "partial", "missing", "unknown"]
Category = Literal["project", "git", "session"]


@dataclass
class Component:
    key: str
    label: str
    category: Category
    max_points: int
    points: float | None  # None when unknown
    status: Status
    evidence: str
    recommendation: str

    @property
    def known(self) -> bool:
        return self.points is not None


@dataclass
class SessionActivity:
    """What the session itself produced (counted from storage by the session service)."""

    messages: int | None = None  # conversation items of the session
    reflections: int | None = None  # reflections and insights stored since the session began
    seconds_since_checkpoint: float | None = None  # or since the start, before the first one
    checkpoints: int = 0


@dataclass
class QualityScore:
    score: int | None  # None when nothing is known
    earned: float
    possible: int
    components: list[Component] = field(default_factory=list)
    #: the test run the test_result component was scored on (core.testresults.run_summary)
    test_run: dict[str, Any] | None = None

    @property
    def unknown(self) -> list[str]:
        return [c.key for c in self.components if not c.known]

    def recommendations(self, limit: int = 3) -> list[str]:
        """The recommendations of the components that lost the most points."""
        lost = sorted(
            (c for c in self.components if c.known and (c.points or 0) < c.max_points),
            key=lambda c: c.max_points - (c.points or 0),
            reverse=True,
        )
        return [c.recommendation for c in lost[:limit]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "earned": round(self.earned, 1),
            "possible": self.possible,
            "unknown": self.unknown,
            "breakdown": [asdict(c) for c in self.components],
            "recommendations": self.recommendations(),
            "test_run": self.test_run,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityScore:
        components = [Component(**c) for c in data.get("breakdown", [])]
        return cls(
            score=data.get("score"),
            earned=float(data.get("earned", 0.0)),
            possible=int(data.get("possible", 0)),
            components=components,
            test_run=data.get("test_run"),
        )


@dataclass(frozen=True)
class _Spec:
    """What a component is (key, label, category, the points it is worth); calling it with
    the points earned (None: unknown), the evidence and the advice gives the Component."""

    key: str
    label: str
    category: Category
    max_points: int

    def __call__(self, points: float | None, evidence: str, recommendation: str) -> Component:
        if points is None:
            status: Status = "unknown"
        elif points >= self.max_points:
            status = "ok"
        elif points <= 0:
            status = "missing"
        else:
            status = "partial"
        return Component(
            self.key,
            self.label,
            self.category,
            self.max_points,
            points,
            status,
            evidence,
            recommendation,
        )


#: every component of the score, in the order of the breakdown
SPECS: dict[str, _Spec] = {
    spec.key: spec
    for spec in (
        _Spec("tests", "Tests present", "project", 10),
        _Spec("test_result", "Last recorded test result", "project", 10),
        _Spec("lint", "Lint configuration", "project", 5),
        _Spec("types", "Type checking", "project", 5),
        _Spec("ci", "Continuous integration", "project", 5),
        _Spec("docs", "Documentation", "project", 5),
        _Spec("lockfile", "Lockfile", "project", 5),
        _Spec("uncommitted", "Uncommitted tracked changes", "git", 10),
        _Spec("untracked", "Untracked files", "git", 5),
        _Spec("last_commit", "Time since last commit", "git", 5),
        _Spec("repo_state", "Repository state", "git", 10),
        _Spec("conversation", "Conversation stored", "session", 5),
        _Spec("reflections", "Reflections and insights", "session", 10),
        _Spec("checkpoint_age", "Time since last checkpoint", "session", 10),
    )
}
_PROJECT = [k for k, spec in SPECS.items() if spec.category == "project"]
_GIT = [k for k, spec in SPECS.items() if spec.category == "git"]


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 5400:
        return f"{int(seconds // 60)} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def test_result_evidence(run: TestRun, now: float) -> str:
    """Counts, where the result came from and how old it is, coverage, the failing ids."""
    if run.passed:
        text = f"passed ({run.total if run.total is not None else '?'} tests"
        text += f", {run.skipped} skipped" if run.skipped else ""
    else:
        text = f"{run.failures}" + (f" of {run.total}" if run.total is not None else "")
        text += " failed (" + (f"{run.skipped} skipped, " if run.skipped else "")
    text += run.source + (f" by {run.runner}" if run.runner and run.runner != "junit" else "")
    text += f", {_ago(now - run.recorded_at)} ago)" if run.recorded_at else ")"
    if run.coverage is not None:
        text += f"; coverage {run.coverage:g}% ({run.coverage_source})"
    if run.failing:
        text += "; failing: " + _list(run.failing, 3)
    return text


def test_result_component(run: TestRun | None, now: float) -> Component:
    """The last recorded run (picked up from the project's reports, see core.testresults)."""
    spec = SPECS["test_result"]
    if run is None:
        return spec(
            None,
            "no recorded test run (JUnit XML, .pytest_cache)",
            "Run the test suite so its result is recorded (e.g. pytest --junitxml=junit.xml, "
            "or your runner's JUnit reporter), or report it with store_test_result",
        )
    evidence = test_result_evidence(run, now)
    if run.passed:
        return spec(10, evidence, "Run the tests again after your next change")
    first = f" (first: {run.failing[0]})" if run.failing else ""
    return spec(
        0, evidence, f"Fix the {run.failures} failing test(s){first}, then re-run the suite"
    )


def _tests_component(info: ProjectInfo) -> Component:
    test_files = any(t.endswith("test files") or t.endswith("/") for t in info.tests)
    if info.tests and test_files:
        return SPECS["tests"](
            10,
            _list(info.tests),
            "Keep adding a test with every fix",
        )
    elif info.tests:
        return SPECS["tests"](
            4,
            f"configured but no test files: {_list(info.tests)}",
            "Add test files (e.g. tests/test_<module>.py) for the code you changed",
        )
    else:
        return SPECS["tests"](
            0,
            "no test folder, test files or test runner configuration",
            "Create a tests/ folder with a first test of the main entry point",
        )


def _lockfile_component(info: ProjectInfo) -> Component:
    expected = lockfile_expected(info)
    if expected is None:
        return SPECS["lockfile"](
            None,
            "no package manifest found (nothing to lock)",
            "If the project has dependencies, declare them in a manifest with a lockfile",
        )
    elif not expected or info.lockfiles:
        evidence = (
            _list(info.lockfiles)
            if info.lockfiles
            else f"{_list(info.manifests)} pins versions itself"
        )
        return SPECS["lockfile"](
            5,
            evidence,
            "Commit lockfile changes with the code that needs them",
        )
    else:
        manager = info.package_manager or "your package manager"
        return SPECS["lockfile"](
            0,
            f"{_list(info.manifests)} without a lockfile",
            f"Generate and commit a lockfile ({manager} lock / install) for reproducible builds",
        )


def _presence(key: str, found: list[str], missing: str, advice: str, keep: str) -> Component:
    """A component earned by a configuration being there (lint, types, CI, docs)."""
    return SPECS[key](5, _list(found), keep) if found else SPECS[key](0, missing, advice)


def project_components(info: ProjectInfo | None, now: float) -> list[Component]:
    if info is None:
        return [
            SPECS[k](None, "project not analysed", "Run start in the project folder")
            for k in _PROJECT
        ]
    language = info.primary_language or ""
    return [
        _tests_component(info),
        test_result_component(info.test_result, now),
        _presence(
            "lint",
            info.lint,
            "no linter configuration found",
            "Configure ruff in pyproject.toml ([tool.ruff])"
            if language == "Python"
            else "Add a linter configuration (e.g. eslint, golangci-lint, clippy)",
            "Run the linter before each commit (pre-commit)",
        ),
        _presence(
            "types",
            info.type_check,
            "no type checker configuration found",
            "Add [tool.mypy] to pyproject.toml and run mypy"
            if language == "Python"
            else "Enable a type checker (e.g. tsconfig.json with strict)",
            "Keep the type checker clean in CI",
        ),
        _presence(
            "ci",
            info.ci,
            "no CI configuration found",
            "Add a CI workflow (e.g. .github/workflows/tests.yml) that runs the tests",
            "Make sure CI runs the tests and the linters",
        ),
        _presence(
            "docs",
            info.docs,
            "no README or docs folder",
            "Write a README.md: what the project does, how to install, run and test it",
            "Update the docs when behaviour changes",
        ),
        _lockfile_component(info),
    ]


def _uncommitted(changes: list[str]) -> Component:
    n = len(changes)
    if n == 0:
        return SPECS["uncommitted"](
            10,
            "working tree clean",
            "Commit in small steps as you go",
        )
    else:
        points = 7 if n <= 5 else 4 if n <= 20 else 0
        return SPECS["uncommitted"](
            points,
            f"{n} changed file(s): {_list(changes)}",
            "Commit the finished part of this work (or checkpoint with git_commit=true)",
        )


def _untracked(untracked: list[str], own: set[str], git: GitState) -> Component:
    u = len(untracked)
    if u == 0:
        return SPECS["untracked"](
            5,
            "no untracked files" + (f" (not counted: {_list(git.own)})" if own else ""),
            "Keep .gitignore up to date",
        )
    else:
        points = 3 if u <= 3 else 1 if u <= 20 else 0
        return SPECS["untracked"](
            points,
            f"{u} untracked: {_list(untracked)}",
            f"git add the new files that belong to the project, or list them in .gitignore ({_list(untracked, 2)})",
        )


def _last_commit(git: GitState, now: float, n: int, u: int) -> Component:
    since = git.seconds_since_last_commit(now)
    if since is None:
        return SPECS["last_commit"](
            0 if n or u else None,
            "no commits yet",
            "Make a first commit",
        )
    elif n == 0:
        return SPECS["last_commit"](
            5,
            f"last commit {_ago(since)} ago, nothing uncommitted",
            "Commit in small steps as you go",
        )
    else:
        points = 5 if since < 2 * 3600 else 3 if since < 8 * 3600 else 1 if since < 24 * 3600 else 0
        return SPECS["last_commit"](
            points,
            f"last commit {_ago(since)} ago with {n} file(s) uncommitted",
            "Commit the work in progress; changes older than a few hours are at risk",
        )


def _repo_state(git: GitState) -> Component:
    if git.conflicted:
        return SPECS["repo_state"](
            0,
            f"{len(git.conflicted)} conflicted file(s): {_list(git.conflicted)}",
            "Resolve the conflicts, git add them, and finish the " + (git.operation or "merge"),
        )
    elif git.operation:
        return SPECS["repo_state"](
            2,
            f"{git.operation} in progress",
            f"Finish or abort the {git.operation} (git {git.operation} --continue / --abort)",
        )
    elif git.detached:
        return SPECS["repo_state"](
            5,
            f"detached HEAD at {(git.head or '')[:10]}",
            "Create a branch for this work: git switch -c <name>",
        )
    else:
        evidence = f"on branch {git.branch}"
        if git.behind:
            evidence += f", {git.behind} behind {git.upstream}"
        return SPECS["repo_state"](
            10,
            evidence,
            f"Pull {git.upstream} before you push" if git.behind else "Nothing to do",
        )


def git_components(info: ProjectInfo | None, now: float) -> list[Component]:
    git = info.git if info is not None else None
    if git is None:
        if info is not None and info.git_error is None:
            # Known: the project is not under version control.
            absent = [
                SPECS[k](None, "not a git repository", "Put the project under git (git init)")
                for k in _GIT[:3]
            ]
            absent.append(
                SPECS["repo_state"](
                    0,
                    "not a git repository",
                    "Put the project under version control: git init && git add -A && git commit",
                )
            )
            return absent
        why = info.git_error if info is not None and info.git_error else "git state not available"
        return [SPECS[k](None, why, "Check that git works in the project folder") for k in _GIT]

    own = set(git.own)  # session-buddy's own files never count against the score
    changes = [c for c in git.tracked_changes if c not in own]
    untracked = [u for u in git.untracked if u not in own]
    return [
        _uncommitted(changes),
        _untracked(untracked, own, git),
        _last_commit(git, now, len(changes), len(untracked)),
        _repo_state(git),
    ]


def _conversation(activity: SessionActivity) -> Component:
    if activity.messages is None:
        return SPECS["conversation"](
            None,
            "message count not available",
            "Check storage health",
        )
    elif activity.messages > 0:
        return SPECS["conversation"](
            5,
            f"{activity.messages} message(s) in this session",
            "Keep storing key exchanges",
        )
    else:
        return SPECS["conversation"](
            0,
            "no message stored in this session",
            "Store the key exchanges with add_message (or import the transcript)",
        )


def _reflections(activity: SessionActivity) -> Component:
    r = activity.reflections
    if r is None:
        return SPECS["reflections"](
            None,
            "reflection count not available",
            "Check storage health",
        )
    else:
        points = 10 if r >= 2 else 6 if r == 1 else 0
        return SPECS["reflections"](
            points,
            f"{r} reflection(s)/insight(s) stored since the session began",
            "Store what you learned with store_reflection (decisions, pitfalls, fixes)"
            if r < 2
            else "Keep recording decisions as reflections",
        )


def _checkpoint_age(activity: SessionActivity) -> Component:
    s = activity.seconds_since_checkpoint
    if s is None:
        return SPECS["checkpoint_age"](
            None,
            "unknown",
            "Checkpoint regularly",
        )
    else:
        points = 10 if s < 1800 else 7 if s < 3600 else 4 if s < 7200 else 1
        what = "last checkpoint" if activity.checkpoints else "session start (no checkpoint yet)"
        return SPECS["checkpoint_age"](
            points,
            f"{_ago(s)} since {what}",
            "Checkpoint at least every 30 minutes of work"
            if points < 10
            else "Keep checkpointing every 30 minutes",
        )


def session_components(activity: SessionActivity | None) -> list[Component]:
    if activity is None:
        return [
            SPECS["conversation"](
                None,
                "no session",
                "Call start to open a session",
            ),
            SPECS["reflections"](
                None,
                "no session",
                "Call start to open a session",
            ),
            SPECS["checkpoint_age"](
                None,
                "no session",
                "Call start to open a session",
            ),
        ]
    return [_conversation(activity), _reflections(activity), _checkpoint_age(activity)]


def compute_quality(
    info: ProjectInfo | None, activity: SessionActivity | None, *, now: float | None = None
) -> QualityScore:
    now = time.time() if now is None else now
    components = (
        project_components(info, now) + git_components(info, now) + session_components(activity)
    )
    known = [c for c in components if c.points is not None]
    earned = sum(c.points or 0.0 for c in known)
    possible = sum(c.max_points for c in known)
    score = round(100 * earned / possible) if possible else None
    run = info.test_result if info is not None else None
    head = info.git.head if info is not None and info.git is not None else None
    return QualityScore(
        score=score,
        earned=earned,
        possible=possible,
        components=components,
        test_run=run_summary(run, commit=head) if run is not None else None,
    )
