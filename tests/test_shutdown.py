"""ShutdownManager: order, timeouts, critical failures, stats, idempotence."""

from __future__ import annotations

import asyncio
import time

import pytest

from session_buddy.adapters.shutdown.manager import ShutdownManager


async def test_priority_order_sync_and_async_callbacks() -> None:
    manager = ShutdownManager()
    calls: list[str] = []

    async def async_cb() -> None:
        calls.append("async-high")

    manager.register("low", lambda: calls.append("sync-low"), priority=10)
    manager.register("high", async_cb, priority=80)
    manager.register("mid", lambda: calls.append("sync-mid"), priority=40)
    stats = await manager.shutdown()
    assert calls == ["async-high", "sync-mid", "sync-low"]
    assert stats.executed == 4  # three plus the background-task canceller
    assert stats.failed == 0 and stats.timed_out == 0


async def test_failure_and_timeout_do_not_stop_the_chain() -> None:
    manager = ShutdownManager()
    calls: list[str] = []

    def boom() -> None:
        raise RuntimeError("disk on fire")

    async def slow() -> None:
        await asyncio.sleep(10)

    manager.register("boom", boom, priority=70)
    manager.register("slow", slow, priority=60, timeout_s=0.1)
    manager.register("last", lambda: calls.append("last"), priority=1)
    start = time.perf_counter()
    stats = await manager.shutdown()
    assert time.perf_counter() - start < 2
    assert calls == ["last"]
    assert stats.failed == 1 and stats.timed_out == 1
    assert "disk on fire" in stats.errors["boom"]


async def test_critical_failure_stops_the_chain() -> None:
    manager = ShutdownManager()
    calls: list[str] = []

    def boom() -> None:
        raise RuntimeError("critical")

    manager.register("critical", boom, priority=70, critical=True)
    manager.register("after", lambda: calls.append("after"), priority=10)
    stats = await manager.shutdown()
    assert calls == []
    assert stats.failed == 1 and stats.skipped == 1


async def test_idempotent_and_cancels_background_tasks() -> None:
    manager = ShutdownManager()
    counter = {"n": 0}
    manager.register("count", lambda: counter.__setitem__("n", counter["n"] + 1))
    task = manager.track(asyncio.create_task(asyncio.sleep(60)))
    first, second = await asyncio.gather(manager.shutdown(), manager.shutdown())
    third = await manager.shutdown()
    assert counter["n"] == 1
    assert first is second is third
    assert task.cancelled()


def test_bad_timeout_rejected() -> None:
    with pytest.raises(ValueError):
        ShutdownManager().register("x", lambda: None, timeout_s=0)
