"""Events: what happened in a session, told to whoever listens (webhooks, MCP clients).

One small in-process bus. The places where things happen emit (``session.started``,
``session.checkpoint`` and ``session.ended`` from the lifecycle, ``insight.captured`` from
the insight recorder, ``sync.failed`` from a sync round); listeners subscribe with a plain
function. :meth:`EventBus.emit` never blocks and never raises: a listener only takes the
event (puts it on its own queue, or remembers it); the slow part (an HTTP POST, a
notification) runs elsewhere, so an event never delays or fails the tool call it came from.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

SESSION_STARTED = "session.started"
SESSION_CHECKPOINT = "session.checkpoint"
SESSION_ENDED = "session.ended"
INSIGHT_CAPTURED = "insight.captured"
SYNC_FAILED = "sync.failed"
EVENT_TYPES = (SESSION_STARTED, SESSION_CHECKPOINT, SESSION_ENDED, INSIGHT_CAPTURED, SYNC_FAILED)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "at": self.at, "data": self.data}


Listener = Callable[[Event], None]


class EventBus:
    """Listeners by subscription; :meth:`emit` calls each in turn, catching what it raises."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.emitted = 0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, type: str, **data: Any) -> Event:
        event = Event(type, data)
        self.emitted += 1
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:  # a listener's fault is never the caller's
                log.warning("event listener %r failed on %s: %s", listener, type, exc)
        return event


def bus_from(resolve: Callable[[type], Any]) -> EventBus:
    """The container's bus, or a bus of one's own (nobody listens) when none is registered."""
    try:
        found: EventBus = resolve(EventBus)
    except Exception:
        return EventBus()
    return found
