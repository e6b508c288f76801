"""No sync: nothing leaves this machine (the default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from session_buddy._acb import AdapterMetadata, AdapterStatus
from session_buddy.adapters.sync._base import Memory, PushResult, RemoteError, SyncBase

MODULE_METADATA = AdapterMetadata(
    module_id="5d0c8e2a-7f41-4b6e-a9d3-2e8f1c0b4a61",
    name="none",
    category="sync",
    provider="session-buddy",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Sync turned off: memories stay on this machine",
    capabilities=[],
    required_packages=[],
)


class Sync(SyncBase):
    name = "none"

    @classmethod
    def from_settings(cls, settings: Any, paths: Any, resolve: Callable[[type], Any]) -> Sync:
        return cls()

    @property
    def enabled(self) -> bool:
        return False

    @property
    def remote(self) -> str:
        return "none"

    async def push(self, memories: Sequence[Memory]) -> PushResult:
        raise RemoteError(
            "sync is off (adapters.sync = none); set adapters.sync: akosha to push memories",
            retryable=False,
        )
