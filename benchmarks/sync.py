"""Sync to Akosha under injected failures: everything arrives once, and how fast.

A DuckDB store gets ``--items`` items (random unit vectors, so no model time is measured);
the Akosha stand-in of the tests (``tests/akosha_standin.py``: a FastMCP server on loopback
with Akosha's two tools) fails ``--fail`` of the tool calls (HTTP 500, 429 with
Retry-After, answers later than the client waits, connections dropped after the remote
stored the batch; equal shares) and refuses ``--partial-share`` of the items of
``--fail`` of the remaining batch calls. Sync rounds run until the store is synced; then the
faults stop and the dead-letter queue is drained. Reported: stored, duplicates, lost, DLQ
left, items/s (with failures and without), and the time the circuit takes to open (the
remote goes down) and to close again (it recovers).

    .venv/bin/python benchmarks/sync.py [--items 10000] [--fail 0.3] [--batch 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.akosha_standin import AkoshaStandin, Faults  # noqa: E402

TOKEN_ENV = "SB_BENCH_AKOSHA_TOKEN"


def settings(data: Path, url: str, args: argparse.Namespace) -> Any:
    from session_buddy.settings import load_settings

    return load_settings(
        data_dir=data,
        adapters={"storage": "duckdb", "sync": "akosha", "embeddings": "none"},
        sync={
            "akosha_url": url,
            "token_env": TOKEN_ENV,
            "settle_s": 0,
            "records": False,
            "batch_size": args.batch,
            "timeout_s": args.timeout,
            "max_attempts": 5,
            "backoff_base_s": 0.05,
            "backoff_max_s": 1.0,
            "breaker_failures": 5,
            "breaker_cooldown_s": args.cooldown,
            "dlq_backoff_base_s": 0.5,
            "dlq_backoff_max_s": 2.0,
        },
    ).settings


async def seed(storage: Any, n: int, label: str = "benchmark") -> list[str]:
    import numpy as np

    from session_buddy.adapters.storage._base import NewItem

    rng = np.random.default_rng(1)
    ids: list[str] = []
    for start in range(0, n, 1000):
        count = min(1000, n - start)
        v = rng.standard_normal((count, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        items = [
            NewItem(kind="reflection", content=f"{label} memory {start + i}", embedding=v[i])
            for i in range(count)
        ]
        ids += [r.id for r in await storage.add_items(items)]
    return ids


async def settle(service: Any, limit_s: float = 1800) -> dict[str, int]:
    """Rounds until every stream is synced; totals of the reports."""
    totals: dict[str, int] = {}
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        report = await service.sync_now()
        for key in ("stored", "already", "retries", "dead_lettered", "dlq_recovered"):
            totals[key] = totals.get(key, 0) + report[key]
        totals["rounds"] = totals.get("rounds", 0) + 1
        status = await service.status()
        if all(s["up_to_date"] for s in status["streams"].values()):
            return totals
        await asyncio.sleep(0.05)
    raise RuntimeError("sync did not finish")


async def circuit_times(service: Any, standin: AkoshaStandin, storage: Any) -> dict[str, float]:
    """Remote down: time until the circuit is open; remote back: time until closed."""
    await seed(storage, 200, "circuit")
    standin.faults.down = True
    began = time.perf_counter()
    down = await service.sync_now()
    opened = time.perf_counter() - began
    assert down["stopped"], down
    assert service.breaker.current() == "open", service.breaker.snapshot()
    standin.faults.clear()
    began = time.perf_counter()
    while service.breaker.current() != "closed":
        await service.sync_now()
        if service.breaker.current() != "closed":
            await asyncio.sleep(0.02)
    closed = time.perf_counter() - began
    return {"open_s": round(opened, 3), "close_s": round(closed, 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from session_buddy import di
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.core.sync import SyncService

    logging.basicConfig(level=logging.CRITICAL)
    os.environ[TOKEN_ENV] = "bench-token"
    faults = Faults(hang_s=args.timeout + 0.5, retry_after="0", seed=5)
    standin = AkoshaStandin(token="bench-token", faults=faults)
    standin.start()
    result: dict[str, Any] = {"items": args.items, "fail": args.fail, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        for phase in ("clean", "faulty"):
            di.reset()
            di.configure(settings(Path(tmp) / phase, standin.url, args))
            await di.startup()
            storage, service = di.get(StorageBase), di.get(SyncService)
            ids = await seed(storage, args.items)
            standin.stored.clear()
            standin.received.clear()
            if phase == "faulty":
                faults.rate, faults.partial_rate = args.fail, args.fail
                faults.partial_share = args.partial_share
            began = time.perf_counter()
            totals = await settle(service)
            faults.clear()
            recovered = await service.dlq("retry")
            elapsed = time.perf_counter() - began
            originals = standin.originals()
            result[phase] = {
                "seconds": round(elapsed, 2),
                "items_per_s": round(args.items / elapsed, 1),
                "stored_on_standin": len(originals),
                "duplicates": standin.duplicates(),
                "lost": len(set(ids) - set(originals)),
                "dlq_left": recovered["left"],
                "calls": standin.calls,
                "injected": dict(standin.injected),
                "resent_memories": sum(n - 1 for n in standin.received.values()),
                **totals,
                "dlq_recovered_by_hand": recovered["recovered"],
            }
            if phase == "faulty":
                result["circuit"] = await circuit_times(service, standin, storage)
                result["circuit"]["cooldown_s"] = args.cooldown
            standin.calls = 0
            standin.injected.clear()
            await di.shutdown()
    standin.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--fail", type=float, default=0.3)
    parser.add_argument("--partial-share", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--cooldown", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
