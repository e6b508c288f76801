"""Automatic capture: import Claude Code transcripts and the insights in them.

:class:`CaptureService` imports transcript files incrementally and idempotently:

* Per file, a record in the ``transcripts`` collection keeps the path, size, inode/device,
  mtime, a hash of the first bytes, the byte offset just after the last complete line
  processed, the line number and the open insight block (if any). A file that grew is read
  from that offset; a file that shrank, or whose start changed, is read again from the start
  (deduplication makes that safe); a last line without its newline is left for later.
* Turns go to :meth:`MemoryService.store` in batches (``batch_size``, 256 by default); the
  offset is saved after each stored batch. A killed import resumes from the last saved offset;
  what was stored after it is found again as duplicates (same kind, project and content), so
  the stored items are exactly those of one clean import.
* Assistant prose is scanned for insight blocks while reading (:mod:`.insights`).

Reading and parsing run in a worker thread, a batch ahead of the store, so the event loop
stays free and parsing overlaps with embedding. Memory is bounded by one read chunk, one line
and two batches, whatever the size of the file.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from session_buddy.adapters.storage._base import Record, StorageBase
from session_buddy.core.errorfix import ErrorMemory
from session_buddy.core.events import EventBus, bus_from
from session_buddy.core.failures import FixEvent, FixTracker
from session_buddy.core.insights import (
    FoundInsight,
    InsightExtractor,
    InsightRecorder,
    insight_statistics,
    list_insights,
)
from session_buddy.core.memory import ItemInput, MemoryService, StoreResult
from session_buddy.core.transcripts import (
    HEAD_BYTES,
    LineReader,
    ParsedLine,
    ToolNames,
    Turn,
    claude_projects_dir,
    discover,
    encode_project_dir,
    file_context,
    head_hash,
    is_internal_transcript,
    parse_line,
    project_from_cwd,
)
from session_buddy.errors import ValidationError
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

STATE_COLLECTION = "transcripts"
DEFAULT_BATCH = 256
#: A batch is also stored early when its texts reach this many characters.
BATCH_CHARS = 4_000_000

Progress = Callable[[int, int], Awaitable[None] | None]


@dataclass
class ImportReport:
    """What an import did (all counts are for this run)."""

    files: int = 0  # transcript files looked at
    files_read: int = 0  # files with new lines read
    files_unchanged: int = 0
    files_restarted: int = 0  # truncated or rewritten: read again from the start
    turns: int = 0  # conversation turns found in the new lines
    stored: int = 0  # turns stored
    duplicates: int = 0  # turns already stored (same kind, project and content)
    rejected: int = 0  # turns the storage refused (reasons in errors)
    insights: int = 0  # new insights stored
    insight_duplicates: int = 0
    errors_fixed: int = 0  # failures the transcript shows fixed (core.errorfix)
    lines: int = 0  # complete lines read
    malformed: int = 0  # lines that are not a JSON object of a known shape
    invalid_utf8: int = 0  # lines with bytes that are not UTF-8 (replaced by U+FFFD)
    oversized: int = 0  # lines too long to read (skipped)
    skipped: int = 0  # lines with nothing to store (bookkeeping, thinking only, meta)
    pending_bytes: int = 0  # an incomplete last line waits for its newline
    bytes_read: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["errors"] = self.errors[:20]
        return data

    def add(self, other: ImportReport) -> None:
        for name, value in asdict(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        self.errors.extend(other.errors)


@dataclass
class _Batch:
    items: list[ItemInput]
    insights: list[FoundInsight]
    end_offset: int
    end_line: int
    lines: int = 0
    malformed: int = 0
    invalid_utf8: int = 0
    oversized: int = 0
    skipped: int = 0
    extractor_state: dict[str, Any] | None = None
    fix_events: list[FixEvent] = field(default_factory=list)
    fix_state: dict[str, Any] | None = None  # the FixTracker's, for the next import
    tool_calls: list[list[str]] | None = None  # the newest tool calls, for the next import
    cwd: str | None = None
    session_id: str | None = None
    pending: int = 0
    last: bool = False


class CaptureService:
    def __init__(
        self,
        memory: MemoryService,
        storage: StorageBase,
        settings: SessionBuddySettings,
        *,
        batch_size: int = DEFAULT_BATCH,
        events: EventBus | None = None,
    ) -> None:
        self.memory = memory
        self.storage = storage
        self.settings = settings
        self.batch_size = batch_size
        self.insights = InsightRecorder(memory, storage, events)
        self.errors = ErrorMemory(storage, settings)
        self._lock: asyncio.Lock | None = None
        self._batches_done = 0  # batches stored by this service (tests pause on it)

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> CaptureService:
        return cls(
            resolve(MemoryService),
            resolve(StorageBase),
            resolve(SessionBuddySettings),
            events=bus_from(resolve),
        )

    # -- importing -----------------------------------------------------------------------

    async def import_transcripts(
        self,
        path: Path | str | None = None,
        *,
        since: datetime | None = None,
        progress: Progress | None = None,
        batch_size: int | None = None,
    ) -> ImportReport:
        """Import every transcript under ``path`` (a folder or one file; default: Claude
        Code's projects folder). ``since``: only files modified at or after it."""
        root = Path(path).expanduser() if path else claude_projects_dir()  # noqa: ASYNC240
        if not await asyncio.to_thread(root.exists):
            raise ValidationError(
                f"{root} does not exist: give the folder holding Claude Code transcripts "
                "(default ~/.claude/projects) or one .jsonl file"
            )
        files = await asyncio.to_thread(discover, root)
        if since is not None:
            stamp = since.timestamp()
            files = [f for f in files if _mtime(f) >= stamp]
        return await self.import_files(files, progress=progress, batch_size=batch_size)

    async def import_files(
        self,
        files: Sequence[Path],
        *,
        progress: Progress | None = None,
        batch_size: int | None = None,
    ) -> ImportReport:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            started = time.perf_counter()
            report = ImportReport(files=len(files))
            plans: list[Path] = []
            total = 0
            for path in files:
                try:
                    size = path.stat().st_size
                except OSError as exc:
                    report.errors.append(f"{path}: {exc.strerror or exc}")
                    continue
                record = await self.storage.get_record(STATE_COLLECTION, _key(path))
                done = (
                    int(record.data.get("offset", 0))
                    if record and size >= int(record.data.get("offset", 0))
                    else 0
                )
                plans.append(path)
                total += max(0, size - done)
            counter = _ProgressCounter(total, progress)
            await counter.report()
            for path in plans:
                try:
                    await self._import_file(path, report, counter, batch_size or self.batch_size)
                except OSError as exc:
                    report.errors.append(f"{path}: {exc.strerror or exc}")
            counter.done = max(counter.done, counter.total)
            await counter.report(force=True)
            report.seconds = time.perf_counter() - started
            return report

    async def _import_file(
        self, path: Path, report: ImportReport, counter: _ProgressCounter, batch_size: int
    ) -> None:
        stat = await asyncio.to_thread(path.stat)
        key = _key(path)
        record = await self.storage.get_record(STATE_COLLECTION, key)
        state: dict[str, Any] = dict(record.data) if record else {}
        offset = int(state.get("offset", 0))
        line = int(state.get("line", 0))
        if state and not await asyncio.to_thread(_same_file, path, stat, state):
            report.files_restarted += 1
            counter.total += offset  # the part read before is read again
            state = {}
            offset = line = 0
        if (
            state
            and stat.st_size == int(state.get("size", -1))
            and stat.st_mtime_ns == int(state.get("mtime_ns", -1))
        ):
            report.files_unchanged += 1
            report.pending_bytes += int(state.get("pending", 0))
            return
        if offset >= stat.st_size and state:
            report.files_unchanged += 1
            await self._save(path, key, stat, state, offset, line, record)
            return
        report.files_read += 1
        state.setdefault("started_at", datetime.now(UTC).isoformat())
        batches = _read_batches(
            path,
            offset,
            line,
            stat.st_size,
            batch_size=batch_size,
            max_bytes=self.settings.storage.max_content_bytes,
            insight_open=state.get("insight_open"),
            fix_open=state.get("fix_open"),
            tool_calls=state.get("tool_calls"),
            cwd=state.get("cwd"),
            session=state.get("session_id"),
        )
        pending_next: asyncio.Future[_Batch | None] = asyncio.ensure_future(
            asyncio.to_thread(next, batches, None)
        )
        try:
            while True:
                batch = await pending_next
                if batch is None:
                    break
                # parse the next batch while this one is embedded and stored
                pending_next = (
                    _done(None)
                    if batch.last
                    else asyncio.ensure_future(asyncio.to_thread(next, batches, None))
                )
                await self._store_batch(path, key, stat, state, batch, report, counter)
                if batch.last:
                    break
        finally:
            # the reader thread may be mid-batch (a store failed): let it finish, then close
            await asyncio.gather(pending_next, return_exceptions=True)
            await asyncio.to_thread(batches.close)

    async def _store_batch(
        self,
        path: Path,
        key: str,
        stat: os.stat_result,
        state: dict[str, Any],
        batch: _Batch,
        report: ImportReport,
        counter: _ProgressCounter,
    ) -> None:
        results = await self._store_items(batch.items, report)
        created = sum(1 for r in results if r.created)
        report.turns += len(batch.items)
        report.stored += created
        report.duplicates += len(results) - created
        new_insights, seen = await self.insights.record(batch.insights)
        report.insights += new_insights
        report.insight_duplicates += seen
        report.errors_fixed += await self.errors.record(batch.fix_events)
        report.lines += batch.lines
        report.malformed += batch.malformed
        report.invalid_utf8 += batch.invalid_utf8
        report.oversized += batch.oversized
        report.skipped += batch.skipped
        self._batches_done += 1
        before = int(state.get("offset", 0))
        totals = state.setdefault("totals", {})
        for name, value in (
            ("turns", len(batch.items)),
            ("stored", created),
            ("insights", new_insights),
            ("malformed", batch.malformed),
            ("invalid_utf8", batch.invalid_utf8),
        ):
            totals[name] = int(totals.get(name, 0)) + value
        state["insight_open"] = batch.extractor_state
        state["fix_open"] = batch.fix_state
        state["tool_calls"] = batch.tool_calls or []
        if batch.cwd:
            state["cwd"] = batch.cwd
        if batch.session_id:
            state["session_id"] = batch.session_id
        state["pending"] = batch.pending if batch.last else 0
        await self._save(
            path, key, stat, state, batch.end_offset, batch.end_line, None, final=batch.last
        )
        report.bytes_read += max(0, batch.end_offset - before)
        if batch.last:
            report.pending_bytes += batch.pending
            counter.done += max(0, stat.st_size - before)
        else:
            counter.done += max(0, batch.end_offset - before)
        await counter.report()

    async def _store_items(self, items: list[ItemInput], report: ImportReport) -> list[StoreResult]:
        if not items:
            return []
        try:
            return await self.memory.store(items)
        except ValidationError:
            # one bad item must not cost the batch: store one by one, report the refused ones
            results: list[StoreResult] = []
            for item in items:
                try:
                    results.extend(await self.memory.store([item]))
                except ValidationError as exc:
                    report.rejected += 1
                    meta = item.metadata
                    report.errors.append(f"{meta.get('transcript')}:{meta.get('line')}: {exc}")
            return results

    async def _save(
        self,
        path: Path,
        key: str,
        stat: os.stat_result,
        state: dict[str, Any],
        offset: int,
        line: int,
        record: Record | None,
        *,
        final: bool = True,
    ) -> None:
        state["path"] = str(path)
        state["offset"] = offset
        state["line"] = line
        state["inode"] = stat.st_ino
        state["device"] = stat.st_dev
        # size and mtime say "nothing new" only once the whole file was read
        state["size"] = stat.st_size if final else -1
        state["mtime_ns"] = stat.st_mtime_ns if final else -1
        if int(state.get("head_bytes", 0)) < min(offset, HEAD_BYTES):
            state["head_bytes"] = min(offset, HEAD_BYTES)
            state["head"] = await asyncio.to_thread(head_hash, path, state["head_bytes"])
        state["updated_at"] = datetime.now(UTC).isoformat()
        cwd = state.get("cwd")
        await self.storage.put_record(
            Record(
                collection=STATE_COLLECTION,
                id=key,
                data=state,
                project=project_from_cwd(cwd) if isinstance(cwd, str) else None,
                status="complete" if final else "partial",
                created_at=record.created_at if record else _started_at(state),
            )
        )

    # -- the current session ---------------------------------------------------------------

    async def capture_session(
        self, session_id: str | None, transcript_path: str | None, project_dir: str | None
    ) -> dict[str, Any]:
        """Index the transcript of one session (and its subagents), for ``checkpoint`` and
        ``end``. Returns a report with ``found`` (False when no transcript could be located),
        ``stored`` turns and ``insights`` stored. Never raises for a missing transcript."""
        files = find_session_transcripts(session_id, transcript_path, project_dir)
        if not files:
            return {
                "found": False,
                "transcripts": [],
                "reason": "no Claude Code transcript found for this session "
                f"(looked under {claude_projects_dir()})",
                "stored": 0,
                "insights": 0,
            }
        report = await self.import_files(files)
        return {"found": True, "transcripts": [str(f) for f in files], **report.to_dict()}

    # -- insights ----------------------------------------------------------------------------

    async def search_insights(
        self, query: str, *, project: str | None = None, limit: int = 20
    ) -> list[Any]:
        """Insights matching ``query`` (hybrid search), or all newest first for ``*``."""
        if query.strip() in ("", "*"):
            access = await self.memory.access()
            return await list_insights(self.storage, project=project, limit=limit, access=access)
        response = await self.memory.search(
            query, projects=[project] if project else None, kinds=["insight"], limit=limit
        )
        return list(response.hits)

    async def insight_statistics(self) -> dict[str, Any]:
        return await insight_statistics(self.storage, access=await self.memory.access())


def find_session_transcripts(
    session_id: str | None, transcript_path: str | None, project_dir: str | None
) -> list[Path]:
    """The transcript of a session and its subagent transcripts, if they exist."""
    main: Path | None = None
    if transcript_path:
        candidate = Path(transcript_path).expanduser()
        if candidate.is_file():
            main = candidate
    root = claude_projects_dir()
    if main is None and session_id and root.is_dir():
        for candidate in root.glob(f"*/{_glob_safe(session_id)}.jsonl"):
            main = candidate
            break
    if main is None and project_dir:
        folder = root / encode_project_dir(project_dir)
        newest = sorted(folder.glob("*.jsonl"), key=_mtime) if folder.is_dir() else []
        if newest:
            main = newest[-1]
    if main is None:
        return []
    files = [main]
    subagents = main.parent / main.stem / "subagents"
    if subagents.is_dir():
        files += sorted(p for p in subagents.rglob("*.jsonl") if not is_internal_transcript(p))
    return files


# -- reading (runs in a worker thread) ------------------------------------------------------


def _read_batches(
    path: Path,
    offset: int,
    line: int,
    limit: int,
    *,
    batch_size: int,
    max_bytes: int,
    insight_open: dict[str, Any] | None,
    fix_open: dict[str, Any] | None,
    tool_calls: list[list[str]] | None,
    cwd: str | None,
    session: str | None,
) -> Generator[_Batch]:
    """Batches of items (and insights) from the complete lines of ``path`` after ``offset``
    (up to ``limit`` bytes). ``insight_open``, ``fix_open``, ``tool_calls``, ``cwd`` and
    ``session`` carry on from where an earlier import stopped; failures and fixes go to
    ``fix_events`` (:class:`~session_buddy.core.failures.FixTracker`). A line that only calls tools is no item: the
    tool names go to the metadata of the assistant turn of the same message."""
    transcript = str(path)
    tools = ToolNames(tool_calls)
    extractor = InsightExtractor(insight_open)
    tracker = FixTracker(fix_open)
    place = _Place(path, cwd, session)
    speaking: _Speaking = None  # the assistant turn that tool-only lines belong to

    def fresh(end: int, number: int) -> _Batch:
        return _Batch([], [], end, number)

    def close(done: _Batch) -> _Batch:
        done.extractor_state, done.cwd, done.session_id = (
            extractor.state(),
            place.cwd,
            place.session,
        )
        done.tool_calls = tools.recent()
        done.fix_state = tracker.state()
        return done

    with path.open("rb") as fh:
        reader = LineReader(fh, offset, line, limit)
        batch = fresh(offset, line)
        chars = 0
        for raw in reader:
            batch.lines += 1
            batch.end_offset, batch.end_line = raw.end, raw.number
            if raw.data is None:
                batch.oversized += 1
                continue
            parsed = parse_line(raw.data, tools=tools, transcript=transcript, number=raw.number)
            batch.invalid_utf8 += parsed.invalid_utf8
            if parsed.kind == "malformed":
                batch.malformed += 1
                continue
            _attach_tools(speaking, parsed)
            if parsed.kind == "skipped":
                batch.skipped += 1
                continue
            if parsed.user_text:
                extractor.interrupt()
            for turn in parsed.turns:
                item = place.item(turn, max_bytes)
                batch.items.append(item)
                chars += len(item.content)
                if turn.role == "assistant" or parsed.user_text:
                    speaking = (parsed.message_id, item) if turn.prose else None
                if turn.prose:
                    batch.insights.extend(_insights(extractor, turn, item))
                batch.fix_events += _fix_events(tracker, turn, item)
            if len(batch.items) >= batch_size or chars >= BATCH_CHARS:
                yield close(batch)
                batch = fresh(batch.end_offset, batch.end_line)
                speaking = None  # stored by now: its metadata is final
                chars = 0
        close(batch)
        batch.pending = reader.pending
        batch.last = True
        yield batch


_Speaking = tuple[str | None, ItemInput] | None


class _Place:
    """Where the turns of a transcript belong (folder, session, time), carried from line to
    line; a line without them (a summary) takes the file's own, read once."""

    def __init__(self, path: Path, cwd: str | None, session: str | None) -> None:
        self.path, self.cwd, self.session = path, cwd, session
        self._context_read = False
        self._first_stamp: datetime | None = None

    def item(self, turn: Turn, max_bytes: int) -> ItemInput:
        """The stored item of one turn (its text cut to ``max_bytes``)."""
        if turn.cwd:
            self.cwd = turn.cwd
        if (turn.cwd is None and self.cwd is None) or turn.created_at is None:
            if not self._context_read:
                self._context_read = True
                found_cwd, found_session, self._first_stamp = file_context(self.path)
                self.cwd, self.session = self.cwd or found_cwd, self.session or found_session
            turn.created_at = turn.created_at or self._first_stamp
        if turn.session_id:
            self.session = self.session or turn.session_id
        folder = turn.cwd or self.cwd
        content, cut = _fit(turn.content, max_bytes)
        metadata = turn.metadata
        if cut:
            metadata["truncated_from_chars"] = cut
        return ItemInput(
            content=content,
            kind="conversation",
            project=project_from_cwd(folder) if folder else None,
            session_id=turn.session_id or self.session or self.path.stem,
            role=turn.role,
            metadata=metadata,
            created_at=turn.created_at,
        )


def _insights(extractor: InsightExtractor, turn: Turn, item: ItemInput) -> list[FoundInsight]:
    """The insight blocks the assistant's prose of ``turn`` completes."""
    context: dict[str, Any] = {
        k: item.metadata[k]
        for k in ("uuid", "transcript", "line", "gitBranch", "isSidechain")
        if k in item.metadata
    }
    context["source"] = "claude-code"
    return [
        FoundInsight(block, item.project, item.session_id, turn.created_at, block.context)
        for block in extractor.feed(turn.content, context)
    ]


def _fix_events(tracker: FixTracker, turn: Turn, item: ItemInput) -> list[FixEvent]:
    """The failures and fixes one turn shows (:class:`~session_buddy.core.failures.FixTracker`)."""
    return tracker.feed(
        turn.role,
        turn.content,
        item.metadata,
        session_id=item.session_id,
        project=item.project,
        at=item.created_at,
    )


def _attach_tools(speaking: _Speaking, parsed: ParsedLine) -> None:
    """Add the tools a line called to the metadata of the assistant turn of the same message
    (Claude Code writes a message's text and each tool call on lines of their own)."""
    if not parsed.tools or speaking is None:
        return
    message_id, item = speaking
    if message_id is not None and message_id == parsed.message_id:
        item.metadata.setdefault("tools", []).extend(parsed.tools)


def _fit(text: str, max_bytes: int) -> tuple[str, int]:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes including a note saying so; and the
    original length in characters when it was cut (else 0)."""
    if len(text) * 4 <= max_bytes or len(text.encode("utf-8")) <= max_bytes:
        return text, 0
    note = f"\n… [truncated: {len(text):,} chars in the original]"
    budget = max(0, max_bytes - len(note.encode("utf-8")))
    cut = text.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return (cut + note if budget else cut[:max_bytes]), len(text)


def _same_file(path: Path, stat: os.stat_result, state: dict[str, Any]) -> bool:
    """Is this still the file the state describes, with the part read unchanged?"""
    offset = int(state.get("offset", 0))
    if stat.st_size < offset:
        return False  # truncated
    if offset == 0:
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(offset - 1)
            if fh.read(1) != b"\n":
                return False  # rewritten: the last line read no longer ends there
    except OSError:
        return False
    head_bytes = int(state.get("head_bytes", 0))
    # rewritten from the start when the first bytes changed
    return not head_bytes or head_hash(path, head_bytes) == state.get("head")


def _started_at(state: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(state["started_at"]))
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _key(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _glob_safe(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "-_.")


def _done(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class _ProgressCounter:
    """Bytes done out of bytes to read, sent to a callback at most every 0.1 s."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self._last = 0.0

    async def report(self, *, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        result = self.callback(min(self.done, self.total), self.total)
        if inspect.isawaitable(result):
            await result
