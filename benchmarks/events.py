"""Events: what emitting costs a tool call, webhook throughput, and /metrics.

A memory store and the webhook receiver of the tests (``tests/webhook_receiver.py``: a
threaded HTTP server on loopback checking every HMAC). Reported:

- emit: microseconds per ``EventBus.emit`` with the webhook listener queueing it (what a
  tool call pays), while the receiver hangs;
- delivery: events/s signed, POSTed and accepted (one URL), none lost or doubled;
- with ``--fail`` of the POSTs answered 500: events/s, retries, all delivered once;
- circuit: time from the receiver going down to the circuit opening (``--breaker`` failures,
  no backoff), and from its recovery to the first delivery after the cool-down;
- /metrics: milliseconds to render a scrape.

    .venv/bin/python benchmarks/events.py [--events 1000] [--fail 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.webhook_receiver import Receiver, webhook_receiver  # noqa: E402

SECRET = b"bench-webhook-secret"


def settings(data: Path, url: str, **events: Any) -> Any:
    from session_buddy.settings import load_settings

    return load_settings(
        mode="lite",
        data_dir=data,
        adapters={"embeddings": "none", "storage": "memory"},
        events={"webhooks": [url], "dlq_backoff_base_s": 3600.0, **events},
    ).settings


async def with_service(data: Path, url: str, **events: Any) -> Any:
    from session_buddy import di

    di.reset()
    di.configure(settings(data, url, **events))
    await di.startup()
    return di


async def emit_cost(data: Path, receiver: Receiver, n: int) -> float:
    from session_buddy.core.events import SESSION_CHECKPOINT, EventBus

    di = await with_service(data, receiver.url, queue_size=n + 10)
    bus = di.get(EventBus)
    receiver.hold.clear()
    start = time.perf_counter()
    for i in range(n):
        bus.emit(SESSION_CHECKPOINT, session_id="s", checkpoint_id=str(i), score=80)
    per = (time.perf_counter() - start) / n * 1e6
    receiver.hold.set()
    await di.shutdown()
    return per


async def deliver(data: Path, receiver: Receiver, n: int, fail: float) -> dict[str, Any]:
    from session_buddy.core.events import SESSION_CHECKPOINT, EventBus
    from session_buddy.core.webhooks import WebhookService

    di = await with_service(
        data, receiver.url, queue_size=n + 10, backoff_base_s=0.0, backoff_max_s=0.0,
        max_attempts=20, breaker_failures=1000,
    )  # fmt: skip
    rng = random.Random(7)
    original = receiver.answer

    def flaky(headers: dict[str, str], body: bytes) -> int:
        if rng.random() < fail:
            with receiver.lock:
                receiver.attempts.append({"failed": True})
            return 500
        return original(headers, body)

    receiver.answer = flaky  # type: ignore[method-assign]
    await asyncio.sleep(0.5)  # a POST of the previous run still in flight lands first
    receiver.accepted.clear()
    bus, hooks = di.get(EventBus), di.get(WebhookService)
    start = time.perf_counter()
    for i in range(n):
        bus.emit(SESSION_CHECKPOINT, session_id="s", checkpoint_id=str(i))
    await hooks.flush(600)
    took = time.perf_counter() - start
    status = await hooks.status()
    ids = [a["event_id"] for a in receiver.accepted]
    receiver.answer = original  # type: ignore[method-assign]
    await di.shutdown()
    return {
        "events_per_s": round(n / took, 1),
        "accepted": len(ids),
        "duplicates": len(ids) - len(set(ids)),
        "retries": status["retries"],
        "dlq": status["dlq_size"],
        "bad_signatures": receiver.bad_signatures,
    }


async def circuit(data: Path, receiver: Receiver, failures: int) -> dict[str, float]:
    from session_buddy.core.events import SESSION_STARTED, EventBus
    from session_buddy.core.webhooks import WebhookService

    cooldown = 0.5
    di = await with_service(
        data, receiver.url, backoff_base_s=0.0, backoff_max_s=0.0, max_attempts=1,
        breaker_failures=failures, breaker_cooldown_s=cooldown,
    )  # fmt: skip
    bus, hooks = di.get(EventBus), di.get(WebhookService)
    breaker = hooks.breakers[receiver.url]
    receiver.fail_always = True
    start = time.perf_counter()
    while breaker.current() != "open":
        bus.emit(SESSION_STARTED)
        await hooks.flush()
    opened = time.perf_counter() - start
    receiver.fail_always = False
    receiver.accepted.clear()
    start = time.perf_counter()
    while not receiver.accepted:
        bus.emit(SESSION_STARTED)
        await hooks.flush()
        await asyncio.sleep(0.01)
    closed = time.perf_counter() - start
    await di.shutdown()
    return {"open_s": round(opened, 4), "first_delivery_after_recovery_s": round(closed, 3),
            "cooldown_s": cooldown}  # fmt: skip


async def metrics_render(data: Path, url: str, rounds: int = 50) -> float:
    from session_buddy.server.metrics import metrics

    di = await with_service(data, url)
    m = metrics()
    await m.render()
    start = time.perf_counter()
    for _ in range(rounds):
        await m.render()
    per = (time.perf_counter() - start) / rounds * 1000
    assert m.state.values["up"] == 1 and "items" in m.state.values, m.state.values
    await di.shutdown()
    return per


async def main(args: argparse.Namespace) -> None:
    os.environ["SESSION_BUDDY_WEBHOOK_SECRET"] = SECRET.decode()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, webhook_receiver(SECRET) as receiver:
        data = Path(tmp) / "data"
        print(f"emit: {await emit_cost(data, receiver, 10_000):.1f} us per event (queued)")
        clean = await deliver(data, receiver, args.events, 0.0)
        print(f"delivery, no failures: {clean}")
        flaky = await deliver(data, receiver, args.events, args.fail)
        print(f"delivery, {args.fail:.0%} of POSTs failing: {flaky}")
        print(f"circuit ({args.breaker} failures): {await circuit(data, receiver, args.breaker)}")
        print(f"/metrics render: {await metrics_render(data, receiver.url):.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--fail", type=float, default=0.3)
    parser.add_argument("--breaker", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
