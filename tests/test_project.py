"""Project analysis on real temporary git repositories."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from session_buddy.core.project import (
    ProjectIdentity,
    analyze_project,
    find_git_root,
    project_identity,
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_all(repo: Path, message: str = "commit") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def python_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "demo-app")
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n[tool.ruff]\nline-length = 100\n[tool.mypy]\nstrict = true\n'
        "[tool.pytest.ini_options]\naddopts = '-q'\n"
    )
    (repo / "uv.lock").write_text("version = 1\n")
    (repo / "README.md").write_text("# demo\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def f():\n    return 1\n")
    (repo / "src" / "util.py").write_text("X = 1\n")
    (repo / "web.ts").write_text("export const x = 1;\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_app.py").write_text("def test_f():\n    assert True\n")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    commit_all(repo, "initial")
    return repo


def test_detects_python_project_setup(python_repo: Path) -> None:
    info = analyze_project(python_repo / "src")  # a subfolder finds the git root
    assert info.path == str(python_repo.resolve())
    assert info.name == "demo" and info.aliases == ["demo-app"]  # the manifest names it
    assert info.name_source == "pyproject.toml" and info.names == ["demo", "demo-app"]
    assert next(iter(info.languages)) == "Python"
    assert info.languages["Python"] == 3
    assert info.languages["TypeScript"] == 1
    assert info.package_manager == "uv"
    assert info.lockfiles == ["uv.lock"]
    assert "tests/" in info.tests and "pytest configured" in info.tests
    assert info.ci == [".github/workflows/"]
    assert "ruff" in info.lint
    assert "mypy" in info.type_check
    assert "README.md" in info.docs
    assert info.git is not None
    assert info.git.branch == "main"
    assert not info.git.detached
    assert info.git.tracked_changes == [] and info.git.untracked == []
    since = info.git.seconds_since_last_commit()
    assert since is not None and since < 120
    assert info.git.last_commit_subject == "initial"


def test_changes_and_untracked_files(python_repo: Path) -> None:
    (python_repo / "src" / "app.py").write_text("def f():\n    return 2\n")
    (python_repo / "src" / "util.py").unlink()
    (python_repo / "notes.txt").write_text("scratch\n")
    (python_repo / "README.md").write_text("# demo\nmore\n")
    git(python_repo, "add", "README.md")
    info = analyze_project(python_repo)
    assert info.git is not None
    assert info.git.staged == ["README.md"]
    assert sorted(info.git.modified) == ["src/app.py", "src/util.py"]
    assert info.git.untracked == ["notes.txt"]
    assert info.git.tracked_changes == ["README.md", "src/app.py", "src/util.py"]


def test_detached_head_and_last_test_result(python_repo: Path) -> None:
    git(python_repo, "checkout", "-q", "--detach")
    cache = python_repo / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    (cache / "nodeids").write_text(
        json.dumps(["tests/test_app.py::test_f", "tests/test_app.py::test_g"])
    )
    (cache / "lastfailed").write_text(json.dumps({"tests/test_app.py::test_g": True}))
    info = analyze_project(python_repo)
    assert info.git is not None and info.git.detached and info.git.branch is None
    assert info.test_result is not None
    assert not info.test_result.passed
    assert info.test_result.failures == 1 and info.test_result.total == 2


def test_outside_a_repository(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "main.go").write_text("package main\n")
    (folder / "go.mod").write_text("module x\n")
    assert find_git_root(folder) is None
    info = analyze_project(folder)
    assert info.git is None and info.git_error is None
    assert info.name == "x" and info.aliases == ["plain"]  # go.mod: module x
    assert info.package_manager == "go"
    assert info.lockfiles == []
    assert "Go compiler" in info.type_check


def test_analysis_changes_nothing(python_repo: Path) -> None:
    (python_repo / "src" / "app.py").write_text("changed\n")
    index = python_repo / ".git" / "index"
    os.utime(index, (1_000_000, 1_000_000))
    before = {p: p.stat().st_mtime_ns for p in python_repo.rglob("*") if p.is_file()}
    analyze_project(python_repo)
    after = {p: p.stat().st_mtime_ns for p in python_repo.rglob("*") if p.is_file()}
    assert before == after  # not even git's index was refreshed (GIT_OPTIONAL_LOCKS=0)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from session_buddy.errors import ValidationError

    with pytest.raises(ValidationError, match="does not exist"):
        analyze_project(tmp_path / "nope")


@pytest.mark.parametrize(
    ("manifest", "text", "name"),
    [
        ("pyproject.toml", '[project]\nname = "widget"\n', "widget"),
        ("package.json", '{"name": "@acme/widget", "version": "1.0.0"}', "widget"),
        ("Cargo.toml", '[package]\nname = "widget"\nversion = "0.1.0"\n', "widget"),
        ("go.mod", "module github.com/acme/widget/v2\n\ngo 1.22\n", "widget"),
    ],
)
def test_the_manifest_names_the_project(
    tmp_path: Path, manifest: str, text: str, name: str
) -> None:
    folder = tmp_path / "widget-main"
    folder.mkdir()
    (folder / manifest).write_text(text)
    identity = project_identity(folder)
    assert (identity.name, identity.aliases, identity.source) == (name, ("widget-main",), manifest)


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:acme/widget.git",
        "https://github.com/acme/widget.git",
        "ssh://git@example.com:2222/acme/widget/",
        "/srv/git/widget.git",
    ],
)
def test_the_git_remote_names_a_project_without_a_manifest(tmp_path: Path, url: str) -> None:
    repo = make_repo(tmp_path / "widget-main")
    git(repo, "remote", "add", "origin", url)
    info = analyze_project(repo)
    assert (info.name, info.aliases, info.name_source) == ("widget", ["widget-main"], "git remote")
    # a linked work tree (.git is a file) reads the same remote
    (repo / "a.txt").write_text("a\n")
    commit_all(repo)
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt-fix"), "-b", "fix")
    linked = project_identity(tmp_path / "wt-fix")
    assert (linked.name, linked.aliases) == ("widget", ("wt-fix",))


def test_manifest_name_wins_and_the_remote_becomes_an_alias(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "checkout")
    git(repo, "remote", "add", "origin", "git@github.com:acme/widget-py.git")
    (repo / "pyproject.toml").write_text('[project]\nname = "widget"\n')
    assert project_identity(repo) == ProjectIdentity(
        "widget", ("checkout", "widget-py"), "pyproject.toml"
    )
    (repo / "pyproject.toml").write_text("[project\nbroken")  # unreadable: the remote names it
    assert project_identity(repo).name == "widget-py"
