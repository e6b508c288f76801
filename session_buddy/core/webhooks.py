"""Webhooks: every event POSTed as JSON to the configured URLs, signed, never in the way.

Delivery runs in one background task fed by a bounded queue (``events.queue_size``), so an
event never blocks or fails the tool call it came from; a full queue drops the event (and
counts it). At stop, what is still undelivered becomes dead letters for the next run. Each POST carries

- ``X-SessionBuddy-Signature: sha256=<hex>``: HMAC-SHA256, keyed with the secret
  (``events.secret_env`` or ``events.secret_file``), of ``<timestamp>.<body>``;
- ``X-SessionBuddy-Timestamp`` (Unix seconds, the one signed) and ``X-SessionBuddy-Event-Id``
  (the same on every retry of one event: a receiver drops what it has seen);
- ``X-SessionBuddy-Event`` (the event type).

The resilience is sync's (:mod:`session_buddy.core.resilience`): each delivery is tried up to
``events.max_attempts`` times with backoff and full jitter (a 429's ``Retry-After``
honoured), through one circuit breaker per URL; what still fails is a dead letter in the
``events_dlq`` records (the event, its URL, the last error), retried with backoff in the
background and by hand (``session-buddy events dlq list|retry|drop``). Without a secret
nothing is sent (an unsigned event could be anybody's): the status says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from session_buddy.adapters.storage._base import StorageBase
from session_buddy.core.events import Event, EventBus, bus_from
from session_buddy.core.resilience import Backoff, CircuitBreaker, CircuitOpen, DeadLetters, retry
from session_buddy.settings import EventsSettings, SessionBuddySettings

log = logging.getLogger(__name__)

DLQ_COLLECTION = "events_dlq"
SIGNATURE_HEADER = "X-SessionBuddy-Signature"
TIMESTAMP_HEADER = "X-SessionBuddy-Timestamp"
EVENT_ID_HEADER = "X-SessionBuddy-Event-Id"
EVENT_TYPE_HEADER = "X-SessionBuddy-Event"
#: how often the worker looks for due dead letters while no event comes
DRAIN_EVERY_S = 30.0
#: how long a stop waits for the queue to be delivered before parking the rest as dead
#: letters (short: the whole shutdown of an in-memory client's server gets 5 s)
STOP_FLUSH_S = 1.5


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (the tests do it too): compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def load_secret(settings: EventsSettings) -> bytes | None:
    value = os.environ.get(settings.secret_env, "") if settings.secret_env else ""
    if not value and settings.secret_file is not None:
        try:
            value = settings.secret_file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.warning("events.secret_file unreadable: %s", exc)
    return value.encode("utf-8") if value else None


class DeliveryError(Exception):
    """A POST that was not accepted; ``retryable`` unless the receiver refused it (4xx)."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class WebhookService:
    """The delivery queue, its worker, the circuits per URL and the dead-letter queue."""

    def __init__(
        self,
        storage: StorageBase,
        bus: EventBus,
        settings: EventsSettings,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.urls = list(settings.webhooks)
        self.secret = load_secret(settings) if self.urls else None
        self.backoff = Backoff(
            settings.backoff_base_s, settings.backoff_max_s, settings.max_attempts
        )
        self.breakers = {
            url: CircuitBreaker(url, settings.breaker_failures, settings.breaker_cooldown_s)
            for url in self.urls
        }
        self.dead = DeadLetters(
            storage,
            DLQ_COLLECTION,
            Backoff(settings.dlq_backoff_base_s, settings.dlq_backoff_max_s, 1),
        )
        self.counts = {"delivered": 0, "dead_lettered": 0, "dropped": 0, "retries": 0}
        self._sleep = sleep
        self._queue: asyncio.Queue[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        #: (url, event) of the delivery under way and the URLs after it
        self._pending: list[tuple[str, Event]] = []
        if self.urls:
            if self.secret is None:
                log.warning(
                    "events.webhooks set but no secret (%s / events.secret_file): not delivering",
                    settings.secret_env,
                )
            else:
                bus.subscribe(self.take)

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> WebhookService:
        settings: SessionBuddySettings = resolve(SessionBuddySettings)
        service = cls(resolve(StorageBase), bus_from(resolve), settings.events)
        try:
            from session_buddy.adapters.shutdown._base import ShutdownBase

            # deliver what is queued, before storage (the dead letters) closes (50) and after
            # the spooled hook events (60), whose session ends and checkpoints emit events
            resolve(ShutdownBase).register("webhooks", service.stop, priority=55, timeout_s=10.0)
        except Exception:
            pass
        return service

    # -- taking events (never blocks) ------------------------------------------------------

    def start(self) -> bool:
        """Start the worker (it also retries due dead letters of earlier runs); a server
        does this at start, :meth:`take` on the first event. False when nothing is sent."""
        if not self.urls or self.secret is None:
            return False
        if self._queue is None:
            self._queue = asyncio.Queue(self.settings.queue_size)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._worker(), name="webhooks")
        return True

    def take(self, event: Event) -> None:
        if self.settings.types and event.type not in self.settings.types:
            return
        try:
            self.start()
        except RuntimeError:
            self.counts["dropped"] += 1  # no loop, no worker (a synchronous caller)
            return
        assert self._queue is not None
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            log.warning("webhook queue full: %s %s dropped", event.type, event.id)

    async def _worker(self) -> None:
        assert self._queue is not None
        await self._drain_quietly()
        while True:
            try:
                event = await asyncio.wait_for(self._queue.get(), DRAIN_EVERY_S)
            except TimeoutError:
                await self._drain_quietly()
                continue
            self._pending = [(url, event) for url in self.urls]
            try:
                while self._pending:
                    await self.deliver(*self._pending[0])
                    self._pending.pop(0)
            except Exception as exc:  # the storage under the DLQ failed: log, go on
                log.warning("webhook delivery of %s failed: %s", event.id, exc)
            finally:
                self._pending = []
                self._queue.task_done()
            if self._queue.empty():
                await self._drain_quietly()

    async def _drain_quietly(self) -> None:
        try:
            await self.drain_dead()
        except Exception as exc:
            log.warning("webhook dead letters: %s", exc)

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until the queue is empty (tests, shutdown)."""
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout_s)

    # -- one delivery --------------------------------------------------------------------------

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self.settings.timeout_s)
        return self._client

    async def _post(self, url: str, body: bytes, event_id: str, event_type: str) -> None:
        import httpx

        assert self.secret is not None
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, stamp, body),
            TIMESTAMP_HEADER: stamp,
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event_type,
        }
        try:
            response = await self._http().post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status == 429 or status >= 500 or status == 408
        after = _retry_after(response.headers.get("retry-after")) if status == 429 else None
        raise DeliveryError(f"HTTP {status} from {url}", retryable=retryable, retry_after=after)

    async def _call(self, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        breaker = self.breakers[url]
        await breaker.call(lambda: self._post(url, body, payload["id"], payload["type"]))

    async def deliver(self, url: str, event: Event) -> bool:
        """POST one event with retries; a dead letter when it still fails. True if delivered."""
        payload = event.to_dict()

        def counted(n: int, exc: BaseException, wait: float) -> None:
            self.counts["retries"] += 1
            log.info("webhook %s: retry %d in %.2fs after %s", url, n, wait, exc)

        try:
            await retry(lambda: self._call(url, payload), self.backoff, sleep=self._sleep,
                        on_retry=counted)  # fmt: skip
        except Exception as exc:
            await self.dead.add(_key(url, event.id), {"url": url, "event": payload}, str(exc))
            self.counts["dead_lettered"] += 1
            log.warning("webhook %s: %s %s is a dead letter: %s", url, event.type, event.id, exc)
            return False
        self.counts["delivered"] += 1
        return True

    # -- dead letters --------------------------------------------------------------------------

    async def drain_dead(self) -> int:
        """Try each due dead letter once (one call, through its URL's circuit); how many
        were delivered. A URL no longer configured keeps its letters for review."""
        if self.secret is None:
            return 0
        delivered = 0
        for entry in await self.dead.due(limit=10_000):
            url, payload = entry.data["payload"]["url"], entry.data["payload"]["event"]
            if url not in self.breakers:
                continue
            try:
                await self._call(url, payload)
            except CircuitOpen:
                continue
            except Exception as exc:
                await self.dead.add(entry.id, entry.data["payload"], str(exc))
                continue
            await self.dead.remove(entry.id)
            self.counts["delivered"] += 1
            delivered += 1
        return delivered

    async def dlq(
        self, action: str, ids: Sequence[str] | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """The dead-letter queue's commands: ``list``, ``retry`` or ``drop``."""
        if action == "list":
            entries = await self.dead.entries()
            return {"size": len(entries), "entries": [_entry(r) for r in entries[: max(0, limit)]]}
        if action == "retry":
            made_due = await self.dead.make_due(list(ids) if ids is not None else None)
            return {
                "made_due": made_due,
                "delivered": await self.drain_dead(),
                "left": await self.dead.size(),
            }
        if action == "drop":
            targets = [r.id for r in await self.dead.entries()] if ids is None else list(ids)
            dropped = sum([bool(await self.dead.remove(key)) for key in targets])
            return {"dropped": dropped, "left": await self.dead.size()}
        raise ValueError(f"action must be list, retry or drop, not {action!r}")

    async def status(self) -> dict[str, Any]:
        return {
            "webhooks": len(self.urls),
            "signing": self.secret is not None,
            "queued": self._queue.qsize() if self._queue is not None else 0,
            **self.counts,
            "dlq_size": await self.dead.size(),
            "circuits": [b.snapshot() for b in self.breakers.values()],
        }

    async def stop(self) -> None:
        """Deliver what is queued (for STOP_FLUSH_S), then stop the worker and close the client.
        What is still undelivered then (the delivery under way, the queue) becomes dead
        letters, so the next run sends it: nothing is lost by stopping."""
        await self.flush(STOP_FLUSH_S)
        task, self._task = self._task, None
        left = list(self._pending)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            left.extend((url, self._queue.get_nowait()) for url in self.urls)
        for url, event in left:
            try:
                await self.dead.add(_key(url, event.id), {"url": url, "event": event.to_dict()},
                                    "not delivered before the service stopped")  # fmt: skip
                self.counts["dead_lettered"] += 1
            except Exception as exc:  # the storage is gone already: say what is lost
                log.warning("webhook %s: %s %s lost at stop: %s", url, event.type, event.id, exc)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _key(url: str, event_id: str) -> str:
    return f"{event_id}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _entry(record: Any) -> dict[str, Any]:
    payload = record.data["payload"]
    return {
        "id": record.id,
        "url": payload["url"],
        "type": payload["event"]["type"],
        "event_id": payload["event"]["id"],
        "attempts": record.data.get("attempts"),
        "last_error": record.data.get("last_error"),
        "due_at": record.data.get("due_at"),
    }
