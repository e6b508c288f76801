"""Learned permissions: fewer repeated permission prompts, never for anything destructive.

Claude Code asks before it runs a shell command that is not allowed yet. The ``PostToolUse``
hook tells the service which commands actually ran (each one was approved: by the user, a rule
or us), recorded per project as a normalised pattern (``Bash(pytest *)``). The ``PreToolUse``
hook asks whether a command may run without a prompt: yes only when learning is on
(``permissions.enabled``, off by default), the command is **low-risk**, and its pattern was
approved at least ``permissions.threshold`` times (default 3) in this project within
``permissions.expiry_days`` (default 30), or trusted by hand; never when revoked. Every
automatic approval is logged (``<data>/logs/permissions.log``).

Categories: **destructive** (``rm -rf``, ``git push --force``, ``git reset --hard``,
``git clean -f``, ``curl … | sh``, ``sudo``, ``dd``, ``mkfs``, writes outside the project, …)
is never approved automatically and never trusted; **low** is a short list of read-only and
test/lint commands with no shell composition; everything else is **high** (asked as usual).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from session_buddy.core.sessions import spool_files as spool
from session_buddy.errors import NotFound, SessionBuddyError, ValidationError

if TYPE_CHECKING:
    from session_buddy.adapters.storage._base import Record, StorageBase
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

Category = Literal["low", "high", "destructive"]
COLLECTION = "permissions"
LOG_FILE = "permissions.log"
MAX_APPROVALS_KEPT = 50

#: commands whose first word (or first two, for tools with sub-commands) make the pattern
_SUBCOMMAND_TOOLS = {"git", "npm", "pnpm", "yarn", "uv", "cargo", "go", "make", "docker", "pip"}

_DESTRUCTIVE = [
    (re.compile(r"(^|[\s;&|])rm\s+(-\w*[rRf]\w*\s+)*-\w*[rR]"), "recursive delete (rm -r)"),
    (re.compile(r"(^|[\s;&|])rm\s+(-\w*\s+)*-\w*f"), "forced delete (rm -f)"),
    (
        re.compile(r"\bgit\s+push\b.*(\s--force\b|\s-f\b|\s--force-with-lease\b|\s\+\S)"),
        "force push",
    ),
    (re.compile(r"\bgit\s+reset\b.*--hard\b"), "git reset --hard"),
    (re.compile(r"\bgit\s+clean\b.*\s-\w*f"), "git clean -f"),
    (re.compile(r"\bgit\s+(checkout|restore)\b.*\s(--\s+)?\.(\s|$)"), "discarding all changes"),
    (
        re.compile(r"\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b"),
        "piping a download into a shell",
    ),
    (re.compile(r"(^|[\s;&|])sudo\b"), "sudo"),
    (re.compile(r"(^|[\s;&|])(mkfs|fdisk|parted|shred)\b"), "disk tools"),
    (re.compile(r"(^|[\s;&|])dd\b.*\bof="), "dd writing a device or file"),
    (re.compile(r"\bchmod\s+(-\w+\s+)*[0-7]*777\b"), "chmod 777"),
    (re.compile(r":\(\)\s*\{"), "fork bomb"),
    (re.compile(r">\s*/dev/(sd|nvme|hd)"), "writing a block device"),
]
_LOW_HEADS = {
    "pytest",
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "grep",
    "rg",
    "find",
    "pwd",
    "echo",
    "which",
    "ruff",
    "mypy",
    "pyright",
    "black",
    "isort",
    "flake8",
    "eslint",
    "tsc",
    "jest",
    "vitest",
    "git status",
    "git diff",
    "git log",
    "git show",
    "git branch",
    "git blame",
    "npm test",
    "pnpm test",
    "yarn test",
    "cargo test",
    "cargo check",
    "cargo clippy",
    "go test",
    "go vet",
    "make test",
    "make lint",
    "make check",
    "uv run",
}
_COMPOSITION = re.compile(r"[;&|`<>]|\$\(")
_PATH_ARG = re.compile(r"(?:^|\s)(?:>{1,2}\s*|(?:cp|mv|tee|touch|mkdir|ln)\s+(?:\S+\s+)*)(/\S+)")


@dataclass(frozen=True)
class Verdict:
    """How a tool call is seen: its pattern, its category and why."""

    pattern: str
    category: Category
    reason: str


def _head(words: list[str]) -> str:
    if not words:
        return ""
    first = Path(words[0]).name
    if first in _SUBCOMMAND_TOOLS and len(words) > 1 and not words[1].startswith("-"):
        return f"{first} {words[1]}"
    if first in ("python", "python3") and len(words) > 2 and words[1] == "-m":
        return f"{first} -m {words[2]}"
    return first


def _outside(path: str, project: Path | None) -> bool:
    if project is None:
        return True
    try:
        target = Path(path).expanduser()
        target = (project / target).resolve() if not target.is_absolute() else target.resolve()
        return not target.is_relative_to(project.resolve())
    except (OSError, ValueError):
        return True


def classify(tool: str, tool_input: dict[str, Any], project_dir: str | None) -> Verdict:
    """The pattern and risk of one tool call (only shell commands and file writes are judged;
    other tools are ``high``: left to Claude Code's own rules)."""
    project = Path(project_dir) if project_dir else None
    if tool in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
        path = str(tool_input.get("file_path") or tool_input.get("notebook_path") or "")
        if not path or _outside(path, project):
            return Verdict(
                f"{tool}(outside the project)", "destructive", "writes outside the project"
            )
        return Verdict(f"{tool}(./**)", "high", "file edits are left to Claude Code's own rules")
    if tool != "Bash":
        return Verdict(f"{tool}(*)", "high", "only shell commands are learned")
    command = str(tool_input.get("command") or "").strip()
    for rule, why in _DESTRUCTIVE:
        if rule.search(command):
            return Verdict(f"Bash({command[:80]})", "destructive", why)
    for match in _PATH_ARG.finditer(command):
        if _outside(match.group(1), project) and not match.group(1).startswith("/dev/null"):
            return Verdict(f"Bash({command[:80]})", "destructive", "writes outside the project")
    try:
        words = shlex.split(command)
    except ValueError:
        return Verdict(f"Bash({command[:80]})", "high", "unparsable command")
    head = _head(words)
    pattern = f"Bash({head} *)" if head else "Bash()"
    if _COMPOSITION.search(command):
        return Verdict(pattern, "high", "composed command (pipes, redirects, chains)")
    if head in _LOW_HEADS:
        return Verdict(pattern, "low", "read-only, test or lint command")
    return Verdict(pattern, "high", "not on the low-risk list")


def project_of(folder: str) -> str:
    """The project a folder belongs to: its git root (approvals are per project)."""
    from session_buddy.core.handoff import project_root_of

    return str(project_root_of(folder))


def _now() -> datetime:
    return datetime.now(UTC)


def _record_id(project: str, pattern: str) -> str:
    return hashlib.sha256(f"{project}\0{pattern}".encode()).hexdigest()[:24]


@dataclass
class Decision:
    allow: bool
    verdict: Verdict
    reason: str


class PermissionService:
    """Approvals per project and pattern, in the store's ``permissions`` records."""

    def __init__(
        self, storage: StorageBase, settings: SessionBuddySettings, paths: SessionPaths
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.paths = paths

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> PermissionService:
        from session_buddy.adapters.storage._base import StorageBase
        from session_buddy.paths import SessionPaths
        from session_buddy.settings import SessionBuddySettings

        return cls(resolve(StorageBase), resolve(SessionBuddySettings), resolve(SessionPaths))

    @staticmethod
    def _call(payload: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        tool = payload.get("tool_name")
        tool_input = payload.get("tool_input")
        cwd = payload.get("cwd")
        if not isinstance(tool, str) or not isinstance(tool_input, dict):
            raise ValidationError("tool_name and tool_input are required")
        return tool, tool_input, project_of(cwd) if isinstance(cwd, str) and cwd else None

    def _fresh(self, approvals: list[str], now: datetime) -> list[str]:
        cutoff = now - timedelta(days=self.settings.permissions.expiry_days)
        return [a for a in approvals if datetime.fromisoformat(a) >= cutoff]

    async def observe(self, payload: dict[str, Any], at: datetime | None = None) -> Verdict | None:
        """``PostToolUse``: the call ran (at ``at``, default now), so it was approved; count it
        (not destructive ones: those are never learned)."""
        if not self.settings.permissions.enabled:
            return None
        tool, tool_input, cwd = self._call(payload)
        verdict = classify(tool, tool_input, cwd)
        if verdict.category == "destructive" or cwd is None:
            return verdict
        now = at or _now()

        def change(current: Record | None) -> Record:
            from session_buddy.adapters.storage._base import Record

            data: dict[str, Any] = (
                dict(current.data) if current else {"project": cwd, "pattern": verdict.pattern}
            )
            approvals = [*self._fresh(list(data.get("approvals", [])), now), now.isoformat()]
            data.update(approvals=approvals[-MAX_APPROVALS_KEPT:], category=verdict.category)
            return Record(COLLECTION, _record_id(cwd, verdict.pattern), data)

        await self.storage.modify_record(COLLECTION, _record_id(cwd, verdict.pattern), change)
        return verdict

    async def apply_spooled(self) -> int:
        """Count the approvals hooks spooled while no service answered (oldest first)."""
        events = await asyncio.to_thread(
            spool.claim_spooled, self.paths.data, 500, spool.APPROVALS_QUEUE
        )
        for event in events:
            try:
                at = datetime.fromtimestamp(event.received_at, UTC) if event.received_at else None
                await self.observe(event.payload, at)
            except SessionBuddyError as exc:
                await asyncio.to_thread(spool.fail_spooled, event.path, str(exc))
                continue
            await asyncio.to_thread(spool.finish_spooled, event)
        return len(events)

    async def decide(self, payload: dict[str, Any]) -> Decision:
        """``PreToolUse``: may this call run without a prompt?"""
        tool, tool_input, cwd = self._call(payload)
        verdict = classify(tool, tool_input, cwd)
        if not self.settings.permissions.enabled:
            return Decision(False, verdict, "permission learning is off")
        if verdict.category != "low" or cwd is None:
            return Decision(False, verdict, f"{verdict.category} risk: {verdict.reason}")
        record = await self.storage.get_record(COLLECTION, _record_id(cwd, verdict.pattern))
        data = record.data if record else {}
        if data.get("revoked"):
            return Decision(False, verdict, "revoked")
        count = len(self._fresh(list(data.get("approvals", [])), _now()))
        threshold = self.settings.permissions.threshold
        if not data.get("trusted") and count < threshold:
            return Decision(False, verdict, f"approved {count} of {threshold} times")
        why = "trusted" if data.get("trusted") else f"approved {count} times"
        reason = f"session-buddy: {verdict.pattern} is low-risk and was {why} in this project"
        self._log(f"allowed {verdict.pattern} in {cwd}: {why}")
        return Decision(True, verdict, reason)

    def _log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.paths.logs.mkdir(parents=True, exist_ok=True)
            with open(self.paths.logs / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(f"{stamp} {message[:500]}\n")
        except OSError:
            pass

    # -- the tools and the CLI -------------------------------------------------------------

    async def list_patterns(
        self, project: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Learned patterns, most approved first: pattern, project, category, approvals
        within the expiry, trusted, revoked, and whether it is approved automatically now."""
        now = _now()
        shown: list[dict[str, Any]] = []
        for record in await self.storage.list_records(COLLECTION, limit=10_000):
            data = record.data
            if project and data.get("project") != project:
                continue
            count = len(self._fresh(list(data.get("approvals", [])), now))
            auto = (
                data.get("category") == "low"
                and not data.get("revoked")
                and (bool(data.get("trusted")) or count >= self.settings.permissions.threshold)
            )
            shown.append(
                {
                    "pattern": data.get("pattern"),
                    "project": data.get("project"),
                    "category": data.get("category"),
                    "approvals": count,
                    "trusted": bool(data.get("trusted")),
                    "revoked": bool(data.get("revoked")),
                    "auto_approved": auto and self.settings.permissions.enabled,
                }
            )
        shown.sort(key=lambda row: (-row["approvals"], str(row["pattern"])))
        return shown[:limit]

    async def set_flag(self, project: str, pattern: str, *, trusted: bool) -> dict[str, Any]:
        """Trust a pattern now (``trusted=True``) or revoke it (``False``: never automatic,
        whatever its approvals)."""
        if not project or not pattern:
            raise ValidationError("project and pattern are required")
        project = project_of(project)
        category = classify(
            "Bash", {"command": pattern.removeprefix("Bash(").rstrip(")* ")}, project
        )
        if trusted and category.category == "destructive":
            raise ValidationError(f"{pattern} is destructive: it is never approved automatically")

        def change(current: Record | None) -> Record:
            from session_buddy.adapters.storage._base import Record

            if current is None and not trusted:
                raise NotFound(f"no learned pattern {pattern!r} in {project}")
            data: dict[str, Any] = (
                dict(current.data) if current else {"project": project, "pattern": pattern}
            )
            data.setdefault("category", category.category)
            data["trusted"], data["revoked"] = trusted, not trusted
            return Record(COLLECTION, _record_id(project, pattern), data)

        record = await self.storage.modify_record(COLLECTION, _record_id(project, pattern), change)
        self._log(f"{'trusted' if trusted else 'revoked'} {pattern} in {project}")
        return dict(record.data) if record else {}
