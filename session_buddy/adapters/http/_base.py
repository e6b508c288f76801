"""HTTP: the one shared client (pooling, timeouts, retry with backoff)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class HttpBase(ABC):
    name: str = ""

    @abstractmethod
    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request, retrying connection errors and 5xx/429 with backoff.
        Returns an ``httpx.Response``; raises ``httpx.HTTPError`` after the last try."""

    async def get(self, url: str, **kwargs: Any) -> Any:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Any:
        return await self.request("POST", url, **kwargs)

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...
