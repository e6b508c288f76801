"""Shutdown: ordered cleanup of everything the process opened."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Callback = Callable[[], Any] | Callable[[], Awaitable[Any]]


@dataclass
class CleanupTask:
    name: str
    callback: Callback
    priority: int = 50  # higher runs first
    timeout_s: float = 5.0
    critical: bool = False  # a failing critical task stops the chain


@dataclass
class ShutdownStats:
    executed: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    order: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


class ShutdownBase(ABC):
    name: str = ""

    @abstractmethod
    def register(
        self,
        name: str,
        callback: Callback,
        priority: int = 50,
        timeout_s: float = 5.0,
        critical: bool = False,
    ) -> None: ...

    @abstractmethod
    async def shutdown(self) -> ShutdownStats:
        """Run every task once, highest priority first. Later calls return the same stats."""

    @property
    @abstractmethod
    def stats(self) -> ShutdownStats | None: ...
