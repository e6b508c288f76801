"""Akosha: push memories to Akosha's MCP server over streamable HTTP (FastMCP's client).

Akosha's ingestion tools (``akosha/mcp/tools/session_buddy_tools.py``):
``akosha_batch_store_memories(memories)`` takes at most 1,000 memories and answers
``{status, total, stored, failed, errors: [{memory_id, error}]}``. Its hot store keys
memories by ``memory_id``, so a memory sent again is refused with a "Duplicate key" error:
that answer means the remote holds it, and is counted as stored (``PushResult.already``).

Every failure of a call as a whole becomes a :class:`RemoteError`: HTTP 429 and 5xx,
timeouts, dropped connections and connection refusals are retryable (429 with its
``Retry-After``); 401/403 and other 4xx and a tool error are not.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters.sync._base import Memory, PushResult, RemoteError, SyncBase

MODULE_METADATA = AdapterMetadata(
    module_id="9e4b1f7c-2a6d-4c83-b5e0-7d1a3f9c2e84",
    name="akosha",
    category="sync",
    provider="akosha",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Push memories to Akosha's MCP server (streamable HTTP, bearer token)",
    capabilities=[AdapterCapability.ASYNC_OPERATIONS],
    required_packages=["fastmcp"],
)

BATCH_TOOL = "akosha_batch_store_memories"
MAX_BATCH = 1000
#: per-item errors that mean "the remote already holds this memory_id"
ALREADY_STORED = ("duplicate key", "already exists", "unique constraint")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def remote_error(exc: BaseException, url: str) -> RemoteError:
    """What a failed call means for retrying it."""
    import httpx

    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        return RemoteError(
            f"{url}: HTTP {status}",
            retryable=status == 429 or status >= 500 or status == 408,
            retry_after=retry_after if status in (429, 503) else None,
            status=status,
        )
    if isinstance(exc, httpx.TransportError | OSError | TimeoutError | asyncio.TimeoutError):
        return RemoteError(f"{url}: {type(exc).__name__}: {exc}")
    text = str(exc) or type(exc).__name__
    if "timed out" in text.lower() or "connection" in text.lower():
        return RemoteError(f"{url}: {text}")  # McpError from a lost or late answer
    return RemoteError(f"{url}: {type(exc).__name__}: {text}", retryable=False)


def batch_result(memories: Sequence[Memory], answer: dict[str, Any]) -> PushResult:
    """A batch answer as stored / already / failed memory_ids."""
    ids = [str(m["memory_id"]) for m in memories]
    errors = {str(e.get("memory_id")): str(e.get("error")) for e in answer.get("errors") or []}
    if not errors and answer.get("failed") and not answer.get("stored"):
        reason = str(answer.get("error") or "the batch was refused")
        errors = dict.fromkeys(ids, reason)
    result = PushResult()
    for memory_id in ids:
        error = errors.get(memory_id)
        if error is None:
            result.stored.append(memory_id)
        elif any(word in error.lower() for word in ALREADY_STORED):
            result.stored.append(memory_id)
            result.already += 1
        else:
            result.failed[memory_id] = error
    return result


class Sync(SyncBase):
    name = "akosha"
    max_batch = MAX_BATCH

    def __init__(self, url: str, token: str | None, timeout_s: float) -> None:
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Any, paths: Any, resolve: Callable[[type], Any]) -> Sync:
        s = settings.sync
        return cls(s.akosha_url, os.environ.get(s.token_env) or None, s.timeout_s)

    @property
    def remote(self) -> str:
        return self.url

    def _http_client(
        self,
        headers: dict[str, str] | None = None,
        timeout: Any = None,
        auth: Any = None,
        **options: Any,
    ) -> Any:
        """httpx client of one MCP session; the TLS context is made once (it costs ~0.1 s)."""
        import httpx

        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return httpx.AsyncClient(
            headers=headers,
            timeout=timeout or httpx.Timeout(self.timeout_s),
            auth=auth,
            verify=self._ssl,
            **options,
        )

    def _client(self) -> Any:
        """A new MCP session per push: a failed call leaves nothing half-open behind."""
        from fastmcp import Client
        from fastmcp.client.transports import StreamableHttpTransport

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        transport = StreamableHttpTransport(
            self.url, headers=headers, httpx_client_factory=self._http_client
        )
        return Client(transport, timeout=self.timeout_s, init_timeout=self.timeout_s)

    async def push(self, memories: Sequence[Memory]) -> PushResult:
        if not memories:
            return PushResult()
        if len(memories) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} memories per call, not {len(memories)}")
        try:
            async with asyncio.timeout(self.timeout_s * 3), self._client() as client:
                answer = await client.call_tool_mcp(BATCH_TOOL, {"memories": list(memories)})
        except Exception as exc:
            raise remote_error(exc, self.url) from exc
        if answer.isError:
            text = " ".join(getattr(c, "text", "") for c in answer.content) or "tool error"
            raise RemoteError(f"{self.url}: {BATCH_TOOL} failed: {text[:500]}", retryable=False)
        data = answer.structuredContent or {}
        if set(data) == {"result"} and isinstance(data["result"], dict):
            data = data["result"]
        return batch_result(memories, data)
