"""Sync: the protocol of a remote that memories are pushed to (Akosha, or none).

A memory is Akosha's shape: ``{memory_id, text, embedding: [384 floats], metadata: {source,
original_id, created_at, type, ...}}``. :meth:`SyncBase.push` sends one batch and says which
memory_ids the remote holds afterwards and which it refused (with the error). A call that
fails as a whole raises :class:`RemoteError`, saying whether trying again can help and how
long the remote asked us to wait (HTTP 429 ``Retry-After``). Retries, the circuit breaker
and the dead-letter queue are the caller's (:mod:`session_buddy.core.resilience`), so every
backend gets the same ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from session_buddy.errors import SessionBuddyError

Memory = dict[str, Any]


@dataclass(slots=True)
class PushResult:
    #: memory_ids the remote holds now (stored by this call, or already before it)
    stored: list[str] = field(default_factory=list)
    #: memory_id -> why the remote refused it
    failed: dict[str, str] = field(default_factory=dict)
    #: of ``stored``, how many the remote reported it had already (a re-sent batch)
    already: int = 0


class RemoteError(SessionBuddyError):
    """A call that failed as a whole (connection, timeout, HTTP error, tool error)."""

    code = "remote_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class SyncBase(ABC):
    """Implementations: ``akosha.py`` (FastMCP HTTP client), ``none.py`` (sync off)."""

    #: The name used in settings (``adapters.sync``).
    name: str = ""
    #: Most memories one :meth:`push` takes.
    max_batch: int = 1000
    #: set by whoever guards the calls (the sync service's circuit breaker): the state of
    #: the circuit to :attr:`remote`, for health; None while nothing guards it
    circuit_state: Callable[[], dict[str, Any]] | None = None

    @property
    def enabled(self) -> bool:
        """False when nothing is ever pushed (the ``none`` adapter)."""
        return True

    @property
    @abstractmethod
    def remote(self) -> str:
        """Where pushes go (a URL); the circuit breaker is kept per remote."""

    @abstractmethod
    async def push(self, memories: Sequence[Memory]) -> PushResult:
        """Store a batch of at most :attr:`max_batch` memories; raises :class:`RemoteError`."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close connections (idempotent)."""
