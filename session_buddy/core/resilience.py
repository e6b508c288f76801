"""Resilience for calls to remotes, written once: retry, circuit breaker, dead letters.

- :class:`Backoff` and :func:`retry`: exponential backoff with full jitter (the delay before
  retry *n* is uniform in ``[0, min(max_s, base_s * 2**n)]``), at most ``max_attempts`` tries,
  and a remote's ``Retry-After`` honoured (never retried sooner than it asked).
- :class:`CircuitBreaker`: one per remote; closed -> open after ``failures`` consecutive
  failed calls -> half-open after ``cooldown_s`` (one probe call) -> closed on its success,
  open again on its failure.
- :class:`DeadLetters`: a persistent queue in a records collection of the store, for work
  that kept failing: each entry keeps its payload, attempts, the last error and when it is
  due again (backoff between automatic retries); it is retried by hand, or dropped.

An error says whether trying again can help through two attributes (duck-typed, so any
module's errors can take part): ``retryable`` (default True) and ``retry_after`` (seconds).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from session_buddy.adapters.storage._base import Record, StorageBase

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.5
    max_s: float = 30.0
    max_attempts: int = 5

    def cap(self, retry: int) -> float:
        """The longest delay before retry number ``retry`` (0 = the first retry)."""
        return float(min(self.max_s, self.base_s * (2 ** min(retry, 60))))

    def delay(self, retry: int, retry_after: float | None = None, rng: Any = random) -> float:
        """Full jitter: uniform in [0, cap]; at least what the remote asked for."""
        jittered = float(rng.uniform(0.0, self.cap(retry)))
        return max(jittered, retry_after or 0.0)


def is_retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", True))


class CircuitOpen(Exception):
    """The circuit to a remote is open: the call was not made."""

    retryable = False

    def __init__(self, remote: str, retry_in_s: float) -> None:
        super().__init__(f"circuit to {remote} is open; next probe in {retry_in_s:.1f}s")
        self.remote = remote
        self.retry_in_s = retry_in_s


@dataclass
class CircuitBreaker:
    remote: str
    failures: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: str = CLOSED
    consecutive: int = 0
    opened_at: float | None = None
    last_error: str | None = None
    #: (monotonic time, new state) of every change, newest last (kept short)
    changes: list[tuple[float, str]] = field(default_factory=list)
    _probing: bool = False

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.changes = [*self.changes[-19:], (self.clock(), state)]
            log.info("circuit to %s is %s", self.remote, state)

    def current(self) -> str:
        """The state now (an open circuit past its cool-down reads half-open)."""
        if (
            self.state == OPEN
            and self.opened_at is not None
            and self.clock() - self.opened_at >= self.cooldown_s
        ):
            self._set(HALF_OPEN)
        return self.state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go out now."""
        state = self.current()
        if state == OPEN:
            assert self.opened_at is not None
            raise CircuitOpen(self.remote, self.cooldown_s - (self.clock() - self.opened_at))
        if state == HALF_OPEN:
            if self._probing:
                raise CircuitOpen(self.remote, 0.0)
            self._probing = True

    def success(self) -> None:
        self._probing = False
        self.consecutive = 0
        self.opened_at = None
        self._set(CLOSED)

    def failure(self, error: str) -> None:
        self._probing = False
        self.consecutive += 1
        self.last_error = error
        if self.state == HALF_OPEN or self.consecutive >= self.failures:
            self.opened_at = self.clock()
            self._set(OPEN)

    async def call[T](self, fn: Callable[[], Awaitable[T]]) -> T:
        """Make the call through the breaker; every exception counts as a failure."""
        self.before_call()
        try:
            result = await fn()
        except Exception as exc:
            self.failure(str(exc))
            raise
        self.success()
        return result

    def snapshot(self) -> dict[str, Any]:
        state = self.current()
        retry_in = None
        if state == OPEN and self.opened_at is not None:
            retry_in = max(0.0, self.cooldown_s - (self.clock() - self.opened_at))
        return {
            "remote": self.remote,
            "state": state,
            "consecutive_failures": self.consecutive,
            "threshold": self.failures,
            "cooldown_s": self.cooldown_s,
            "probe_in_s": retry_in,
            "last_error": self.last_error,
        }


async def retry[T](
    fn: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, at most ``backoff.max_attempts`` times; an error that
    is not retryable (or the last one) is raised."""
    for attempt in range(backoff.max_attempts):
        try:
            return await fn()
        except Exception as exc:
            if not is_retryable(exc) or attempt + 1 >= backoff.max_attempts:
                raise
            wait = backoff.delay(attempt, getattr(exc, "retry_after", None))
            if on_retry is not None:
                on_retry(attempt + 1, exc, wait)
            await sleep(wait)
    raise AssertionError("unreachable")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


class DeadLetters:
    """A persistent dead-letter queue: one record per failed unit of work, by its key."""

    def __init__(self, storage: StorageBase, collection: str, backoff: Backoff) -> None:
        self.storage = storage
        self.collection = collection
        self.backoff = backoff

    async def add(self, key: str, payload: dict[str, Any], error: str) -> Record | None:
        """Put ``key`` in the queue (or count one more failure of it), due after a backoff."""
        now = datetime.now(UTC)

        def change(current: Record | None) -> Record:
            attempts = int(current.data.get("attempts", 0)) + 1 if current else 1
            wait = self.backoff.delay(attempts - 1)
            return Record(
                collection=self.collection,
                id=key,
                data={
                    "payload": payload,
                    "attempts": attempts,
                    "last_error": error,
                    "first_failed_at": current.data.get("first_failed_at")
                    if current
                    else _iso(now),
                    "last_failed_at": _iso(now),
                    "due_at": _iso(now + timedelta(seconds=wait)),
                },
                status="dead",
                created_at=current.created_at if current else now,
                updated_at=now,
            )

        return await self.storage.modify_record(self.collection, key, change)

    async def entries(self, limit: int = 10_000) -> list[Record]:
        return await self.storage.list_records(self.collection, limit=limit, newest_first=False)

    async def due(self, limit: int, now: datetime | None = None) -> list[Record]:
        moment = _iso(now or datetime.now(UTC))
        return [r for r in await self.entries() if str(r.data.get("due_at", "")) <= moment][:limit]

    async def make_due(self, keys: list[str] | None = None) -> int:
        """Make entries due now (all when ``keys`` is None); returns how many."""
        now = _iso(datetime.now(UTC))
        count = 0
        for record in await self.entries():
            if keys is None or record.id in keys:
                record.data["due_at"] = now
                await self.storage.put_record(record)
                count += 1
        return count

    async def remove(self, key: str) -> bool:
        return await self.storage.delete_record(self.collection, key)

    async def size(self) -> int:
        return len(await self.entries())
