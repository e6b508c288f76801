"""Project analysis: what a session is working on.

Read-only: nothing in the project is changed. Git runs with ``GIT_OPTIONAL_LOCKS=0`` so even
``git status`` does not refresh the index file. Only the standard library is used (the hook
path imports this module's siblings and must stay fast).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from session_buddy.core.sessions.spool_files import without_our_hooks
from session_buddy.core.testresults import TestRun, latest_run

GIT_TIMEOUT_S = 10.0

#: file suffix -> language
LANGUAGES: dict[str, str] = {
    ".py": "Python",
    ".pyi": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".kt": "Kotlin",
    ".kts": "Kotlin",
    ".scala": "Scala",
    ".rb": "Ruby",
    ".php": "PHP",
    ".cs": "C#",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".hpp": "C++",
    ".swift": "Swift",
    ".m": "Objective-C",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".erl": "Erlang",
    ".hs": "Haskell",
    ".lua": "Lua",
    ".sh": "Shell",
    ".bash": "Shell",
    ".zig": "Zig",
    ".dart": "Dart",
    ".r": "R",
    ".jl": "Julia",
    ".sql": "SQL",
}

#: lockfile -> package manager
LOCKFILES: dict[str, str] = {
    "uv.lock": "uv",
    "poetry.lock": "poetry",
    "pdm.lock": "pdm",
    "Pipfile.lock": "pipenv",
    "pixi.lock": "pixi",
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "yarn.lock": "yarn",
    "pnpm-lock.yaml": "pnpm",
    "bun.lockb": "bun",
    "bun.lock": "bun",
    "Cargo.lock": "cargo",
    "go.sum": "go",
    "Gemfile.lock": "bundler",
    "composer.lock": "composer",
    "mix.lock": "mix",
    "Package.resolved": "swiftpm",
    "gradle.lockfile": "gradle",
    "conda-lock.yml": "conda",
}

#: manifest -> package manager (when there is no lockfile)
MANIFESTS: dict[str, str] = {
    "pyproject.toml": "pip",
    "setup.py": "pip",
    "requirements.txt": "pip",
    "Pipfile": "pipenv",
    "package.json": "npm",
    "Cargo.toml": "cargo",
    "go.mod": "go",
    "Gemfile": "bundler",
    "composer.json": "composer",
    "mix.exs": "mix",
    "pom.xml": "maven",
    "build.gradle": "gradle",
    "build.gradle.kts": "gradle",
    "Package.swift": "swiftpm",
    "environment.yml": "conda",
}

#: manifests whose ecosystem pins versions without a lockfile of its own
_NO_LOCKFILE_NEEDED = {"pom.xml", "build.gradle", "build.gradle.kts"}

CI_FILES = (
    ".gitlab-ci.yml",
    ".travis.yml",
    "azure-pipelines.yml",
    "Jenkinsfile",
    "bitbucket-pipelines.yml",
    ".circleci/config.yml",
    ".drone.yml",
    "appveyor.yml",
)
CI_DIRS = (
    ".github/workflows",
    ".buildkite",
    ".woodpecker",
    ".forgejo/workflows",
    ".gitea/workflows",
)

LINT_FILES = {
    "ruff.toml": "ruff",
    ".ruff.toml": "ruff",
    ".flake8": "flake8",
    ".pylintrc": "pylint",
    "pylintrc": "pylint",
    ".eslintrc": "eslint",
    ".eslintrc.js": "eslint",
    ".eslintrc.cjs": "eslint",
    ".eslintrc.json": "eslint",
    ".eslintrc.yml": "eslint",
    ".eslintrc.yaml": "eslint",
    "eslint.config.js": "eslint",
    "eslint.config.mjs": "eslint",
    "eslint.config.cjs": "eslint",
    "eslint.config.ts": "eslint",
    "biome.json": "biome",
    "biome.jsonc": "biome",
    ".golangci.yml": "golangci-lint",
    ".golangci.yaml": "golangci-lint",
    ".rubocop.yml": "rubocop",
    "clippy.toml": "clippy",
    ".clippy.toml": "clippy",
    ".pre-commit-config.yaml": "pre-commit",
    ".prettierrc": "prettier",
    ".prettierrc.json": "prettier",
    "prettier.config.js": "prettier",
    ".editorconfig": "editorconfig",
}
TYPE_FILES = {
    "mypy.ini": "mypy",
    ".mypy.ini": "mypy",
    "pyrightconfig.json": "pyright",
    "tsconfig.json": "typescript",
    ".pyre_configuration": "pyre",
}
#: languages whose compiler checks types
TYPED_LANGUAGES = {
    "TypeScript",
    "Go",
    "Rust",
    "Java",
    "Kotlin",
    "Scala",
    "C#",
    "Swift",
    "Haskell",
    "Dart",
    "Zig",
}

TEST_DIRS = ("tests", "test", "spec", "__tests__", "testing")
DOC_FILES = ("README.md", "README.rst", "README.txt", "README", "readme.md", "README.adoc")
DOC_DIRS = ("docs", "doc", "documentation")
DOC_CONFIGS = ("mkdocs.yml", "docs/conf.py", "docusaurus.config.js", "book.toml")

_SKIP_DIRS = {
    ".git",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    "target",
    "dist",
    "build",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}
_MAX_FILES = 20_000


@dataclass
class GitState:
    """The repository as it stands (from ``git status --porcelain=v2``)."""

    root: str
    branch: str | None  # None when detached
    head: str | None  # None on an unborn branch
    detached: bool = False
    upstream: str | None = None
    ahead: int | None = None
    behind: int | None = None
    staged: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)  # tracked, changed, not staged
    untracked: list[str] = field(default_factory=list)
    conflicted: list[str] = field(default_factory=list)
    merge_in_progress: bool = False
    rebase_in_progress: bool = False
    cherry_pick_in_progress: bool = False
    revert_in_progress: bool = False
    bisect_in_progress: bool = False
    last_commit_at: float | None = None  # unix time of HEAD's committer date
    last_commit_subject: str | None = None
    #: changed or untracked files that are session-buddy's (or Claude Code's local) own, not
    #: the project's work: the quality score leaves them out (see :func:`own_files`)
    own: list[str] = field(default_factory=list)

    @property
    def tracked_changes(self) -> list[str]:
        """Tracked files with changes (staged or not), each once."""
        return sorted(set(self.staged) | set(self.modified) | set(self.conflicted))

    @property
    def operation(self) -> str | None:
        """The operation in progress that blocks a checkpoint commit, if any."""
        for flag, name in (
            (self.merge_in_progress, "merge"),
            (self.rebase_in_progress, "rebase"),
            (self.cherry_pick_in_progress, "cherry-pick"),
            (self.revert_in_progress, "revert"),
        ):
            if flag:
                return name
        return None

    def seconds_since_last_commit(self, now: float | None = None) -> float | None:
        if self.last_commit_at is None:
            return None
        return max(0.0, (now if now is not None else time.time()) - self.last_commit_at)


@dataclass
class ProjectInfo:
    path: str  # the folder analysed (the git root when there is one)
    name: str  # from the manifest or the git remote, else the folder's name (project_identity)
    #: other names of the same project: the folder's name, the remote's repository name
    aliases: list[str] = field(default_factory=list)
    name_source: str = "folder"  # pyproject.toml | package.json | Cargo.toml | go.mod | git remote
    languages: dict[str, int] = field(default_factory=dict)  # language -> file count
    package_manager: str | None = None
    manifests: list[str] = field(default_factory=list)
    lockfiles: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)  # evidence: test folders/files/frameworks
    test_result: TestRun | None = None  # the newest recorded run (core.testresults)
    ci: list[str] = field(default_factory=list)
    lint: list[str] = field(default_factory=list)
    type_check: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)
    git: GitState | None = None
    git_error: str | None = None  # why git state is missing, when inside a repo

    @property
    def names(self) -> list[str]:
        """Every name items of this project may be stored under: the name, then the aliases
        (what a filter for "this project" matches)."""
        return [self.name, *self.aliases]

    @property
    def primary_language(self) -> str | None:
        return next(iter(self.languages), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.git is not None:
            data["git"]["tracked_changes"] = len(self.git.tracked_changes)
            data["git"]["operation"] = self.git.operation
            since = self.git.seconds_since_last_commit()
            data["git"]["seconds_since_last_commit"] = None if since is None else round(since)
        return data


# -- the project's name -------------------------------------------------------------------


def default_directory(argument: str = "working_directory") -> str:
    """The folder "this project" means when a tool is not told: the calling client's
    (``CLAUDE_PROJECT_DIR``, else its working directory; the process's when nothing bound a
    client, see :mod:`session_buddy.core.sessions.current`), never the shared service's.
    A client that did not say where it works is asked for ``argument``."""
    from session_buddy.core.sessions.current import client_context
    from session_buddy.errors import ValidationError

    folder = client_context().directory
    if not folder:
        raise ValidationError(
            f"{argument} is needed: this client did not say which folder it works in "
            "(pass a folder inside the project)"
        )
    return folder


@dataclass(frozen=True)
class ProjectIdentity:
    name: str
    aliases: tuple[str, ...] = ()
    source: str = "folder"


_MAX_NAME = 200


def _clean_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > _MAX_NAME or any(ord(c) < 32 for c in name):
        return None
    return name


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _go_module(root: Path) -> str | None:
    path = root / "go.mod"
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        words = line.split("//", 1)[0].split()
        if len(words) >= 2 and words[0] == "module":
            parts = [p for p in words[1].strip('"').split("/") if p]
            if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
                parts.pop()  # example.com/widget/v2 is the widget module
            return parts[-1] if parts else None
    return None


def manifest_name(root: Path) -> tuple[str, str] | None:
    """The project's name as its manifest gives it, and the manifest: ``pyproject.toml``
    ``[project].name``, ``package.json`` ``name`` (without an ``@scope/``), ``Cargo.toml``
    ``[package].name``, or the last element of the ``go.mod`` module path."""
    candidates = (
        ("pyproject.toml", lambda: _table(_toml(root / "pyproject.toml"), "project").get("name")),
        ("package.json", lambda: str(_read_package_json(root).get("name") or "").split("/")[-1]),
        ("Cargo.toml", lambda: _table(_toml(root / "Cargo.toml"), "package").get("name")),
        ("go.mod", lambda: _go_module(root)),
    )
    for manifest, read in candidates:
        name = _clean_name(read())
        if name:
            return name, manifest
    return None


def _git_config(root: Path) -> Path | None:
    """The config file of the repository at ``root`` (a linked work tree's ``.git`` file
    points to its git dir, whose ``commondir`` holds the shared config)."""
    dot_git = root / ".git"
    try:
        if dot_git.is_dir():
            return dot_git / "config"
        if not dot_git.is_file():
            return None
        line = dot_git.read_text(encoding="utf-8").strip()
        if not line.startswith("gitdir:"):
            return None
        git_dir = (root / line[len("gitdir:") :].strip()).resolve()
        common = git_dir / "commondir"
        if common.is_file():
            git_dir = (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
        return git_dir / "config"
    except (OSError, UnicodeDecodeError):
        return None


def remote_name(root: Path, remote: str = "origin") -> str | None:
    """The repository name in the URL of ``remote`` (``git@host:org/widget.git`` → widget),
    read from the git config file (no subprocess: the hook path uses it)."""
    config = _git_config(root)
    try:
        text = config.read_text(encoding="utf-8") if config and config.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return None
    section = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = re.fullmatch(rf'\[remote\s+"{re.escape(remote)}"\]', line) is not None
        elif section and re.match(r"url\s*=", line):
            url = line.split("=", 1)[1].strip().strip('"').rstrip("/")
            last = re.split(r"[/:\\]", url)[-1]
            return _clean_name(last[:-4] if last.endswith(".git") else last)
    return None


def project_identity(root: Path | str) -> ProjectIdentity:
    """What a project folder (its git root) is called: the manifest's name, else the git
    remote's repository name, else the folder's name; the other two, when different, are
    its aliases (items stored under them belong to the project). Reads files only."""
    root = Path(root)
    folder = root.name or str(root)
    found = manifest_name(root)
    remote = remote_name(root)
    if found is not None:
        name, source = found
    elif remote is not None:
        name, source = remote, "git remote"
    else:
        name, source = folder, "folder"
    aliases = tuple(dict.fromkeys(a for a in (folder, remote) if a and a != name))
    return ProjectIdentity(name, aliases, source)


# -- git helpers --------------------------------------------------------------------------


def git_env() -> dict[str, str]:
    """Environment for git: never prompt, never take optional locks, plain output."""
    env = dict(os.environ)
    env.update(
        {
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "GIT_PAGER": "cat",
        }
    )
    return env


def run_git(
    args: list[str], cwd: Path | str, *, timeout: float = GIT_TIMEOUT_S, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run git; raises FileNotFoundError when git is not installed."""
    result = subprocess.run(
        ["git", *args],
        cwd=str(cwd),
        env=git_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, result.args, result.stdout, result.stderr
        )
    return result


def find_git_root(path: Path | str) -> Path | None:
    """The top of the work tree containing ``path``, or None outside a repository."""
    try:
        result = run_git(["rev-parse", "--show-toplevel"], path)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return Path(result.stdout.strip()).resolve()


def _git_dir(root: Path) -> Path | None:
    result = run_git(["rev-parse", "--absolute-git-dir"], root)
    if result.returncode != 0:
        return None
    return Path(result.stdout.strip())


def git_state(root: Path | str) -> GitState:
    """Read the state of the repository at ``root`` (raises OSError/SubprocessError)."""
    root = Path(root)
    result = run_git(["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"], root)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, result.args, result.stdout, result.stderr
        )
    state = GitState(root=str(root), branch=None, head=None)
    entries = result.stdout.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if not entry:
            continue
        if entry.startswith("# "):
            key, _, value = entry[2:].partition(" ")
            if key == "branch.oid":
                state.head = None if value == "(initial)" else value
            elif key == "branch.head":
                if value == "(detached)":
                    state.detached = True
                else:
                    state.branch = value
            elif key == "branch.upstream":
                state.upstream = value
            elif key == "branch.ab":
                parts = value.split()
                if len(parts) == 2:
                    state.ahead = int(parts[0].lstrip("+"))
                    state.behind = abs(int(parts[1]))
            continue
        kind = entry[0]
        if kind == "1":
            fields = entry.split(" ", 8)
            _classify(state, fields[1], fields[8])
        elif kind == "2":
            fields = entry.split(" ", 9)
            _classify(state, fields[1], fields[9])
            i += 1  # the original path follows as its own NUL-separated entry
        elif kind == "u":
            state.conflicted.append(entry.split(" ", 10)[10])
        elif kind == "?":
            state.untracked.append(entry[2:])
    git_dir = _git_dir(root)
    if git_dir is not None:
        state.merge_in_progress = (git_dir / "MERGE_HEAD").exists()
        state.rebase_in_progress = (git_dir / "rebase-merge").exists() or (
            git_dir / "rebase-apply"
        ).exists()
        state.cherry_pick_in_progress = (git_dir / "CHERRY_PICK_HEAD").exists()
        state.revert_in_progress = (git_dir / "REVERT_HEAD").exists()
        state.bisect_in_progress = (git_dir / "BISECT_LOG").exists()
    if state.head is not None:
        log = run_git(["log", "-1", "--format=%ct%x00%s"], root)
        if log.returncode == 0 and log.stdout.strip():
            stamp, _, subject = log.stdout.strip().partition("\0")
            try:
                state.last_commit_at = float(stamp)
            except ValueError:
                state.last_commit_at = None
            state.last_commit_subject = subject or None
    return state


#: Claude Code's settings for this machine (git-ignored by convention; hooks install there)
LOCAL_SETTINGS = ".claude/settings.local.json"
#: The project's shared Claude Code settings (older versions installed the hooks there)
SHARED_SETTINGS = ".claude/settings.json"
#: Where handoffs are written by default
HANDOFF_FOLDER = ".claude/handoff/"


def own_files(root: Path, state: GitState) -> list[str]:
    """The changes session-buddy made itself: Claude Code's local settings, handoffs, and a
    shared settings file whose only change is session-buddy's hook entries (untracked and
    holding nothing else, or tracked and equal to HEAD once those entries are left out)."""
    own: set[str] = set()
    untracked = set(state.untracked)
    for path in sorted(untracked | set(state.tracked_changes)):
        if (
            path == LOCAL_SETTINGS
            or path.startswith(HANDOFF_FOLDER)
            or (path == SHARED_SETTINGS and _only_our_hooks(root, path, path in untracked))
        ):
            own.add(path)
    return sorted(own)


def _settings(text: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _only_our_hooks(root: Path, rel: str, untracked: bool) -> bool:
    try:
        current = _settings((root / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    if current is None:
        return False
    rest, removed = without_our_hooks(current)
    if not removed:
        return False
    if untracked:
        return not rest
    try:
        shown = run_git(["show", f"HEAD:{rel}"], root)
    except (OSError, subprocess.SubprocessError):
        return False
    committed = _settings(shown.stdout) if shown.returncode == 0 else None
    return committed is not None and without_our_hooks(committed)[0] == rest


def _classify(state: GitState, xy: str, path: str) -> None:
    if xy[0] != ".":
        state.staged.append(path)
    if xy[1] != ".":
        state.modified.append(path)


# -- file detection -----------------------------------------------------------------------


def _list_files(root: Path, in_git: bool) -> list[str]:
    if in_git:
        try:
            result = run_git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root)
            if result.returncode == 0:
                return [f for f in result.stdout.split("\0") if f][:_MAX_FILES]
        except (OSError, subprocess.SubprocessError):
            pass
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            found.append(str(rel / name) if str(rel) != "." else name)
            if len(found) >= _MAX_FILES:
                return found
    return found


def _languages(files: list[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for name in files:
        language = LANGUAGES.get(Path(name).suffix.lower())
        if language:
            counts[language] += 1
    return dict(counts.most_common())


def _read_pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _read_package_json(root: Path) -> dict[str, Any]:
    path = root / "package.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _setup_cfg_sections(root: Path) -> set[str]:
    path = root / "setup.cfg"
    if not path.is_file():
        return set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    return {line.strip()[1:-1] for line in text.splitlines() if line.strip().startswith("[")}


def _exists(root: Path, rel: str) -> bool:
    return (root / rel).exists()


def _package_manager(
    info: ProjectInfo, names: set[str], tool: dict[str, Any], package_json: dict[str, Any]
) -> None:
    """Lockfiles, manifests and the package manager they point to."""
    info.lockfiles = sorted(n for n in names if n in LOCKFILES)
    info.manifests = sorted(n for n in names if n in MANIFESTS)
    if info.lockfiles:
        info.package_manager = LOCKFILES[info.lockfiles[0]]
    elif info.manifests:
        info.package_manager = MANIFESTS[info.manifests[0]]
    if info.package_manager == "pip" and not info.lockfiles:
        for name in ("uv", "poetry", "pdm", "hatch"):
            if name in tool:
                info.package_manager = name
                break
    if isinstance(package_json.get("packageManager"), str):
        info.package_manager = package_json["packageManager"].split("@", 1)[0]


def _tests(
    root: Path,
    files: list[str],
    tool: dict[str, Any],
    cfg_sections: set[str],
    package_json: dict[str, Any],
) -> list[str]:
    """What says the project has tests: folders, test files, runner configuration."""
    found = [f"{folder}/" for folder in TEST_DIRS if (root / folder).is_dir()]
    test_files = [
        f
        for f in files
        if ((name := Path(f).name).startswith("test_") and name.endswith(".py"))
        or name.endswith(("_test.py", "_test.go", "_spec.rb"))
        or ".test." in name
        or ".spec." in name
    ]
    if test_files:
        found.append(f"{len(test_files)} test files")
    if (
        "pytest" in tool.get("ini_options", {})
        or "pytest" in tool
        or _exists(root, "pytest.ini")
        or "tool:pytest" in cfg_sections
    ):
        found.append("pytest configured")
    scripts = package_json.get("scripts") if isinstance(package_json.get("scripts"), dict) else {}
    if isinstance(scripts, dict) and "test" in scripts:
        found.append("npm test script")
    return found


def _ci(root: Path) -> list[str]:
    found = [f for f in CI_FILES if _exists(root, f)]
    for folder in CI_DIRS:
        path = root / folder
        if path.is_dir() and any(
            p.suffix in (".yml", ".yaml") or p.is_file() for p in path.iterdir()
        ):
            found.append(f"{folder}/")
    return found


def _linters(
    root: Path, tool: dict[str, Any], cfg_sections: set[str], package_json: dict[str, Any]
) -> list[str]:
    lint = {tool_name for fname, tool_name in LINT_FILES.items() if _exists(root, fname)}
    for name in ("ruff", "flake8", "pylint", "black", "isort"):
        if name in tool:
            lint.add(name)
    if "flake8" in cfg_sections:
        lint.add("flake8")
    if isinstance(package_json.get("eslintConfig"), dict):
        lint.add("eslint")
    return sorted(lint)


def _type_checkers(
    root: Path, tool: dict[str, Any], cfg_sections: set[str], languages: dict[str, int]
) -> list[str]:
    types = {tool_name for fname, tool_name in TYPE_FILES.items() if _exists(root, fname)}
    for name in ("mypy", "pyright", "pyre", "basedpyright"):
        if name in tool:
            types.add(name)
    if "mypy" in cfg_sections:
        types.add("mypy")
    for language in languages:
        if language in TYPED_LANGUAGES and language != "TypeScript":
            types.add(f"{language} compiler")
    return sorted(types)


def _docs(root: Path) -> list[str]:
    docs = [f for f in DOC_FILES if _exists(root, f)][:1]
    docs += [f"{d}/" for d in DOC_DIRS if (root / d).is_dir()]
    docs += [f for f in DOC_CONFIGS if _exists(root, f)]
    return docs


def analyze_project(working_directory: Path | str | None = None) -> ProjectInfo:
    """Analyse the project containing ``working_directory`` (default: the current folder)."""
    start = Path(working_directory or os.getcwd()).expanduser().resolve()
    if not start.exists():
        from session_buddy.errors import ValidationError

        raise ValidationError(f"working_directory {start} does not exist")
    if start.is_file():
        start = start.parent
    git_root = find_git_root(start)
    root = git_root or start
    identity = project_identity(root)
    info = ProjectInfo(
        path=str(root),
        name=identity.name,
        aliases=list(identity.aliases),
        name_source=identity.source,
    )
    files = _list_files(root, git_root is not None)
    info.languages = _languages(files)
    names = {f for f in files if "/" not in f} | {p.name for p in root.iterdir() if p.is_file()}
    pyproject = _read_pyproject(root)
    tool = pyproject.get("tool", {}) if isinstance(pyproject.get("tool"), dict) else {}
    package_json = _read_package_json(root)
    cfg_sections = _setup_cfg_sections(root)
    _package_manager(info, names, tool, package_json)
    info.tests = _tests(root, files, tool, cfg_sections, package_json)
    info.test_result = latest_run(root)
    info.ci = _ci(root)
    info.lint = _linters(root, tool, cfg_sections, package_json)
    info.type_check = _type_checkers(root, tool, cfg_sections, info.languages)
    info.docs = _docs(root)
    if git_root is not None:
        try:
            info.git = git_state(git_root)
            info.git.own = own_files(git_root, info.git)
        except (OSError, subprocess.SubprocessError) as exc:
            info.git_error = f"git status failed: {exc}"
    return info


def lockfile_expected(info: ProjectInfo) -> bool | None:
    """Whether the project's ecosystem should have a lockfile (None: no manifest found)."""
    if not info.manifests:
        return None
    return not all(m in _NO_LOCKFILE_NEEDED for m in info.manifests)
