"""Tests that changed state between two stored runs, and the files changed in between.

Two consecutive runs of the same source (the same report file or folder, so test ids are
spelt alike) are compared by their failing test ids: a test failing in the earlier run and
not in the later one was **fixed**, one failing only in the later run **broke**. The files
changed in between are ``git diff --name-only`` of the two runs' commits; when both ran on
the same commit the change was not committed yet, and that is said instead. Runs whose
failing list was cut (:data:`~session_buddy.core.testresults.MAX_FAILING`) or that errored
as a whole are not compared: a missing id there proves nothing. No MCP in here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from session_buddy.core.testresults import MAX_FAILING

MAX_FILES = 10


def changed_files(path: str, before: str, after: str) -> list[str] | None:
    """Files that differ between two commits (None when git cannot tell)."""
    from session_buddy.core.project import run_git

    try:
        result = run_git(["diff", "--name-only", before, after], path)
    except (OSError, ValueError):
        return None
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line.strip()]


def _comparable(run: dict[str, Any]) -> bool:
    return len(run.get("failing") or []) < MAX_FAILING and run.get("total") is not None


def transitions(
    runs: Sequence[dict[str, Any]], project_path: str | None, limit: int = 20
) -> list[dict[str, Any]]:
    """State changes between consecutive runs (``runs``: test_results data, oldest first),
    newest first, at most ``limit``."""
    last_of: dict[str, dict[str, Any]] = {}
    found: list[dict[str, Any]] = []
    diffs: dict[tuple[str, str], list[str] | None] = {}
    for run in runs:
        source = str(run.get("source"))
        before = last_of.get(source)
        last_of[source] = run
        if before is None or not (_comparable(before) and _comparable(run)):
            continue
        was, now = set(before.get("failing") or []), set(run.get("failing") or [])
        changes = [("fixed", t) for t in sorted(was - now)] + [
            ("broke", t) for t in sorted(now - was)
        ]
        if not changes:
            continue
        a, b = before.get("commit"), run.get("commit")
        files: list[str] | None = None
        note = None
        if a and b and a == b:
            note = "same commit: the change was not committed yet"
        elif a and b and project_path:
            if (a, b) not in diffs:
                diffs[(a, b)] = changed_files(project_path, a, b)
            files = diffs[(a, b)]
        for went, test in changes:
            found.append(
                {
                    "test": test,
                    "went": went,
                    "from": (a or "")[:10] or None,
                    "to": (b or "")[:10] or None,
                    "at": run.get("recorded_at"),
                    "session_id": run.get("session_id"),
                    "files": (files or [])[:MAX_FILES],
                    "files_changed": len(files) if files is not None else None,
                    **({"note": note} if note else {}),
                }
            )
    # newest run first; within a run, in the order above (sorted is stable with reverse)
    return sorted(found, key=lambda c: str(c["at"]), reverse=True)[:limit]
