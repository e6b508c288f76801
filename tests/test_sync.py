"""Sync to Akosha against a real local stand-in (FastMCP over loopback HTTP) that fails on
command: retries, the circuit breaker, the dead-letter queue, restarts, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from session_buddy import di
from session_buddy.adapters.storage._base import NewItem, Record, StorageBase
from session_buddy.core.resilience import Backoff, CircuitBreaker, retry
from session_buddy.core.sync import SyncService
from session_buddy.settings import SessionBuddySettings, load_settings
from tests.akosha_standin import AkoshaStandin, Faults
from tests.conftest import session_buddy_cmd
from tests.mcp_peers import StdioPeer, server_env, stop_service

TOKEN_ENV = "SB_TEST_AKOSHA_TOKEN"


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[AkoshaStandin]:
    server = AkoshaStandin(token="t0ken", faults=Faults(hang_s=2.5, seed=11))
    server.start()
    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    yield server
    server.stop()


def sync_env(url: str, **extra: str) -> dict[str, str]:
    """The sync settings of a test, as environment variables (for other processes)."""
    env = {
        "SESSION_BUDDY_ADAPTERS__SYNC": "akosha",
        "SESSION_BUDDY_SYNC__AKOSHA_URL": url,
        "SESSION_BUDDY_SYNC__TOKEN_ENV": TOKEN_ENV,
        TOKEN_ENV: "t0ken",
        "SESSION_BUDDY_SYNC__SETTLE_S": "0",
        "SESSION_BUDDY_SYNC__RECORDS": "false",
    }
    env.update(extra)
    return env


def settings_for(tmp_path: Path, url: str, **sync: Any) -> SessionBuddySettings:
    options: dict[str, Any] = {
        "akosha_url": url,
        "token_env": TOKEN_ENV,
        "settle_s": 0,
        "records": False,
        "timeout_s": 2.0,
        "batch_size": 100,
        "max_attempts": 6,
        "backoff_base_s": 0.005,
        "backoff_max_s": 0.05,
        "breaker_failures": 4,
        "breaker_cooldown_s": 0.2,
        "dlq_backoff_base_s": 0.0,
        "dlq_backoff_max_s": 0.0,
    }
    options.update(sync)
    return load_settings(
        data_dir=tmp_path / "data",
        adapters={"storage": "duckdb", "sync": "akosha", "embeddings": "none"},
        sync=options,
    ).settings


async def start(settings: SessionBuddySettings) -> SyncService:
    di.configure(settings)
    await di.startup()
    return di.get(SyncService)


def unit_vectors(n: int, seed: int = 3) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def add_items(storage: StorageBase, n: int, start_at: int = 0) -> list[str]:
    vectors = unit_vectors(n, seed=start_at + 1)
    kinds = ("conversation", "reflection", "insight")
    items = [
        NewItem(
            kind=kinds[i % 3],
            content=f"memory number {start_at + i}: {random.random()}",
            project="sync",
            embedding=vectors[i],
        )
        for i in range(n)
    ]
    return [r.id for r in await storage.add_items(items)]


async def until_settled(service: SyncService, rounds: int = 60) -> list[dict[str, Any]]:
    """Sync rounds until every stream is up to date and the dead-letter queue is empty."""
    reports = []
    for _ in range(rounds):
        reports.append(await service.sync_now())
        status = await service.status()
        if status["dlq_size"] == 0 and all(s["up_to_date"] for s in status["streams"].values()):
            return reports
        await asyncio.sleep(service.breaker.cooldown_s)
    raise AssertionError(f"sync did not settle: {await service.status()}")


def assert_exactly_once(standin: AkoshaStandin, ids: list[str]) -> None:
    originals = standin.originals()
    assert set(originals) == set(ids), "lost or unexpected memories"
    assert standin.duplicates() == 0
    assert all(n == 1 for n in originals.values())


async def test_thousand_items_with_every_kind_of_fault_arrive_once(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    service = await start(settings_for(tmp_path, standin.url))
    try:
        ids = await add_items(di.get(StorageBase), 1000)
        standin.faults.fail_next = ["500", "429", "timeout", "drop"]  # each kind at least once
        standin.faults.rate = 0.3
        standin.faults.partial_rate = 0.3
        reports = await until_settled(service)
        assert_exactly_once(standin, ids)
        assert set(standin.injected) == {"500", "429", "timeout", "drop"}
        assert sum(r["retries"] for r in reports) > 0
        # timeouts and drops happen after the stand-in stored: the re-sent memories were
        # answered "already stored", never stored twice
        assert sum(r["already"] for r in reports) > 0
        assert max(standin.received.values()) > 1
        first = reports[0]
        stream = (await service.status())["streams"]["items"]
        assert stream["cursor_id"] is not None and stream["lag_s"] == 0.0
        assert first["pushed"] >= 100
    finally:
        await di.shutdown()


async def test_circuit_opens_after_failures_and_closes_after_a_probe(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    from session_buddy.adapters.health._base import HealthBase

    service = await start(
        settings_for(tmp_path, standin.url, breaker_failures=3, breaker_cooldown_s=1.0)
    )
    try:
        ids = await add_items(di.get(StorageBase), 250)
        standin.faults.down = True
        report = await service.sync_now()
        assert service.breaker.current() == "open"
        assert report["stopped"] and "open" in report["stopped"]
        calls = standin.calls
        assert calls == 3  # it stopped calling once the circuit opened
        again = await service.sync_now()  # still open: no call made, nothing parked
        assert standin.calls == calls and again["dead_lettered"] == 0
        assert (await service.status())["circuit"]["state"] == "open"
        health = await di.get(HealthBase).check()
        sync_health = next(c for c in health["components"] if c["name"] == "sync")
        assert sync_health["status"] == "degraded" and "open" in sync_health["message"]
        await asyncio.sleep(1.05)
        assert service.breaker.current() == "half_open"
        standin.faults.clear()
        await until_settled(service)
        assert service.breaker.current() == "closed"
        assert_exactly_once(standin, ids)
        health = await di.get(HealthBase).check()
        assert next(c for c in health["components"] if c["name"] == "sync")["status"] == "healthy"
    finally:
        await di.shutdown()


async def test_failed_probe_opens_the_circuit_again() -> None:
    now = [0.0]
    breaker = CircuitBreaker("r", failures=2, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure("boom")
    assert breaker.current() == "open"
    now[0] = 10.0
    assert breaker.current() == "half_open"
    breaker.before_call()  # the probe
    with pytest.raises(Exception, match="open"):
        breaker.before_call()  # a second call during the probe is refused
    breaker.failure("still down")
    assert breaker.current() == "open"
    now[0] = 20.0
    breaker.before_call()
    breaker.success()
    assert breaker.current() == "closed"
    assert [state for _, state in breaker.changes] == [
        "open",
        "half_open",
        "open",
        "half_open",
        "closed",
    ]


async def test_dead_letters_are_kept_with_their_error_then_drained(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    service = await start(
        settings_for(
            tmp_path,
            standin.url,
            max_attempts=2,
            dlq_backoff_base_s=3600.0,
            dlq_backoff_max_s=3600.0,
        )
    )
    try:
        ids = await add_items(di.get(StorageBase), 300)
        standin.faults.partial_rate = 1.0
        standin.faults.partial_share = 0.5
        report = await service.sync_now()
        assert report["dead_lettered"] > 0 and report["stopped"] is None
        status = await service.status()
        assert status["dlq_memories"] == report["dead_lettered"]
        assert status["streams"]["items"]["up_to_date"]  # the cursor went past them
        assert status["dlq_memories"] == report["dead_lettered"]
        listed = await service.dlq("list", limit=2)
        assert listed["size"] == status["dlq_size"] == 3  # one per batch of 100
        assert len(listed["entries"]) == 2
        entry = listed["entries"][0]
        assert entry["last_error"] == "injected item failure" and entry["attempts"] == 1
        assert set(entry["original_ids"]) <= set(ids)
        # not due yet (an hour of backoff): a round does not touch them
        standin.faults.clear()
        assert (await service.sync_now())["dlq_recovered"] == 0
        dropped_entry = (await service.dead.entries())[0]
        gone = {m["metadata"]["original_id"] for m in dropped_entry.data["payload"]["memories"]}
        dropped = await service.dlq("drop", [dropped_entry.id])
        assert dropped["dropped"] == 1 and dropped["left"] == 2
        retried = await service.dlq("retry")
        assert retried["left"] == 0
        assert retried["recovered"] == status["dlq_memories"] - len(gone)
        assert standin.duplicates() == 0
        assert set(standin.originals()) == set(ids) - gone
    finally:
        await di.shutdown()


async def test_dead_letters_are_retried_automatically_with_backoff(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    service = await start(settings_for(tmp_path, standin.url, max_attempts=1))
    try:
        ids = await add_items(di.get(StorageBase), 120)
        standin.faults.fail_next = ["500"]
        first = await service.sync_now()
        assert first["dead_lettered"] == 100  # one try only: the first batch is parked
        assert first["dlq_recovered"] == 100  # and retried in the same round, due at once
        assert (await service.status())["dlq_size"] == 0
        assert standin.injected["500"] == 1
        assert_exactly_once(standin, ids)
    finally:
        await di.shutdown()


async def test_429_retry_after_is_honoured(tmp_path: Path, standin: AkoshaStandin) -> None:
    service = await start(settings_for(tmp_path, standin.url, backoff_base_s=0.001))
    try:
        ids = await add_items(di.get(StorageBase), 10)
        standin.faults.retry_after = "1"
        standin.faults.fail_next = ["429"]
        began = time.monotonic()
        report = await service.sync_now()
        assert time.monotonic() - began >= 1.0
        assert report["retries"] == 1 and standin.injected["429"] == 1
        assert_exactly_once(standin, ids)
    finally:
        await di.shutdown()


async def test_wrong_token_stops_without_dead_letters(
    tmp_path: Path, standin: AkoshaStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "wrong")
    service = await start(settings_for(tmp_path, standin.url))
    try:
        await add_items(di.get(StorageBase), 5)
        report = await service.sync_now()
        assert "401" in str(report["stopped"])
        status = await service.status()
        assert status["dlq_size"] == 0 and not status["streams"]["items"]["up_to_date"]
        assert standin.unauthorised >= 1 and not standin.stored
    finally:
        await di.shutdown()


async def test_changed_items_and_records_are_pushed_as_new_versions(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        adapters={"storage": "duckdb", "sync": "akosha", "embeddings": "onnx"},
        sync={"akosha_url": standin.url, "token_env": TOKEN_ENV, "settle_s": 0},
    ).settings
    service = await start(settings)
    try:
        storage = di.get(StorageBase)
        [item_id] = await add_items(storage, 1)
        now = datetime.now(UTC)
        await storage.put_record(
            Record("sessions", "s1", {"checkpoints": 0}, "sync", "active", now, now)
        )
        await storage.put_record(Record("quality", "q1", {"score": 80}, "sync", None, now, now))
        assert (await service.sync_now())["stored"] == 3
        types = sorted(m["metadata"]["type"] for m in standin.stored.values())
        assert types == ["conversation", "quality", "session"]
        assert all(len(m["metadata"]["created_at"]) > 10 for m in standin.stored.values())
        later = datetime.now(UTC)  # after the first version, not in the future
        await storage.put_record(
            Record("sessions", "s1", {"checkpoints": 1}, "sync", "ended", now, later)
        )
        await storage.update_item(item_id, content="changed text", embedding=unit_vectors(1)[0])
        report = await service.sync_now()
        assert report["stored"] == 2
        assert (await service.sync_now())["pushed"] == 0  # nothing changed since
        texts = sorted(m["text"] for m in standin.stored.values())
        assert "changed text" in texts and len(texts) == 5
    finally:
        await di.shutdown()


async def test_sync_tools_and_the_none_adapter(tmp_path: Path) -> None:
    from fastmcp import Client

    from session_buddy.server.app import create_server

    settings = load_settings(data_dir=tmp_path / "data", mode="lite").settings
    async with Client(create_server(settings)) as client:
        status = (await client.call_tool("sync_status", {})).structured_content
        assert status is not None and status["adapter"] == "none" and not status["enabled"]
        assert status["circuit"]["state"] == "closed" and status["dlq_size"] == 0
        failed = await client.call_tool("sync_now", {}, raise_on_error=False)
        assert failed.is_error and "sync is off" in failed.content[0].text  # type: ignore[union-attr]
        health = (await client.call_tool("health", {})).structured_content
        assert health is not None
        assert next(c for c in health["components"] if c["name"] == "sync")["message"] == "off"


async def test_retry_backoff_has_full_jitter_and_respects_retry_after() -> None:
    backoff = Backoff(base_s=1.0, max_s=8.0, max_attempts=4)
    rng = random.Random(1)
    delays = [backoff.delay(3, rng=rng) for _ in range(2000)]
    assert 0.0 <= min(delays) < 0.1 and 7.9 < max(delays) <= 8.0  # uniform over [0, cap]
    assert backoff.delay(0, retry_after=5.0) >= 5.0
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    calls = 0

    class Flaky(Exception):
        retry_after = 2.5

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky("busy")
        return "ok"

    assert await retry(op, backoff, sleep=fake_sleep) == "ok"
    assert calls == 3 and all(w >= 2.5 for w in waits)

    class Fatal(Exception):
        retryable = False

    async def fatal() -> None:
        raise Fatal("no")

    with pytest.raises(Fatal):
        await retry(fatal, backoff, sleep=fake_sleep)


def test_retry_after_http_date() -> None:
    from email.utils import format_datetime

    from session_buddy.adapters.sync.akosha import retry_after_seconds

    assert retry_after_seconds("3") == 3.0
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 28 <= (retry_after_seconds(format_datetime(when, usegmt=True)) or 0) <= 31
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_sync_killed_mid_way_resumes_without_loss_or_duplicates(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    """The service running a sync-now is SIGKILLed mid-sync; a new service on the same
    DuckDB file finishes (the client's retry, or the next sync-now): every item arrives,
    none twice."""
    from session_buddy.server.discovery import read_service

    settings = settings_for(tmp_path, standin.url)

    async def seed() -> list[str]:
        di.configure(settings)
        await di.startup()
        try:
            return await add_items(di.get(StorageBase), 400)
        finally:
            await di.shutdown()
            di.reset()

    ids = asyncio.run(seed())
    standin.faults.delay_s = 0.15
    env = server_env(
        tmp_path,
        **sync_env(
            standin.url,
            SESSION_BUDDY_SYNC__BATCH_SIZE="50",
            SESSION_BUDDY_ADAPTERS__EMBEDDINGS="none",
        ),
    )
    proc = subprocess.Popen(
        [*session_buddy_cmd(), "sync-now", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(standin.stored) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    service = read_service(tmp_path / "data")
    assert service is not None
    os.kill(int(service["pid"]), signal.SIGKILL)  # the writer dies mid-sync
    assert 100 <= len(standin.stored) < 400
    standin.faults.delay_s = 0.0
    # its client re-sends the call to the service it starts again (the bridge's retry),
    # which finishes the round, or says it failed; the next sync-now has the rest, if any
    _, said = proc.communicate(timeout=120)
    assert proc.returncode in (0, 1), said
    done = subprocess.run(
        [*session_buddy_cmd(), "sync-now", "--json"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    assert_exactly_once(standin, ids)


def test_cli_goes_through_the_running_service(tmp_path: Path, standin: AkoshaStandin) -> None:
    """With the shared service running (it holds the DuckDB file), sync-now, sync-status and
    sync dlq are answered by the service's tools."""
    data_dir = tmp_path / "data"
    env = server_env(
        tmp_path,
        SESSION_BUDDY_ADAPTERS__STORAGE="duckdb",
        SESSION_BUDDY_SYNC__INTERVAL_S="0",
        **sync_env(standin.url),
    )
    peer = StdioPeer(env, tmp_path)
    try:
        peer.initialize()
        for n in range(3):
            peer.call("store_reflection", {"content": f"reflection {n} to sync", "project": "p"})

        def cli(*args: str) -> dict[str, Any]:
            run = subprocess.run(
                [*session_buddy_cmd(), *args, "--json"], env=env, capture_output=True, timeout=120
            )
            assert run.returncode == 0, run.stderr.decode()
            return json.loads(run.stdout)  # type: ignore[no-any-return]

        assert cli("sync-now")["stored"] == 3
        status = cli("sync-status")
        assert status["streams"]["items"]["up_to_date"] and status["circuit"]["state"] == "closed"
        assert cli("sync", "dlq", "list")["size"] == 0
        assert len(standin.stored) == 3
    finally:
        if peer.proc.stdin is not None:
            peer.proc.stdin.close()
        peer.proc.wait(timeout=60)
        stop_service(data_dir)


async def test_the_server_syncs_in_the_background_every_interval(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    """The server's lifespan starts the loop once storage is open; shutdown stops it."""
    from fastmcp import Client

    from session_buddy.adapters.shutdown._base import ShutdownBase
    from session_buddy.server.app import create_server

    settings = settings_for(tmp_path, standin.url, interval_s=0.2)
    async with Client(create_server(settings)) as client:
        await client.call_tool("sync_status", {})  # waits for storage
        ids = await add_items(di.get(StorageBase), 30)
        deadline = time.monotonic() + 20
        while len(standin.stored) < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert_exactly_once(standin, ids)
        status = (await client.call_tool("sync_status", {})).structured_content
        assert status is not None and status["background"] is True
        service = di.get(SyncService)
        assert service._task is not None
        stats = await di.get(ShutdownBase).shutdown()
        assert "sync" in stats.order and stats.order.index("sync") == 0
        assert service._task is None


async def test_a_failing_model_stops_the_round_and_skips_nothing(
    tmp_path: Path, standin: AkoshaStandin
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        adapters={"storage": "duckdb", "sync": "akosha", "embeddings": "onnx"},
        embeddings={"model_path": str(tmp_path / "missing.onnx"), "preload": False},
        sync={"akosha_url": standin.url, "token_env": TOKEN_ENV, "settle_s": 0},
    ).settings
    service = await start(settings)
    try:
        storage = di.get(StorageBase)
        ids = await add_items(storage, 3)  # stored with vectors: no model needed
        now = datetime.now(UTC)
        await storage.put_record(Record("sessions", "s1", {}, "sync", "active", now, now))
        report = await service.sync_now()
        assert "embedding for sync failed" in str(report["stopped"])
        assert report["skipped_no_vector"] == 0
        assert_exactly_once(standin, ids)
        status = await service.status()
        assert status["streams"]["items"]["up_to_date"]
        assert not status["streams"]["sessions"]["up_to_date"]  # waits for a working model
    finally:
        await di.shutdown()
