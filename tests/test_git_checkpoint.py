"""Checkpoint commits: tracked files only, skipped when clean, refused during a merge."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from session_buddy.core.git import checkpoint_commit
from session_buddy.errors import GitError
from tests.test_project import commit_all, git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "proj")
    (repo / "tracked.py").write_text("a = 1\n")
    (repo / "other.py").write_text("b = 1\n")
    commit_all(repo, "initial")
    return repo


def test_commits_tracked_changes_never_untracked_files(repo: Path) -> None:
    (repo / "tracked.py").write_text("a = 2\n")
    (repo / "other.py").unlink()
    (repo / "secret.env").write_text("TOKEN=x\n")
    (repo / "newdir").mkdir()
    (repo / "newdir" / "new.py").write_text("c = 1\n")
    result = checkpoint_commit(repo, "proj", 73)
    assert result.committed
    assert result.message == "checkpoint: proj (quality: 73/100)"
    assert git(repo, "log", "-1", "--format=%s") == "checkpoint: proj (quality: 73/100)"
    committed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(committed) == ["other.py", "tracked.py"]
    assert sorted(result.files) == ["other.py", "tracked.py"]
    assert result.untracked_left == 2
    tracked = git(repo, "ls-files").split()
    assert "secret.env" not in tracked and "newdir/new.py" not in tracked
    status = git(repo, "status", "--porcelain")
    assert "?? secret.env" in status and "?? newdir/" in status


def test_skips_when_nothing_changed(repo: Path) -> None:
    (repo / "untracked.txt").write_text("x")
    head = git(repo, "rev-parse", "HEAD")
    result = checkpoint_commit(repo, "proj", 50)
    assert not result.committed and result.skipped_reason
    assert git(repo, "rev-parse", "HEAD") == head


def test_refuses_during_a_merge_conflict(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "tracked.py").write_text("a = 'feature'\n")
    commit_all(repo, "feature change")
    git(repo, "checkout", "-q", "main")
    (repo / "tracked.py").write_text("a = 'main'\n")
    commit_all(repo, "main change")
    merge = subprocess.run(["git", "merge", "feature"], cwd=repo, capture_output=True, text=True)
    assert merge.returncode != 0 and (repo / ".git" / "MERGE_HEAD").exists()
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(GitError, match="during a merge"):
        checkpoint_commit(repo, "proj", 40)
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / ".git" / "MERGE_HEAD").exists()


def test_refuses_during_a_rebase(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "tracked.py").write_text("a = 'feature'\n")
    commit_all(repo, "feature change")
    git(repo, "checkout", "-q", "main")
    (repo / "tracked.py").write_text("a = 'main'\n")
    commit_all(repo, "main change")
    git(repo, "checkout", "-q", "feature")
    rebase = subprocess.run(["git", "rebase", "main"], cwd=repo, capture_output=True, text=True)
    assert rebase.returncode != 0
    with pytest.raises(GitError, match="rebase"):
        checkpoint_commit(repo, "proj", 40)


def test_refuses_outside_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        checkpoint_commit(plain, "plain", 10)


def test_failed_commit_leaves_the_index_alone(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'lint failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    (repo / "tracked.py").write_text("a = 3\n")
    with pytest.raises(GitError, match="lint failed"):
        checkpoint_commit(repo, "proj", 10)
    assert git(repo, "diff", "--cached", "--name-only") == ""
