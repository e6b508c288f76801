"""Claude Code transcripts: find them, stream them, turn their lines into conversation turns.

Claude Code writes one JSON Lines file per session under
``~/.claude/projects/<encoded-cwd>/<session-id>.jsonl`` (``$CLAUDE_CONFIG_DIR/projects`` when
that is set); subagent transcripts sit beside them (``agent-*.jsonl``, or
``<session-id>/subagents/agent-*.jsonl``) and carry ``isSidechain: true`` and the parent's
``sessionId``. Each line is one event:

* ``user`` / ``assistant``: ``message.role`` and ``message.content``, a string or a list of
  blocks (``text``, ``tool_use``, ``tool_result``, ``thinking``, ``image``...), with
  ``uuid``, ``parentUuid``, ``sessionId``, ``cwd``, ``gitBranch``, ``timestamp``,
  ``isSidechain``;
* ``summary``: ``{"type": "summary", "summary": ..., "leafUuid": ...}`` (no cwd, no session);
* ``system``: ``content``, ``subtype``, ``level``;
* other bookkeeping (``file-history-snapshot``, ``progress``, ``queue-operation``...).

This module knows the format and nothing about storage: :class:`LineReader` yields complete
lines in bounded memory (a partial last line is left for later), :func:`parse_line` turns one
line into :class:`Turn` objects. The incremental import (offsets, batches, insights) is
:class:`session_buddy.core.capture.CaptureService`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from session_buddy.core.handoff import TranscriptFacts
from session_buddy.core.project import project_identity

#: Bytes read from a file at a time.
CHUNK_BYTES = 1 << 20
#: A line longer than this is skipped (counted as oversized), never held in memory whole.
MAX_LINE_BYTES = 64 << 20
#: Tool results longer than this (characters) are cut; the original length is noted.
TOOL_RESULT_CHARS = 2000
#: Each tool argument shown in a tool-call summary is cut to this many characters.
TOOL_ARG_CHARS = 300
#: Bytes hashed at the start of a file to recognise it when its inode changes.
HEAD_BYTES = 4096

#: Line types that carry no conversation (bookkeeping of Claude Code itself).
SKIPPED_TYPES = frozenset(
    {
        "file-history-snapshot",
        "progress",
        "queue-operation",
        "permission-mode",
        "custom-title",
        "tag",
        "checkpoint",
        "result",
    }
)
#: System subtypes that are noise rather than conversation.
NOISY_SYSTEM_SUBTYPES = frozenset({"stop_hook_summary", "turn_duration", "hook_progress"})

#: Claude Code's own helper agents, whose transcripts are not conversations: compaction and
#: prompt suggestions (``agent-acompact-*.jsonl``, ``agent-aprompt_suggestion-*.jsonl``).
INTERNAL_AGENT_PREFIXES = ("agent-acompact-", "agent-aprompt_suggestion-")
#: session-buddy's own tools as Claude Code names them: their results are our own answers.
OWN_TOOL_PREFIXES = ("mcp__session-buddy__", "mcp__session_buddy__")
#: What Claude Code writes in place of a turn when the user interrupts.
MARKER_TEXTS = frozenset(
    {"[Request interrupted by user]", "[Request interrupted by user for tool use]"}
)
_TOOL_MARKER = re.compile(r"\[(?:tool_use|tool_result)\b[^\]]*\]\s*")
#: How many recent tool calls an import remembers for the next one (to label their results).
TOOL_CALLS_KEPT = 32

#: Which argument(s) of a well-known tool say what the call did.
KEY_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "Bash": ("command", "description"),
    "Read": ("file_path", "offset", "limit"),
    "Write": ("file_path",),
    "Edit": ("file_path", "old_string"),
    "MultiEdit": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "Glob": ("pattern", "path"),
    "Grep": ("pattern", "path", "glob"),
    "WebFetch": ("url", "prompt"),
    "WebSearch": ("query",),
    "Task": ("description", "subagent_type", "prompt"),
    "TodoWrite": ("todos",),
}


def claude_projects_dir() -> Path:
    """Where Claude Code keeps its transcripts: ``$CLAUDE_CONFIG_DIR/projects`` if set, else
    ``$HOME/.claude/projects``."""
    config = os.environ.get("CLAUDE_CONFIG_DIR")
    if config:
        return Path(config).expanduser() / "projects"
    home = os.environ.get("HOME") or str(Path.home())
    return Path(home) / ".claude" / "projects"


def encode_project_dir(path: Path | str) -> str:
    """The folder name Claude Code uses for a working directory (non-alphanumerics -> ``-``)."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(Path(path).expanduser().resolve()))


def is_internal_transcript(path: Path) -> bool:
    """A transcript of one of Claude Code's helper agents (compaction, prompt suggestions)."""
    return path.name.startswith(INTERNAL_AGENT_PREFIXES)


def is_marker_only(text: str) -> bool:
    """Text that says nothing but "a tool ran" or "interrupted": never a memory."""
    stripped = text.strip()
    return not stripped or stripped in MARKER_TEXTS or bool(_TOOL_MARKER.fullmatch(stripped))


def discover(root: Path) -> list[Path]:
    """Transcript files under ``root`` (or ``root`` itself when it is a file), oldest first;
    the transcripts of Claude Code's helper agents are left out."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    found: list[tuple[float, str, Path]] = []
    for path in root.rglob("*.jsonl"):
        # workflow journals of subagent workflows are orchestration logs, not sessions
        if (path.name == "journal.jsonl" and "workflows" in path.parts) or (
            is_internal_transcript(path)
        ):
            continue
        try:
            if path.is_file():
                found.append((path.stat().st_mtime, str(path), path))
        except OSError:
            continue
    found.sort()
    return [p for _, _, p in found]


# -- reading --------------------------------------------------------------------------------


@dataclass(slots=True)
class RawLine:
    """One complete line: ``data`` without its newline (``None`` when it was too long to
    keep), the byte span ``[start, end)`` including the newline, and its 1-based number."""

    data: bytes | None
    start: int
    end: int
    number: int


class LineReader:
    """Complete lines of a binary file from ``offset`` up to ``limit`` bytes, in bounded
    memory (one chunk plus one line of at most ``max_line`` bytes).

    A last line without its newline is not yielded: :attr:`pending` says how many bytes wait
    for the rest of it. A line longer than ``max_line`` is yielded with ``data=None``."""

    def __init__(
        self,
        fh: BinaryIO,
        offset: int,
        line_number: int,
        limit: int,
        *,
        chunk: int = CHUNK_BYTES,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self.fh = fh
        self.offset = offset
        self.line_number = line_number
        self.limit = limit
        self.chunk = chunk
        self.max_line = max_line
        self.pending = 0

    def __iter__(self) -> Iterator[RawLine]:
        fh = self.fh
        fh.seek(self.offset)
        pos = self.offset  # file position of buf[0]
        remaining = max(0, self.limit - self.offset)
        buf = bytearray()
        skipping_from: int | None = None  # start of an oversized line being discarded
        number = self.line_number
        while remaining > 0:
            chunk = fh.read(min(self.chunk, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            if skipping_from is not None:
                newline = chunk.find(b"\n")
                if newline < 0:
                    pos += len(chunk)
                    continue
                pos += newline + 1
                number += 1
                yield RawLine(None, skipping_from, pos, number)
                skipping_from = None
                chunk = chunk[newline + 1 :]
            buf += chunk
            start = 0
            while True:
                newline = buf.find(b"\n", start)
                if newline < 0:
                    break
                number += 1
                yield RawLine(bytes(buf[start:newline]), pos + start, pos + newline + 1, number)
                start = newline + 1
            if start:
                del buf[:start]
                pos += start
            if len(buf) > self.max_line:
                skipping_from = pos
                pos += len(buf)
                buf.clear()
        self.pending = len(buf) + (pos - skipping_from if skipping_from is not None else 0)


def head_hash(path: Path, size: int) -> str:
    """SHA-256 of the first ``min(size, HEAD_BYTES)`` bytes (recognises a file after a copy)."""
    with path.open("rb") as fh:
        return hashlib.sha256(fh.read(min(size, HEAD_BYTES))).hexdigest()


# -- parsing --------------------------------------------------------------------------------


@dataclass(slots=True)
class Turn:
    """One conversation turn taken from a transcript line."""

    role: str  # user | assistant | system | tool
    content: str
    session_id: str | None
    cwd: str | None
    created_at: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: assistant prose: scanned for insight blocks
    prose: bool = False


@dataclass(slots=True)
class ParsedLine:
    turns: list[Turn]
    kind: str  # "turns" | "skipped" | "malformed"
    invalid_utf8: bool = False
    user_text: bool = False  # a person wrote something (ends an open insight)
    #: names of the tools this line called (metadata of its text turn, if it has one)
    tools: list[str] = field(default_factory=list)
    message_id: str | None = None  # Claude Code splits one message over several lines


class ToolNames:
    """Recent ``tool_use`` ids with their tool names and call summaries (to label tool
    results); bounded. :meth:`recent` / ``ToolNames(recent)`` carry the newest few over to
    the next import of the same file (a result often arrives after the import that read
    its call)."""

    def __init__(self, recent: list[list[str]] | None = None, size: int = 2048) -> None:
        self.size = size
        self._calls: OrderedDict[str, tuple[str, str]] = OrderedDict()
        for entry in recent or []:
            if (
                isinstance(entry, list)
                and len(entry) == 3
                and all(isinstance(x, str) for x in entry)
            ):
                self.add(*entry)

    def add(self, tool_id: str, name: str, call: str | None = None) -> None:
        self._calls[tool_id] = (name, call or f"[tool_use {name}]")
        self._calls.move_to_end(tool_id)
        while len(self._calls) > self.size:
            self._calls.popitem(last=False)

    def get(self, tool_id: str) -> str | None:
        found = self._calls.get(tool_id)
        return found[0] if found else None

    def call(self, tool_id: str) -> str | None:
        found = self._calls.get(tool_id)
        return found[1] if found else None

    def recent(self, count: int = TOOL_CALLS_KEPT) -> list[list[str]]:
        """The newest ``count`` calls as ``[id, name, call]`` (the call cut short)."""
        return [
            [k, name, _clip(call, 200)] for k, (name, call) in list(self._calls.items())[-count:]
        ]


def decode_line(data: bytes) -> tuple[str, bool]:
    """The line as text; invalid UTF-8 bytes become U+FFFD (the flag says it happened)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


def valid_text(text: str) -> str:
    """``text`` with lone surrogates (JSON ``\\ud800`` escapes) replaced: storage refuses them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(
            value.replace("Z", "+00:00") if value.endswith("Z") else value
        )
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=4096)
def project_from_cwd(cwd: str) -> str:
    """The project a working directory belongs to, named as sessions name it
    (:func:`~session_buddy.core.project.project_identity` of the git work tree containing it,
    found by looking for ``.git`` upwards, no subprocess; else of the folder itself). A
    folder that no longer exists is named by its last component."""
    parts = [p for p in re.split(r"[\\/]", cwd) if p]
    fallback = parts[-1] if parts else cwd
    path = Path(cwd)
    try:
        if path.is_absolute() and path.is_dir():
            for candidate in (path, *path.parents):
                if (candidate / ".git").exists():
                    return project_identity(candidate).name if candidate.name else fallback
            return project_identity(path).name
    except OSError:
        pass
    return fallback


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text):,} chars]"


def _argument(value: object) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
    return _clip(text.replace("\r", " "), TOOL_ARG_CHARS)


def summarise_tool_use(name: str, arguments: object) -> str:
    """``[tool_use Bash] command=pytest -q`` — the tool and its key arguments."""
    if not isinstance(arguments, dict):
        return f"[tool_use {name}]"
    keys = KEY_ARGUMENTS.get(name)
    if keys is None:  # unknown tool (MCP...): its first few scalar arguments
        keys = tuple(k for k, v in arguments.items() if isinstance(v, str | int | float | bool))[:3]
    shown = [
        f"{k}={_argument(arguments[k])}"
        for k in keys
        if k in arguments and arguments[k] not in (None, "")
    ]
    return f"[tool_use {name}]" + (" " + " ".join(shown) if shown else "")


def _result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "image":
                    parts.append("[image]")
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return "" if content is None else str(content)


def summarise_tool_result(
    block: dict[str, Any], tool: str | None, limit: int = TOOL_RESULT_CHARS
) -> tuple[str, int]:
    """``[tool_result Bash error] <text, cut at limit>`` and the original length in characters."""
    text = _result_text(block.get("content"))
    label = (
        "tool_result" + (f" {tool}" if tool else "") + (" error" if block.get("is_error") else "")
    )
    length = len(text)
    if length > limit:
        text = text[:limit] + f"\n… [truncated: {length:,} chars in the original]"
    return f"[{label}] {text}", length


def parse_line(
    data: bytes, *, tools: ToolNames | None = None, transcript: str | None = None, number: int = 0
) -> ParsedLine:
    """The conversation turns of one transcript line (thinking blocks are left out)."""
    text, invalid = decode_line(data)
    if not text.strip():
        return ParsedLine([], "skipped", invalid)
    try:
        event = json.loads(text)
    except ValueError:
        return ParsedLine([], "malformed", invalid)
    if not isinstance(event, dict):
        return ParsedLine([], "malformed", invalid)
    kind = event.get("type")
    turn = _turn_maker(event, kind, transcript, number)
    if kind in ("summary", "system"):
        return _system_line(event, kind, turn, invalid)
    if kind not in ("user", "assistant"):
        return ParsedLine([], "skipped" if isinstance(kind, str) else "malformed", invalid)
    return _message_line(event, kind, tools, turn, invalid)


def _turn_maker(
    event: dict[str, Any], kind: Any, transcript: str | None, number: int
) -> Callable[..., Turn]:
    """Makes the turns of one line: its session, folder, time and metadata on each."""
    session_id = event.get("sessionId") if isinstance(event.get("sessionId"), str) else None
    cwd = event.get("cwd") if isinstance(event.get("cwd"), str) and event.get("cwd") else None
    stamp = parse_timestamp(event.get("timestamp"))
    base: dict[str, Any] = {"source": "claude-code", "type": kind}
    for key in ("uuid", "gitBranch", "cwd", "isSidechain", "agentId"):
        value = event.get(key)
        if value is not None and value != "":
            base[key] = value
    if transcript:
        base["transcript"] = transcript
    base["line"] = number

    def turn(role: str, content: str, prose: bool = False, **extra: Any) -> Turn:
        return Turn(role, valid_text(content), session_id, cwd, stamp, {**base, **extra}, prose)

    return turn


def _system_line(
    event: dict[str, Any], kind: str, turn: Callable[..., Turn], invalid: bool
) -> ParsedLine:
    """A compaction summary or a system note as a system turn (noisy subtypes skipped)."""
    if kind == "summary":
        summary = event.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            return ParsedLine([], "skipped", invalid)
        extra = {"leafUuid": event["leafUuid"]} if isinstance(event.get("leafUuid"), str) else {}
        return ParsedLine(
            [turn("system", f"Session summary: {summary.strip()}", **extra)], "turns", invalid
        )
    content = event.get("content")
    subtype = event.get("subtype")
    if not isinstance(content, str) or not content.strip() or subtype in NOISY_SYSTEM_SUBTYPES:
        return ParsedLine([], "skipped", invalid)
    system_extra = {"subtype": subtype} if isinstance(subtype, str) else {}
    return ParsedLine([turn("system", content.strip(), **system_extra)], "turns", invalid)


def _message_line(
    event: dict[str, Any],
    kind: str,
    tools: ToolNames | None,
    turn: Callable[..., Turn],
    invalid: bool,
) -> ParsedLine:
    """A user or assistant message: one text turn (tool names as its metadata) and a turn per
    tool result."""
    message = event.get("message")
    if not isinstance(message, dict):
        return ParsedLine([], "malformed", invalid)
    if event.get("isMeta"):  # Claude Code's own injected notes ("Caveat: ...")
        return ParsedLine([], "skipped", invalid)
    role: str = message["role"] if message.get("role") in ("user", "assistant") else kind
    content = message.get("content")
    turns: list[Turn] = []
    user_text = False
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        blocks = content
    else:
        return ParsedLine([], "malformed", invalid)
    texts: list[str] = []
    called: list[str] = []  # tool names: metadata of this line's text turn, never a turn
    for index, block in enumerate(blocks):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype == "text":
            value = block.get("text")
            if isinstance(value, str) and value.strip():
                texts.append(value)
        elif btype == "tool_use":
            name = str(block.get("name") or "tool")
            if tools is not None and isinstance(block.get("id"), str):
                tools.add(block["id"], name, summarise_tool_use(name, block.get("input")))
            called.append(name)
        elif btype == "tool_result":
            result = _tool_result_turn(block, tools, lambda c, **x: turn("tool", c, **x))
            if result is not None:
                result.metadata["block_index"] = index
                turns.append(result)
        # thinking / redacted_thinking / image / document: not stored
    joined = "\n\n".join(t.strip("\n") for t in texts)
    if texts and not is_marker_only(joined):
        extra = {"tools": called} if called else {}
        if role == "user" and event.get("isCompactSummary"):
            turns.insert(0, turn("system", joined, compact_summary=True, **extra))
        else:
            turns.insert(0, turn(role, joined, prose=role == "assistant", **extra))
            user_text = role == "user"
        called = []  # kept on the text turn
    message_id = message.get("id") if isinstance(message.get("id"), str) else None
    outcome = "turns" if turns else "skipped"
    return ParsedLine(turns, outcome, invalid, user_text, called, message_id)


def _tool_result_turn(
    block: dict[str, Any], tools: ToolNames | None, make: Callable[..., Turn]
) -> Turn | None:
    """The turn of a tool result, or None when it is only a marker (an empty result) or the
    answer of one of session-buddy's own tools."""
    tool_id = block.get("tool_use_id") if isinstance(block.get("tool_use_id"), str) else None
    tool = tools.get(tool_id) if (tools is not None and tool_id) else None
    if tool and tool.startswith(OWN_TOOL_PREFIXES):
        return None
    summary, length = summarise_tool_result(block, tool)
    if is_marker_only(summary):
        return None
    extra: dict[str, Any] = {"block": "tool_result", "result_chars": length}
    if tool:
        extra["tool"] = tool
    if tool_id:
        extra["tool_use_id"] = tool_id
        call = tools.call(tool_id) if tools is not None else None
        if call:
            extra["tool_call"] = call
    if block.get("is_error"):
        extra["is_error"] = True
    return make(summary, **extra)


def file_context(
    path: Path, limit_bytes: int = 4 << 20
) -> tuple[str | None, str | None, datetime | None]:
    """The first ``cwd``, ``sessionId`` and ``timestamp`` of a transcript (scanning at most
    ``limit_bytes``): the context for lines that carry none (summaries at the top of a file)."""
    cwd: str | None = None
    session: str | None = None
    stamp: datetime | None = None
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            for raw in LineReader(fh, 0, 0, min(size, limit_bytes), max_line=1 << 20):
                if raw.data is None or b'"cwd"' not in raw.data:
                    continue
                try:
                    event = json.loads(raw.data)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if cwd is None and isinstance(event.get("cwd"), str) and event["cwd"]:
                    cwd = event["cwd"]
                if session is None and isinstance(event.get("sessionId"), str):
                    session = event["sessionId"]
                stamp = stamp or parse_timestamp(event.get("timestamp"))
                if cwd and session and stamp:
                    break
    except OSError:
        pass
    return cwd, session, stamp


# -- the work of one session ----------------------------------------------------------------

#: Tools that change a file, and the argument naming it.
EDIT_TOOLS = {
    "Edit": "file_path",
    "Write": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}
#: What Claude Code puts in a user turn that nobody typed (slash commands, local commands).
_NOT_TYPED = ("<command-", "<local-command-", "Caveat:", "<system-reminder>")
#: Lines longer than this are not read for the session's work (tool results, images).
WORK_LINE_BYTES = 4 << 20
#: Assistant texts kept for the handoff (the newest).
WORK_TEXTS = 200


class _WorkScan:
    """Streams events; the work begins at the last prompt typed before ``since`` (a session
    opened by ``start`` after the prompt that asked for it), else at ``since``."""

    def __init__(self, since: datetime | None) -> None:
        self.since = since
        self.work = TranscriptFacts()
        self.calls: dict[str, str] = {}

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        message = event.get("message")
        if kind not in ("user", "assistant") or not isinstance(message, dict):
            return
        if event.get("isMeta") or event.get("isCompactSummary") or event.get("isSidechain"):
            return
        stamp = parse_timestamp(event.get("timestamp"))
        before = self.since is not None and stamp is not None and stamp < self.since
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            return
        texts: list[str] = []
        for block in blocks:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif btype == "tool_use" and kind == "assistant":
                self._tool_use(block)
            elif btype == "tool_result":
                self._tool_result(block)
        text = "\n\n".join(t.strip() for t in texts if t.strip())
        if not text or is_marker_only(text):
            return
        if kind == "user":
            self._prompt(text, before)
        elif len(self.work.texts) < WORK_TEXTS * 2:
            self.work.texts.append(text[:4000])
        else:
            self.work.texts = [*self.work.texts[-WORK_TEXTS:], text[:4000]]

    def _prompt(self, text: str, before: bool) -> None:
        if text.startswith(_NOT_TYPED):
            return
        if before:  # a later prompt before the start: the work begins there
            self.work = TranscriptFacts(goal=text[:2000])
        elif self.work.goal is None:
            self.work.goal = text[:2000]

    def _tool_use(self, block: dict[str, Any]) -> None:
        name = str(block.get("name") or "tool")
        arguments = block.get("input")
        if isinstance(block.get("id"), str):
            self.calls[block["id"]] = summarise_tool_use(name, arguments)
        key = EDIT_TOOLS.get(name)
        if key and isinstance(arguments, dict) and isinstance(arguments.get(key), str):
            path = arguments[key]
            if path and path not in self.work.edited:
                self.work.edited.append(path)

    def _tool_result(self, block: dict[str, Any]) -> None:
        if not block.get("is_error"):
            self.work.last_error = None
            return
        tool_id = block.get("tool_use_id")
        call = self.calls.get(tool_id) if isinstance(tool_id, str) else None
        first = next((ln for ln in _result_text(block.get("content")).splitlines() if ln), "")
        self.work.last_error = _clip(f"{call or '[tool_use]'}: {first}".strip(), 300)


def transcript_work(paths: list[Path], since: datetime | None) -> TranscriptFacts:
    """The goal, the assistant's texts, the files edited and an unresolved tool error of the
    session in ``paths`` (its main transcript first), from the prompt that began the work on.
    Lines of other kinds, helper agents and overlong lines are skipped; unreadable files too."""
    scan = _WorkScan(since)
    for path in paths[:1]:  # subagents' prompts are not the user's, their edits are in git
        try:
            size = path.stat().st_size
            with path.open("rb") as fh:
                for raw in LineReader(fh, 0, 0, size, max_line=WORK_LINE_BYTES):
                    if raw.data is None:
                        continue
                    try:
                        event = json.loads(decode_line(raw.data)[0])
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        scan.feed(event)
        except OSError:
            continue
    return scan.work
