"""Traces (OpenTelemetry), off by default, and the few live figures /metrics reads.

FastMCP makes a span for every MCP request (``tools/call <tool>``) through the OpenTelemetry
API, a no-op until an SDK provider is installed. :func:`configure_tracing` (called by
``di.configure`` when ``telemetry.traces`` is on) installs the SDK's provider, exporting over
OTLP/HTTP when ``telemetry.otlp_endpoint`` is set; the SDK and the exporter are imported only
then, so a process with traces off never loads them. :func:`span` wraps our own steps
(storage, embedding, sync) as children of the current span; with traces off it is a
shared no-op context manager and imports nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from session_buddy.errors import ConfigurationError
from session_buddy.settings import TelemetrySettings

log = logging.getLogger(__name__)

TRACER_NAME = "session_buddy"
_NOOP = contextlib.nullcontext()
_state: dict[str, Any] = {"tracer": None, "provider": None}


class Pending:
    """Texts waiting for (or inside) the embedding model now: the embedding queue depth."""

    embedding = 0

    @classmethod
    @contextlib.contextmanager
    def embedding_of(cls, texts: int) -> Iterator[None]:
        cls.embedding += texts
        try:
            yield
        finally:
            cls.embedding -= texts


def tracing() -> bool:
    return _state["tracer"] is not None


def span(name: str, **attributes: Any) -> Any:
    """A context manager: a child span of the current one, or nothing with traces off."""
    tracer = _state["tracer"]
    if tracer is None:
        return _NOOP
    clean = {k: v for k, v in attributes.items() if isinstance(v, str | bool | int | float)}
    return tracer.start_as_current_span(name, attributes=clean)


def configure_tracing(settings: TelemetrySettings, exporter: Any = None) -> Any:
    """Install the SDK's tracer provider (once per process; a second call adds its exporter
    to the same provider). ``exporter``: export to it synchronously (tests use the SDK's
    InMemorySpanExporter); otherwise OTLP/HTTP when configured. Returns the provider."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            f"telemetry.traces needs the OpenTelemetry SDK ({exc.name} is missing): "
            "pip install 'session-buddy[telemetry]'"
        ) from None

    provider = _state["provider"]
    if provider is None:
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:  # somebody else installed one first
            log.warning("a tracer provider was already installed: session-buddy uses it")
            provider = trace.get_tracer_provider()
        _state["provider"] = provider
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    _state["tracer"] = trace.get_tracer(TRACER_NAME)
    return provider


async def flush_traces() -> None:
    """Export what is buffered (the ShutdownManager calls this before the process ends)."""
    provider = _state["provider"]
    if provider is not None and hasattr(provider, "force_flush"):
        provider.force_flush(5_000)


def stop_tracing() -> None:
    """Stop making spans (the provider stays installed: OpenTelemetry allows one)."""
    _state["tracer"] = None
