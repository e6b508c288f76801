"""Claude Code's settings files: install and uninstall session-buddy's hook entries.

``plan_install`` / ``plan_uninstall`` compute the new text of a settings file (keeping its
format and every entry that is not ours) as a :class:`HookPlan` with a diff; ``apply_plan``
writes it atomically and remembers what it installed so an uninstall restores a file the user
has not touched since. Standard library only (``session-buddy hooks`` must start fast).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from session_buddy.core.hooks import EVENTS, TOOL_MATCHERS, is_ours, without_our_hooks

HOOK_TIMEOUT_S = 10  # what Claude Code allows the command (the command itself exits in < 2 s)


# -- settings.json ------------------------------------------------------------------------


def settings_file(project: Path | str | None = None, user: bool = False) -> Path:
    """``--project DIR`` → DIR/.claude/settings.local.json (Claude Code's file for this
    machine, not shared: the hook commands hold this machine's paths); ``--user`` →
    ~/.claude/settings.json."""
    if user == (project is not None):
        raise ValueError("choose exactly one of --project DIR or --user")
    if user:
        home = Path(os.environ.get("HOME") or Path.home())
        return home / ".claude" / "settings.json"
    return shared_settings_file(project).with_name("settings.local.json")  # type: ignore[arg-type]


def shared_settings_file(project: Path | str) -> Path:
    """DIR/.claude/settings.json: the project's settings shared through git (where older
    versions installed the hooks)."""
    return Path(project).expanduser().resolve() / ".claude" / "settings.json"


def has_our_hooks(path: Path) -> bool:
    """Whether the settings file holds session-buddy hook entries (an unreadable file: no)."""
    try:
        return bool(without_our_hooks(_parse(_read(path), path))[1])
    except (OSError, ValueError):
        return False


def ensure_git_ignored(path: Path) -> Path | None:
    """Make git ignore ``path`` in its repository when nothing does yet, through the
    repository's own ``info/exclude`` (never a shared file), as Claude Code does for its
    local settings. Returns the exclude file written to, or None (already ignored, no git)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    try:
        if git("check-ignore", "-q", str(path)).returncode != 1:
            return None  # 0: ignored already; 128: not in a repository
        root = Path(git("rev-parse", "--show-toplevel").stdout.strip()).resolve()
        exclude = path.parent / git("rev-parse", "--git-path", "info/exclude").stdout.strip()
        rule = "/" + path.resolve().relative_to(root).as_posix()
        exclude.parent.mkdir(parents=True, exist_ok=True)
        before = _read(exclude) or ""
        with exclude.open("a", encoding="utf-8") as fh:
            fh.write(("" if before.endswith("\n") or not before else "\n") + rule + "\n")
        return exclude
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def default_executable() -> str:
    """How Claude Code should call session-buddy: the absolute path of the installed script."""
    beside = Path(sys.executable).parent / "session-buddy"
    if beside.is_file():
        return str(beside)
    found = shutil.which("session-buddy")
    return found or "session-buddy"


def hook_command(event: str, executable: str | None = None) -> str:
    exe = executable or default_executable()
    return f"{shlex.quote(exe)} hook {event}"


@dataclass
class _Format:
    indent: str | None
    newline: bool
    ascii: bool


def _detect_format(text: str) -> _Format:
    indent: str | None = None
    lines = text.splitlines()
    for prev, line in itertools.pairwise(lines):
        if prev.rstrip().endswith(("{", "[")) and line[:1] in (" ", "\t"):
            indent = line[: len(line) - len(line.lstrip())]
            break
    if indent is None and len(text.strip().splitlines()) > 1:
        indent = "  "
    if indent is None and not text.strip():
        indent = "  "
    non_ascii = any(ord(ch) > 127 for ch in text)
    return _Format(
        indent=indent,
        newline=text.endswith("\n") or not text,
        ascii="\\u" in text and not non_ascii,
    )


def _dump(data: Any, fmt: _Format) -> str:
    text = json.dumps(data, indent=fmt.indent, ensure_ascii=fmt.ascii)
    return text + ("\n" if fmt.newline else "")


def _sha(text: str | None) -> str | None:
    return (
        None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    )


@dataclass
class HookPlan:
    """What install/uninstall would do to one settings file."""

    path: Path
    before: str | None  # None: the file does not exist
    after: str | None  # None: the file is (or stays) absent
    action: str  # "install" | "uninstall"
    events: list[str] = field(default_factory=list)  # events whose hooks were added/removed
    restored_exactly: bool = False  # uninstall restores the bytes saved at install

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        a = (self.before or "").splitlines(keepends=True)
        b = (self.after or "").splitlines(keepends=True)
        name = str(self.path)
        return "".join(
            difflib.unified_diff(
                a,
                b,
                fromfile=name if self.before is not None else "/dev/null",
                tofile=name if self.after is not None else "/dev/null",
            )
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _parse(text: str | None, path: Path) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); fix it before installing hooks"
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def plan_install(path: Path, executable: str | None = None) -> HookPlan:
    """Add one hook group per event (after the groups already there). Idempotent: an event
    that already has a session-buddy hook is left alone."""
    before = _read(path)
    data = _parse(before, path)
    hooks = data.get("hooks")
    if hooks is None:
        hooks = {}
    if not isinstance(hooks, dict):
        raise ValueError(f"{path}: 'hooks' must be a JSON object")
    added: list[str] = []
    new_hooks = dict(hooks)
    for event in EVENTS:
        groups = hooks.get(event, [])
        if not isinstance(groups, list):
            raise ValueError(f"{path}: hooks.{event} must be a list")
        present = any(
            isinstance(g, dict)
            and any(is_ours(h) for h in g.get("hooks", []) if isinstance(g.get("hooks"), list))
            for g in groups
        )
        if present:
            continue
        group: dict[str, Any] = {
            "hooks": [
                {
                    "type": "command",
                    "command": hook_command(event, executable),
                    "timeout": HOOK_TIMEOUT_S,
                }
            ]
        }
        if event in TOOL_MATCHERS:
            group = {"matcher": TOOL_MATCHERS[event], **group}
        new_hooks[event] = [*groups, group]
        added.append(event)
    if not added:
        return HookPlan(path, before, before, "install", [])
    new_data = dict(data)
    new_data["hooks"] = new_hooks
    after = _dump(new_data, _detect_format(before or ""))
    return HookPlan(path, before, after, "install", added)


def plan_uninstall(path: Path, state_dir: Path | None = None) -> HookPlan:
    """Remove exactly the hooks install added. When the file is unchanged since install, the
    bytes saved then are restored (byte-identical); otherwise session-buddy's hooks are removed
    structurally, keeping the file's formatting."""
    before = _read(path)
    record = _load_state(state_dir, path)
    if record is not None and before is not None and _sha(before) == record.get("installed_sha256"):
        original = record.get("original")
        return HookPlan(path, before, original, "uninstall", list(EVENTS), restored_exactly=True)
    if before is None:
        return HookPlan(path, None, None, "uninstall", [])
    new_data, removed = without_our_hooks(_parse(before, path))
    if not removed:
        return HookPlan(path, before, before, "uninstall", [])
    after = _dump(new_data, _detect_format(before))
    return HookPlan(path, before, after, "uninstall", removed)


def _state_file(state_dir: Path, path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return state_dir / f"{key}.json"


def _load_state(state_dir: Path | None, path: Path) -> dict[str, Any] | None:
    if state_dir is None:
        return None
    try:
        data = json.loads(_state_file(state_dir, path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("path") == str(path.resolve()) else None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_plan(plan: HookPlan, state_dir: Path | None = None) -> None:
    """Write the planned file. Install remembers the original bytes in ``state_dir`` so that
    uninstall can restore them exactly."""
    if not plan.changed:
        return
    if plan.action == "install":
        created_dir = not plan.path.parent.exists()
        assert plan.after is not None
        _atomic_write(plan.path, plan.after)
        if state_dir is not None:
            previous = _load_state(state_dir, plan.path)
            original = plan.before
            created = created_dir
            if previous is not None and _sha(plan.before) == previous.get("installed_sha256"):
                original, created = previous.get("original"), bool(previous.get("created_dir"))
            state_dir.mkdir(parents=True, exist_ok=True)
            record: dict[str, Any] = {
                "path": str(plan.path.resolve()),
                "original": original,
                "installed_sha256": _sha(plan.after),
                "created_dir": created,
                "installed_at": time.time(),
            }
            _atomic_write(_state_file(state_dir, plan.path), json.dumps(record))
        return
    # uninstall
    saved = _load_state(state_dir, plan.path) if state_dir is not None else None
    if plan.after is None:
        plan.path.unlink(missing_ok=True)
        if saved is not None and saved.get("created_dir"):
            with contextlib.suppress(OSError):
                plan.path.parent.rmdir()  # only when empty
    else:
        _atomic_write(plan.path, plan.after)
    if state_dir is not None:
        _state_file(state_dir, plan.path).unlink(missing_ok=True)


# -- the spool ----------------------------------------------------------------------------
