"""The httpx implementation of the HTTP adapter: one AsyncClient for the whole process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters.http._base import HttpBase
from session_buddy.settings import HttpSettings

MODULE_METADATA = AdapterMetadata(
    module_id="4c3bb2c4-6c1f-4d8e-9a59-5b1f0e1b7a01",
    name="httpx",
    category="http",
    provider="httpx",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Shared httpx.AsyncClient with pooling, timeouts and retries",
    capabilities=[AdapterCapability.ASYNC_OPERATIONS, AdapterCapability.CONNECTION_POOLING],
    required_packages=["httpx"],
)

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 500, 502, 503, 504}


class Http(HttpBase):
    name = "httpx"

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any, paths: Any, resolve: Any) -> Http:
        return cls(settings.http)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            s = self.settings
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
                limits=httpx.Limits(
                    max_connections=s.max_connections,
                    max_keepalive_connections=max(1, s.max_connections // 2),
                ),
                follow_redirects=True,
            )
            self._closed = False
        return self._client

    @property
    def is_open(self) -> bool:
        return self._client is not None and not self._client.is_closed

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            try:
                response = await self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 >= attempts:
                    raise
                log.info("HTTP %s %s failed (%s); retry %d", method, url, exc, attempt + 1)
            else:
                if response.status_code not in RETRY_STATUS or attempt + 1 >= attempts:
                    return response
                log.info(
                    "HTTP %s %s -> %d; retry %d", method, url, response.status_code, attempt + 1
                )
            await asyncio.sleep(self.settings.backoff_s * (2**attempt))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.aclose()
        self._closed = True
