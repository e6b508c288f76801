"""Sync: push new and changed memories to a remote (Akosha), resumable and exactly-once.

What is pushed, in three streams: items (conversations, reflections, insights, with their
stored vectors) and the ``sessions`` and ``quality`` records (a text summary, embedded at
sync time). Each stream is read in ``(updated_at, id)`` order after its cursor, a record of
the ``sync`` collection; the cursor moves only after a batch is answered (or its failures
are in the dead-letter queue), so a sync killed at any point resumes where it stopped.

A memory's ``memory_id`` is derived from what it is (item id + content hash; record
collection + id + text hash): sending a batch again never makes a second copy at the
remote, which keys memories by ``memory_id`` and answers "already stored" (counted as
stored). A changed text is a new version with a new ``memory_id``; older versions and
deleted items are not removed at the remote (deletes do not propagate).

Resilience (:mod:`session_buddy.core.resilience`): each batch is tried up to
``sync.max_attempts`` times with backoff and full jitter, only its refused items again;
every call goes through the remote's circuit breaker. What still fails goes to the
dead-letter queue (``sync_dlq`` records, one per failed batch holding the memories still
to deliver, with the last error), retried
with backoff at every round while the circuit is closed, and by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from session_buddy.adapters.embeddings._base import EmbeddingsBase
from session_buddy.adapters.storage._base import MemoryItem, Record, StorageBase
from session_buddy.adapters.sync._base import Memory, RemoteError, SyncBase
from session_buddy.core.events import SYNC_FAILED, EventBus, bus_from
from session_buddy.core.resilience import (
    OPEN,
    Backoff,
    CircuitBreaker,
    CircuitOpen,
    DeadLetters,
    retry,
)
from session_buddy.core.telemetry import span
from session_buddy.settings import SessionBuddySettings, SyncSettings

log = logging.getLogger(__name__)

SYNC_COLLECTION = "sync"
DLQ_COLLECTION = "sync_dlq"
ITEMS = "items"
#: record collections pushed (the session service's collection names)
RECORD_STREAMS = ("sessions", "quality")
#: whole-call errors that are about us, not the data: stop, do not dead-letter
AUTH_STATUS = (401, 403)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class PartialFailure(Exception):
    """Some memories of a batch were refused (the remote answered; retry those)."""

    retryable = True

    def __init__(self, errors: dict[str, str]) -> None:
        first = next(iter(errors.values()), "")
        super().__init__(f"{len(errors)} memories refused, e.g. {first}")
        self.errors = errors


@dataclass
class RoundReport:
    """What one sync round did."""

    started_at: str = ""
    duration_s: float = 0.0
    pushed: int = 0
    stored: int = 0
    already: int = 0
    retries: int = 0
    dead_lettered: int = 0
    dlq_recovered: int = 0
    skipped_no_vector: int = 0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)

    def note(self, error: str) -> None:
        self.errors = [*self.errors[-4:], error]


def item_memory(item: MemoryItem, vector: np.ndarray, source: str) -> Memory:
    return {
        "memory_id": f"sb-{item.id}-{item.content_hash[:16]}",
        "text": item.content,
        "embedding": np.asarray(vector, dtype=np.float32).tolist(),
        "metadata": {
            "source": source,
            "original_id": item.id,
            "created_at": _iso(item.created_at),
            "updated_at": _iso(item.updated_at),
            "type": item.kind,
            "project": item.project,
            "session_id": item.session_id,
            "role": item.role,
            "tags": list(item.tags),
            "author": item.author,
        },
    }


def record_text(record: Record) -> str:
    """A record as one line of text to embed and store."""
    what = "Session" if record.collection == "sessions" else "Quality checkpoint"
    data = json.dumps(record.data, sort_keys=True, ensure_ascii=False, default=str)
    return (
        f"{what} {record.id} of project {record.project or '-'} "
        f"({record.status or 'recorded'}, {_iso(record.created_at)}): {data[:4000]}"
    )


def record_memory(record: Record, text: str, vector: np.ndarray, source: str) -> Memory:
    return {
        "memory_id": f"sb-{record.collection}-{record.id}-{_short_hash(text)}",
        "text": text,
        "embedding": np.asarray(vector, dtype=np.float32).tolist(),
        "metadata": {
            "source": source,
            "original_id": f"{record.collection}:{record.id}",
            "created_at": _iso(record.created_at),
            "updated_at": _iso(record.updated_at),
            "type": "session" if record.collection == "sessions" else "quality",
            "project": record.project,
            "status": record.status,
        },
    }


class SyncService:
    """Sync rounds (background and on demand), status, and the dead-letter queue."""

    def __init__(
        self,
        storage: StorageBase,
        embeddings: EmbeddingsBase,
        sync: SyncBase,
        settings: SyncSettings,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        events: EventBus | None = None,
    ) -> None:
        self.events = events or EventBus()
        self.storage = storage
        self.embeddings = embeddings
        self.sync = sync
        self.settings = settings
        self.source = settings.source or f"session-buddy@{socket.gethostname()}"
        self.breaker = CircuitBreaker(
            sync.remote, settings.breaker_failures, settings.breaker_cooldown_s
        )
        sync.circuit_state = self.breaker.snapshot  # health reads it from the adapter
        self.backoff = Backoff(
            settings.backoff_base_s, settings.backoff_max_s, settings.max_attempts
        )
        self.dead = DeadLetters(
            storage,
            DLQ_COLLECTION,
            Backoff(settings.dlq_backoff_base_s, settings.dlq_backoff_max_s, 1),
        )
        self._sleep = sleep
        self._round_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.last: RoundReport | None = None

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> SyncService:
        settings: SessionBuddySettings = resolve(SessionBuddySettings)
        return cls(
            resolve(StorageBase),
            resolve(EmbeddingsBase),
            resolve(SyncBase),
            settings.sync,
            events=bus_from(resolve),
        )

    @property
    def batch_size(self) -> int:
        return min(self.settings.batch_size, self.sync.max_batch)

    def _streams(self) -> list[str]:
        return [ITEMS, *(RECORD_STREAMS if self.settings.records else ())]

    # -- cursors ----------------------------------------------------------------------------

    async def cursor(self, stream: str) -> tuple[datetime, str] | None:
        record = await self.storage.get_record(SYNC_COLLECTION, f"cursor:{stream}")
        if record is None or not record.data.get("updated_at"):
            return None
        return datetime.fromisoformat(record.data["updated_at"]), str(record.data["id"])

    async def _advance(self, stream: str, key: tuple[datetime, str], pushed: int) -> None:
        now = datetime.now(UTC)

        def change(current: Record | None) -> Record | None:
            data = dict(current.data) if current else {}
            if data.get("updated_at"):
                old = (datetime.fromisoformat(data["updated_at"]), str(data["id"]))
                if old >= key:
                    return None  # another writer (a second service) went further
            data.update(
                updated_at=_iso(key[0]),
                id=key[1],
                pushed=int(data.get("pushed", 0)) + pushed,
                advanced_at=_iso(now),
            )
            return Record(
                collection=SYNC_COLLECTION,
                id=f"cursor:{stream}",
                data=data,
                created_at=current.created_at if current else now,
                updated_at=now,
            )

        await self.storage.modify_record(SYNC_COLLECTION, f"cursor:{stream}", change)

    # -- one round ---------------------------------------------------------------------------

    async def sync_now(self) -> dict[str, Any]:
        """Run one round now (waits for a running one to finish first)."""
        if not self.sync.enabled:
            raise RemoteError(
                "sync is off (adapters.sync = none); set adapters.sync: akosha", retryable=False
            )
        async with self._round_lock, span("sync.round", remote=self.sync.remote):
            report = RoundReport(started_at=_iso(datetime.now(UTC)))
            start = time.perf_counter()
            try:
                for stream in self._streams():
                    if not await self._push_stream(stream, report):
                        break
                if report.stopped is None:
                    await self._drain_dead(report)
            finally:
                report.duration_s = round(time.perf_counter() - start, 3)
                self.last = report
                await self._save_report(report)
                self._tell_failure(report)
            return asdict(report)

    def _tell_failure(self, report: RoundReport) -> None:
        """A ``sync.failed`` event for a round that stopped or parked memories."""
        if report.stopped is None and not report.dead_lettered:
            return
        self.events.emit(
            SYNC_FAILED,
            remote=self.sync.remote,
            stopped=report.stopped,
            error=report.errors[-1] if report.errors else None,
            dead_lettered=report.dead_lettered,
            stored=report.stored,
            circuit=self.breaker.current(),
        )

    async def _page(
        self, stream: str, after: tuple[datetime, str] | None
    ) -> list[tuple[Any, np.ndarray | None]]:
        limit = self.batch_size
        rows: list[tuple[Any, np.ndarray | None]]
        if stream == ITEMS:
            rows = list(await self.storage.changed_items(after, limit))
        else:
            rows = [(r, None) for r in await self.storage.changed_records(stream, after, limit)]
        settled = datetime.now(UTC) - timedelta(seconds=self.settings.settle_s)
        return [(x, v) for x, v in rows if x.updated_at <= settled]

    async def _memories(
        self, rows: list[tuple[Any, np.ndarray | None]], report: RoundReport
    ) -> list[Memory]:
        """The rows as memories; rows without a vector are embedded now, or skipped when
        embeddings are off (the none adapter). A model that fails raises: the round stops
        and the cursor stays, so nothing is skipped for a passing problem."""
        texts = [r.content if isinstance(r, MemoryItem) else record_text(r) for r, _ in rows]
        missing = [i for i, (_, v) in enumerate(rows) if v is None]
        vectors: dict[int, np.ndarray] = {i: v for i, (_, v) in enumerate(rows) if v is not None}
        if missing and self.embeddings.state != "disabled":
            made = await self.embeddings.embed([texts[i] for i in missing])
            vectors.update(zip(missing, made, strict=True))
        memories: list[Memory] = []
        for i, (row, _) in enumerate(rows):
            vector = vectors.get(i)
            if vector is None:
                report.skipped_no_vector += 1
            elif isinstance(row, MemoryItem):
                memories.append(item_memory(row, vector, self.source))
            else:
                memories.append(record_memory(row, texts[i], vector, self.source))
        return memories

    async def _push_stream(self, stream: str, report: RoundReport) -> bool:
        """Push a stream's changes batch by batch; False when the round must stop."""
        after = await self.cursor(stream)
        while True:
            rows = await self._page(stream, after)
            if not rows:
                return True
            try:
                memories = await self._memories(rows, report)
            except Exception as exc:
                report.stopped = f"embedding for sync failed: {exc}"
                report.note(report.stopped)
                return False
            advance, go_on = await self._deliver(memories, report) if memories else (True, True)
            if advance:
                last = rows[-1][0]
                after = (last.updated_at, last.id)
                await self._advance(stream, after, len(memories))
            if not go_on:
                return False

    async def _deliver(self, memories: list[Memory], report: RoundReport) -> tuple[bool, bool]:
        """Push one batch with retries. Returns (move the cursor past it, go on): what still
        fails after the last try goes to the dead-letter queue (the cursor moves on); the
        round stops when the circuit is open, or on an auth error (the cursor stays)."""
        pending = {str(m["memory_id"]): m for m in memories}
        report.pushed += len(pending)
        tries = 0

        async def attempt() -> None:
            nonlocal tries
            tries += 1
            with span("sync.push", memories=len(pending), attempt=tries):
                result = await self.breaker.call(lambda: self.sync.push(list(pending.values())))
            for memory_id in result.stored:
                pending.pop(memory_id, None)
            report.stored += len(result.stored)
            report.already += result.already
            if result.failed:
                raise PartialFailure(result.failed)

        def counted(n: int, exc: BaseException, wait: float) -> None:
            report.retries += 1
            log.info("sync: retry %d in %.2fs after %s", n, wait, exc)

        try:
            await retry(attempt, self.backoff, sleep=self._sleep, on_retry=counted)
            return True, True
        except PartialFailure as exc:
            await self._dead_letter(pending, exc.errors, report)
            return True, True
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            report.note(error)
            if getattr(exc, "status", None) in AUTH_STATUS or (
                isinstance(exc, CircuitOpen) and tries <= 1
            ):
                report.stopped = error
                return False, False
            # tries are spent: park the batch, go on unless the circuit opened
            await self._dead_letter(pending, dict.fromkeys(pending, error), report)
            if self.breaker.current() == OPEN:
                report.stopped = f"circuit to {self.sync.remote} is open: {error}"
                return True, False
            return True, True

    async def _dead_letter(
        self, pending: dict[str, Memory], errors: dict[str, str], report: RoundReport
    ) -> None:
        """Park what is left of a batch as one dead letter (its key is made from its
        memory_ids, so parking the same batch again after a restart counts one more try)."""
        if not pending:
            return
        key = "batch-" + _short_hash("\n".join(sorted(pending)))
        first = next(iter(errors.values()), "refused")
        await self.dead.add(key, {"memories": list(pending.values()), "errors": errors}, first)
        report.dead_lettered += len(pending)

    # -- the dead-letter queue --------------------------------------------------------------

    async def _drain_dead(self, report: RoundReport) -> None:
        """Retry each due dead letter once (one call each) while the remote answers."""
        for entry in await self.dead.due(limit=100_000):
            memories = {str(m["memory_id"]): m for m in entry.data["payload"]["memories"]}
            try:
                batch = list(memories.values())
                result = await self.breaker.call(lambda: self.sync.push(batch))  # noqa: B023
            except CircuitOpen as exc:
                report.note(f"dead letters: {exc}")
                return
            except Exception as exc:
                report.note(f"dead letters: {exc}")
                await self.dead.add(entry.id, entry.data["payload"], str(exc))
                return
            report.dlq_recovered += len(result.stored)
            if not result.failed:
                await self.dead.remove(entry.id)
                continue
            left = [memories[i] for i in result.failed]
            first = next(iter(result.failed.values()))
            await self.dead.add(entry.id, {"memories": left, "errors": result.failed}, first)

    async def retry_dead(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Make dead letters due now (all, or those keys) and retry them."""
        made_due = await self.dead.make_due(list(keys) if keys is not None else None)
        async with self._round_lock:
            report = RoundReport(started_at=_iso(datetime.now(UTC)))
            await self._drain_dead(report)
        return {
            "made_due": made_due,
            "recovered": report.dlq_recovered,
            "errors": report.errors,
            "left": await self.dead.size(),
            "circuit": self.breaker.current(),
        }

    async def drop_dead(self, keys: Sequence[str] | None = None) -> int:
        """Forget dead letters (all, or those keys); returns how many."""
        targets = [r.id for r in await self.dead.entries()] if keys is None else list(keys)
        dropped = 0
        for key in targets:
            dropped += bool(await self.dead.remove(key))
        return dropped

    async def dlq(
        self, action: str, ids: Sequence[str] | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """The dead-letter queue's commands: ``list``, ``retry`` or ``drop``."""
        if action == "list":
            entries, memories = await self.dead_size()
            return {"size": entries, "memories": memories, "entries": await self.list_dead(limit)}
        if action == "retry":
            return await self.retry_dead(ids)
        if action == "drop":
            return {"dropped": await self.drop_dead(ids), "left": await self.dead.size()}
        raise ValueError(f"action must be list, retry or drop, not {action!r}")

    async def list_dead(self, limit: int = 50) -> list[dict[str, Any]]:
        found = []
        for r in (await self.dead.entries())[: max(0, limit)]:
            memories = r.data["payload"]["memories"]
            found.append(
                {
                    "id": r.id,
                    "memories": len(memories),
                    "original_ids": [m["metadata"].get("original_id") for m in memories[:5]],
                    "types": sorted({str(m["metadata"].get("type")) for m in memories}),
                    "attempts": r.data.get("attempts"),
                    "last_error": r.data.get("last_error"),
                    "first_failed_at": r.data.get("first_failed_at"),
                    "due_at": r.data.get("due_at"),
                }
            )
        return found

    async def dead_size(self) -> tuple[int, int]:
        """(dead letters, memories in them)."""
        entries = await self.dead.entries()
        return len(entries), sum(len(r.data["payload"]["memories"]) for r in entries)

    # -- status --------------------------------------------------------------------------------

    async def _save_report(self, report: RoundReport) -> None:
        now = datetime.now(UTC)
        await self.storage.put_record(
            Record(
                collection=SYNC_COLLECTION,
                id="last_round",
                data=asdict(report),
                created_at=now,
                updated_at=now,
            )
        )

    async def status(self) -> dict[str, Any]:
        """Cursor and lag per stream, circuit state, dead-letter size, the last round."""
        now = datetime.now(UTC)
        streams: dict[str, Any] = {}
        for stream in self._streams():
            after = await self.cursor(stream)
            if stream == ITEMS:
                nxt: Any = await self.storage.changed_items(after, 1)
                oldest = nxt[0][0].updated_at if nxt else None
            else:
                recs = await self.storage.changed_records(stream, after, 1)
                oldest = recs[0].updated_at if recs else None
            streams[stream] = {
                "cursor": _iso(after[0]) if after else None,
                "cursor_id": after[1] if after else None,
                "lag_s": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
                "up_to_date": oldest is None,
            }
        last = await self.storage.get_record(SYNC_COLLECTION, "last_round")
        dlq = await self.dead_size()
        last_data = last.data if last else None
        return {
            "adapter": self.sync.name,
            "enabled": self.sync.enabled,
            "remote": self.sync.remote,
            "interval_s": self.settings.interval_s,
            "background": self._task is not None and not self._task.done(),
            "streams": streams,
            "lag_s": max((s["lag_s"] for s in streams.values()), default=0.0),
            "circuit": self.breaker.snapshot(),
            "dlq_size": dlq[0],
            "dlq_memories": dlq[1],
            "last_round": last_data,
            "last_error": ((last_data or {}).get("errors") or [None])[-1],
        }

    # -- the background loop ------------------------------------------------------------------

    def start(self) -> asyncio.Task[None] | None:
        """Start the background loop (every ``sync.interval_s``); None when sync is off."""
        if not self.sync.enabled or self.settings.interval_s <= 0:
            return None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sync")
        return self._task

    async def _loop(self) -> None:
        while True:
            try:
                report = await self.sync_now()
                if report["errors"]:
                    log.warning("sync round: %s", report["errors"][-1])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sync round failed: %s", exc)
            await asyncio.sleep(self.settings.interval_s)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.sync.close()
