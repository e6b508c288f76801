"""The priority-ordered ShutdownManager."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections.abc import Callable

from session_buddy._acb import AdapterMetadata, AdapterStatus
from session_buddy.adapters.shutdown._base import Callback, CleanupTask, ShutdownBase, ShutdownStats

MODULE_METADATA = AdapterMetadata(
    module_id="0d5b1e8e-3f7a-4a57-8c1d-6a2b9e4f7c02",
    name="default",
    category="shutdown",
    provider="session-buddy",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Priority-ordered cleanup with per-task timeouts, run on SIGTERM/SIGINT and lifespan exit",
)

log = logging.getLogger(__name__)

# Priorities used by session-buddy itself (higher runs first).
PRIORITY_BACKGROUND = 90  # cancel background tasks before closing what they use
PRIORITY_STORAGE = 50  # checkpoint and close the database
PRIORITY_EMBEDDINGS = 30
PRIORITY_HTTP = 20


class ShutdownManager(ShutdownBase):
    name = "default"

    def __init__(self) -> None:
        self._tasks: dict[str, CleanupTask] = {}
        self._stats: ShutdownStats | None = None
        self._running: asyncio.Future[ShutdownStats] | None = None
        self._background: set[asyncio.Task[object]] = set()

    def register(
        self,
        name: str,
        callback: Callback,
        priority: int = 50,
        timeout_s: float = 5.0,
        critical: bool = False,
    ) -> None:
        """Add (or replace, by name) a cleanup task."""
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._tasks[name] = CleanupTask(name, callback, priority, timeout_s, critical)

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)

    @property
    def tasks(self) -> list[CleanupTask]:
        return sorted(self._tasks.values(), key=lambda t: -t.priority)

    @property
    def stats(self) -> ShutdownStats | None:
        return self._stats

    @property
    def done(self) -> bool:
        return self._stats is not None

    def track(self, task: asyncio.Task[object]) -> asyncio.Task[object]:
        """Keep a background task; it is cancelled first at shutdown."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _cancel_background(self) -> None:
        pending = [t for t in self._background if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run_one(self, task: CleanupTask) -> None:
        if inspect.iscoroutinefunction(task.callback):
            await asyncio.wait_for(task.callback(), task.timeout_s)
            return
        result = await asyncio.wait_for(asyncio.to_thread(task.callback), task.timeout_s)
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, task.timeout_s)

    async def shutdown(self) -> ShutdownStats:
        if self._stats is not None:
            return self._stats
        if self._running is not None:
            return await asyncio.shield(self._running)
        self._running = asyncio.get_running_loop().create_future()
        stats = ShutdownStats()
        start = time.perf_counter()
        self.register("background-tasks", self._cancel_background, PRIORITY_BACKGROUND, 5.0)
        ordered = self.tasks
        for index, task in enumerate(ordered):
            try:
                await self._run_one(task)
                stats.executed += 1
                stats.order.append(task.name)
            except TimeoutError:
                stats.timed_out += 1
                stats.errors[task.name] = f"timed out after {task.timeout_s}s"
                log.warning("cleanup %s timed out after %.1fs", task.name, task.timeout_s)
                if task.critical:
                    stats.skipped = len(ordered) - index - 1
                    break
            except Exception as exc:
                stats.failed += 1
                stats.errors[task.name] = f"{type(exc).__name__}: {exc}"
                log.warning("cleanup %s failed: %s", task.name, exc)
                if task.critical:
                    stats.skipped = len(ordered) - index - 1
                    break
        stats.duration_s = time.perf_counter() - start
        self._stats = stats
        self._running.set_result(stats)
        return stats

    def install_signal_handlers(
        self, loop: asyncio.AbstractEventLoop, on_done: Callable[[], None] | None = None
    ) -> None:
        """Run the shutdown on SIGTERM/SIGINT, then call ``on_done`` (e.g. stop the server)."""

        def handler(signame: str) -> None:
            log.info("received %s: shutting down", signame)

            async def run() -> None:
                await self.shutdown()
                if on_done is not None:
                    on_done()

            loop.create_task(run())

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # non-main thread
                loop.add_signal_handler(sig, handler, sig.name)
