"""Safe checkpoint commits.

A checkpoint commit happens only when asked. It commits the changes of files git already
tracks (``git commit -a``: modified and deleted tracked files, plus whatever the user staged
himself) and never adds an untracked file. It is skipped when nothing changed, and refused
during a merge, rebase, cherry-pick or revert, with conflicts, or outside a repository.
If the commit fails (a pre-commit hook, no identity), git leaves the index as it was.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from session_buddy.core.project import find_git_root, git_state, run_git
from session_buddy.errors import GitError

COMMIT_TIMEOUT_S = 120.0  # pre-commit hooks can be slow


@dataclass
class CommitResult:
    committed: bool
    message: str
    sha: str | None = None
    files: list[str] = field(default_factory=list)
    skipped_reason: str | None = None
    untracked_left: int = 0  # untracked files that were (deliberately) not committed


def checkpoint_message(project: str, score: int | None) -> str:
    shown = "?" if score is None else str(score)
    return f"checkpoint: {project} (quality: {shown}/100)"


def checkpoint_commit(path: Path | str, project: str, score: int | None) -> CommitResult:
    """Commit the tracked changes of the repository containing ``path``."""
    path = Path(path)
    if not path.exists():
        raise GitError(f"Cannot checkpoint: {path} does not exist")
    try:
        root = find_git_root(path)
    except FileNotFoundError as exc:  # pragma: no cover - git missing
        raise GitError("Cannot checkpoint: git is not installed") from exc
    if root is None:
        raise GitError(
            f"Cannot checkpoint: {path} is not inside a git repository (run git init first)"
        )
    try:
        state = git_state(root)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"Cannot checkpoint: git status failed in {root}: {exc}") from exc
    if state.operation:
        raise GitError(
            f"Cannot checkpoint during a {state.operation} in {root}: finish it "
            f"(git {state.operation} --continue) or abort it (git {state.operation} --abort) first"
        )
    if state.conflicted:
        raise GitError(
            f"Cannot checkpoint: {len(state.conflicted)} file(s) have unresolved conflicts in {root}"
        )
    message = checkpoint_message(project, score)
    changes = state.tracked_changes
    if not changes:
        return CommitResult(
            committed=False,
            message=message,
            skipped_reason="nothing to commit: no tracked file changed",
            untracked_left=len(state.untracked),
        )
    # -a stages modified and deleted tracked files only; untracked files are never added.
    try:
        result = run_git(["commit", "-a", "--quiet", "-m", message], root, timeout=COMMIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"git commit failed in {root}: {exc}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-800:]
        raise GitError(f"git commit failed in {root} (nothing was committed): {detail}")
    sha = run_git(["rev-parse", "HEAD"], root).stdout.strip() or None
    shown = run_git(["show", "--name-only", "--format=", "-z", "HEAD"], root)
    files = [f for f in shown.stdout.split("\0") if f.strip()] if shown.returncode == 0 else changes
    return CommitResult(
        committed=True, message=message, sha=sha, files=files, untracked_left=len(state.untracked)
    )
