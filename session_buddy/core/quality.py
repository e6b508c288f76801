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

from session_buddy.core.project import ProjectInfo, lockfile_expected

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityScore:
        components = [Component(**c) for c in data.get("breakdown", [])]
        return cls(
            score=data.get("score"),
            earned=float(data.get("earned", 0.0)),
            possible=int(data.get("possible", 0)),
            components=components,
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


def project_components(info: ProjectInfo | None, now: float) -> list[Component]:
    out: list[Component] = []
    if info is None:
        return [
            SPECS[k](None, "project not analysed", "Run start in the project folder")
            for k in _PROJECT
        ]

    test_files = any(t.endswith("test files") or t.endswith("/") for t in info.tests)
    if info.tests and test_files:
        out.append(
            SPECS["tests"](
                10,
                _list(info.tests),
                "Keep adding a test with every fix",
            )
        )
    elif info.tests:
        out.append(
            SPECS["tests"](
                4,
                f"configured but no test files: {_list(info.tests)}",
                "Add test files (e.g. tests/test_<module>.py) for the code you changed",
            )
        )
    else:
        out.append(
            SPECS["tests"](
                0,
                "no test folder, test files or test runner configuration",
                "Create a tests/ folder with a first test of the main entry point",
            )
        )

    result = info.test_result
    if result is None:
        out.append(
            SPECS["test_result"](
                None,
                "no recorded test run (.pytest_cache, junit*.xml)",
                "Run the test suite so its result is recorded (e.g. pytest, or a JUnit XML report)",
            )
        )
    else:
        age = f", {_ago(now - result.recorded_at)} ago" if result.recorded_at else ""
        total = f" of {result.total}" if result.total is not None else ""
        if result.passed:
            out.append(
                SPECS["test_result"](
                    10,
                    f"passed ({result.total if result.total is not None else '?'} tests, {result.source}{age})",
                    "Run the tests again after your next change",
                )
            )
        else:
            out.append(
                SPECS["test_result"](
                    0,
                    f"{result.failures}{total} failed ({result.source}{age})",
                    f"Fix the {result.failures} failing test(s), then re-run the suite",
                )
            )

    def presence(key: str, found: list[str], missing: str, advice: str, keep: str) -> None:
        if found:
            out.append(SPECS[key](5, _list(found), keep))
        else:
            out.append(SPECS[key](0, missing, advice))

    language = info.primary_language or ""
    presence(
        "lint",
        info.lint,
        "no linter configuration found",
        "Configure ruff in pyproject.toml ([tool.ruff])"
        if language == "Python"
        else "Add a linter configuration (e.g. eslint, golangci-lint, clippy)",
        "Run the linter before each commit (pre-commit)",
    )
    presence(
        "types",
        info.type_check,
        "no type checker configuration found",
        "Add [tool.mypy] to pyproject.toml and run mypy"
        if language == "Python"
        else "Enable a type checker (e.g. tsconfig.json with strict)",
        "Keep the type checker clean in CI",
    )
    presence(
        "ci",
        info.ci,
        "no CI configuration found",
        "Add a CI workflow (e.g. .github/workflows/tests.yml) that runs the tests",
        "Make sure CI runs the tests and the linters",
    )
    presence(
        "docs",
        info.docs,
        "no README or docs folder",
        "Write a README.md: what the project does, how to install, run and test it",
        "Update the docs when behaviour changes",
    )
    expected = lockfile_expected(info)
    if expected is None:
        out.append(
            SPECS["lockfile"](
                None,
                "no package manifest found (nothing to lock)",
                "If the project has dependencies, declare them in a manifest with a lockfile",
            )
        )
    elif not expected or info.lockfiles:
        evidence = (
            _list(info.lockfiles)
            if info.lockfiles
            else f"{_list(info.manifests)} pins versions itself"
        )
        out.append(
            SPECS["lockfile"](
                5,
                evidence,
                "Commit lockfile changes with the code that needs them",
            )
        )
    else:
        manager = info.package_manager or "your package manager"
        out.append(
            SPECS["lockfile"](
                0,
                f"{_list(info.manifests)} without a lockfile",
                f"Generate and commit a lockfile ({manager} lock / install) for reproducible builds",
            )
        )
    return out


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

    out: list[Component] = []
    own = set(git.own)  # session-buddy's own files never count against the score
    changes = [c for c in git.tracked_changes if c not in own]
    untracked = [u for u in git.untracked if u not in own]
    n = len(changes)
    if n == 0:
        out.append(
            SPECS["uncommitted"](
                10,
                "working tree clean",
                "Commit in small steps as you go",
            )
        )
    else:
        points = 7 if n <= 5 else 4 if n <= 20 else 0
        out.append(
            SPECS["uncommitted"](
                points,
                f"{n} changed file(s): {_list(changes)}",
                "Commit the finished part of this work (or checkpoint with git_commit=true)",
            )
        )
    u = len(untracked)
    if u == 0:
        out.append(
            SPECS["untracked"](
                5,
                "no untracked files" + (f" (not counted: {_list(git.own)})" if own else ""),
                "Keep .gitignore up to date",
            )
        )
    else:
        points = 3 if u <= 3 else 1 if u <= 20 else 0
        out.append(
            SPECS["untracked"](
                points,
                f"{u} untracked: {_list(untracked)}",
                f"git add the new files that belong to the project, or list them in .gitignore ({_list(untracked, 2)})",
            )
        )
    since = git.seconds_since_last_commit(now)
    if since is None:
        out.append(
            SPECS["last_commit"](
                0 if n or u else None,
                "no commits yet",
                "Make a first commit",
            )
        )
    elif n == 0:
        out.append(
            SPECS["last_commit"](
                5,
                f"last commit {_ago(since)} ago, nothing uncommitted",
                "Commit in small steps as you go",
            )
        )
    else:
        points = 5 if since < 2 * 3600 else 3 if since < 8 * 3600 else 1 if since < 24 * 3600 else 0
        out.append(
            SPECS["last_commit"](
                points,
                f"last commit {_ago(since)} ago with {n} file(s) uncommitted",
                "Commit the work in progress; changes older than a few hours are at risk",
            )
        )
    if git.conflicted:
        out.append(
            SPECS["repo_state"](
                0,
                f"{len(git.conflicted)} conflicted file(s): {_list(git.conflicted)}",
                "Resolve the conflicts, git add them, and finish the " + (git.operation or "merge"),
            )
        )
    elif git.operation:
        out.append(
            SPECS["repo_state"](
                2,
                f"{git.operation} in progress",
                f"Finish or abort the {git.operation} (git {git.operation} --continue / --abort)",
            )
        )
    elif git.detached:
        out.append(
            SPECS["repo_state"](
                5,
                f"detached HEAD at {(git.head or '')[:10]}",
                "Create a branch for this work: git switch -c <name>",
            )
        )
    else:
        evidence = f"on branch {git.branch}"
        if git.behind:
            evidence += f", {git.behind} behind {git.upstream}"
        out.append(
            SPECS["repo_state"](
                10,
                evidence,
                f"Pull {git.upstream} before you push" if git.behind else "Nothing to do",
            )
        )
    return out


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
    out: list[Component] = []
    if activity.messages is None:
        out.append(
            SPECS["conversation"](
                None,
                "message count not available",
                "Check storage health",
            )
        )
    elif activity.messages > 0:
        out.append(
            SPECS["conversation"](
                5,
                f"{activity.messages} message(s) in this session",
                "Keep storing key exchanges",
            )
        )
    else:
        out.append(
            SPECS["conversation"](
                0,
                "no message stored in this session",
                "Store the key exchanges with add_message (or import the transcript)",
            )
        )
    r = activity.reflections
    if r is None:
        out.append(
            SPECS["reflections"](
                None,
                "reflection count not available",
                "Check storage health",
            )
        )
    else:
        points = 10 if r >= 2 else 6 if r == 1 else 0
        out.append(
            SPECS["reflections"](
                points,
                f"{r} reflection(s)/insight(s) stored since the session began",
                "Store what you learned with store_reflection (decisions, pitfalls, fixes)"
                if r < 2
                else "Keep recording decisions as reflections",
            )
        )
    s = activity.seconds_since_checkpoint
    if s is None:
        out.append(
            SPECS["checkpoint_age"](
                None,
                "unknown",
                "Checkpoint regularly",
            )
        )
    else:
        points = 10 if s < 1800 else 7 if s < 3600 else 4 if s < 7200 else 1
        what = "last checkpoint" if activity.checkpoints else "session start (no checkpoint yet)"
        out.append(
            SPECS["checkpoint_age"](
                points,
                f"{_ago(s)} since {what}",
                "Checkpoint at least every 30 minutes of work"
                if points < 10
                else "Keep checkpointing every 30 minutes",
            )
        )
    return out


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
    return QualityScore(score=score, earned=earned, possible=possible, components=components)
