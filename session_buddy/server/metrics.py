"""Prometheus metrics at ``GET /metrics`` of the HTTP service (``prometheus_client``).

Tool calls are counted and timed by a middleware (per tool, and per outcome); the state of
the store is read when scraped: items stored, the embedding queue depth, sync lag, the
dead-letter queues (sync and events), circuit states (0 closed, 1 half-open, 2 open) and
webhook deliveries. Only the HTTP fronts (``serve --http`` and the shared service) load
this module, so the stdio front never imports ``prometheus_client``.

``/metrics`` needs no token unless ``telemetry.metrics_auth`` is on: it holds counts and
states, never content, and the service listens on loopback unless told otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from fastmcp.server.middleware import Middleware, MiddlewareContext
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from session_buddy import di
from session_buddy.adapters.storage._base import StorageBase
from session_buddy.core.resilience import CLOSED, HALF_OPEN, OPEN
from session_buddy.core.sync import SyncService
from session_buddy.core.telemetry import Pending
from session_buddy.core.webhooks import WebhookService

log = logging.getLogger(__name__)

PATH = "/metrics"
CIRCUIT_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
#: seconds: tool calls take from a millisecond (health) to minutes (an import)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class StoreState:
    """A collector of the figures read at scrape time (see :meth:`refresh`)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def refresh(self) -> None:
        values: dict[str, Any] = {"embedding_queue": Pending.embedding}
        try:
            await di.ready()
            values["items"] = await di.get(StorageBase).count_items(None)
            status = await di.get(SyncService).status()
            values["sync_lag"] = status["lag_s"] if status["enabled"] else None
            hooks = await di.get(WebhookService).status()
            values["dlq"] = {"sync": status["dlq_size"], "events": hooks["dlq_size"]}
            values["circuits"] = {
                status["circuit"]["remote"]: status["circuit"]["state"],
                **{c["remote"]: c["state"] for c in hooks["circuits"]},
            }
            values["webhooks"] = {
                k: hooks[k] for k in ("delivered", "dead_lettered", "dropped", "retries")
            }
            values["up"] = 1
        except Exception as exc:  # storage did not open: say so, with what is known
            log.warning("metrics: the store could not be read: %s", exc)
            values["up"] = 0
        self.values = values

    def collect(self) -> Iterator[Metric]:
        v = self.values
        yield GaugeMetricFamily("session_buddy_up", "1 when the store answers", v.get("up", 0))
        yield GaugeMetricFamily(
            "session_buddy_embedding_queue_depth",
            "Texts waiting for or inside the embedding model",
            v.get("embedding_queue", 0),
        )
        if "items" in v:
            yield GaugeMetricFamily("session_buddy_items", "Items stored", v["items"])
        if v.get("sync_lag") is not None:
            yield GaugeMetricFamily(
                "session_buddy_sync_lag_seconds", "Age of the oldest change not yet synced",
                v["sync_lag"],
            )  # fmt: skip
        dlq = GaugeMetricFamily("session_buddy_dead_letters", "Dead letters", labels=["queue"])
        for queue, size in v.get("dlq", {}).items():
            dlq.add_metric([queue], size)
        yield dlq
        circuits = GaugeMetricFamily(
            "session_buddy_circuit_state",
            "Circuit breaker per remote: 0 closed, 1 half-open, 2 open",
            labels=["remote"],
        )
        for remote, state in v.get("circuits", {}).items():
            circuits.add_metric([remote], CIRCUIT_VALUES.get(state, 2))
        yield circuits
        hooks = CounterMetricFamily(
            "session_buddy_webhook_deliveries", "Webhook deliveries", labels=["outcome"]
        )
        for outcome, count in v.get("webhooks", {}).items():
            hooks.add_metric([outcome], count)
        yield hooks


class Metrics:
    """One registry per process: the tool-call counters and the store's state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "session_buddy_tool_calls",
            "MCP tool calls by tool and outcome (ok, error)",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "session_buddy_tool_call_seconds",
            "MCP tool call latency by tool",
            ["tool"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.state = StoreState()
        self.registry.register(self.state)  # type: ignore[arg-type]

    async def render(self) -> bytes:
        await self.state.refresh()
        return generate_latest(self.registry)


_metrics: list[Metrics] = []


def metrics() -> Metrics:
    if not _metrics:
        _metrics.append(Metrics())
    return _metrics[0]


#: distinct tool labels kept (a client calling made-up names cannot grow the series)
MAX_TOOL_LABELS = 200


class MetricsMiddleware(Middleware):
    def __init__(self) -> None:
        self._tools: set[str] = set()

    def _label(self, name: str) -> str:
        if name in self._tools:
            return name
        if len(self._tools) < MAX_TOOL_LABELS and len(name) <= 64:
            self._tools.add(name)
            return name
        return "other"

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        tool = self._label(str(context.message.name))
        m = metrics()
        start = time.perf_counter()
        outcome = "error"
        try:
            result = await call_next(context)
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            return result
        finally:
            m.latency.labels(tool).observe(time.perf_counter() - start)
            m.calls.labels(tool, outcome).inc()


async def metrics_endpoint(request: Request) -> Response:
    return Response(await metrics().render(), media_type=CONTENT_TYPE_LATEST)


def install(mcp: Any) -> None:
    """Count the server's tool calls and serve ``/metrics``."""
    mcp.add_middleware(MetricsMiddleware())
    mcp.custom_route(PATH, methods=["GET"])(metrics_endpoint)
