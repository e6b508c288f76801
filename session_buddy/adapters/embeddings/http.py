"""Remote embeddings over HTTP: Ollama, llama-server or any OpenAI-compatible server.

``embeddings.api`` picks the protocol:

* ``ollama``: ``POST {url}/api/embed`` with ``{"model", "input": [...]}``, answer
  ``{"embeddings": [[...], ...]}``;
* ``openai``: ``POST {url}/v1/embeddings`` with the same body, answer
  ``{"data": [{"index": i, "embedding": [...]}, ...]}`` (llama-server, vLLM, LM Studio, ...).

Requests go through the shared HTTP adapter (one pooled client, retries with backoff).
Vectors are L2-normalised here, whatever the server does, and must have
``embeddings.dimension`` dimensions. A failure sets ``state = "failed"`` with ``error``; the
next call tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters.embeddings._base import EmbeddingsBase, EmbeddingState
from session_buddy.adapters.embeddings.onnx import clean_text
from session_buddy.adapters.http._base import HttpBase
from session_buddy.errors import DimensionMismatch, EmbeddingError

if TYPE_CHECKING:
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import EmbeddingsSettings, SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="b41d7e93-58c2-4f6a-a0e1-3c9d2f8b6e54",
    name="http",
    category="embeddings",
    provider="ollama/openai-compatible",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Embeddings from an Ollama, llama-server or OpenAI-compatible HTTP server",
    capabilities=[
        AdapterCapability.ASYNC_OPERATIONS,
        AdapterCapability.BATCH_EMBEDDING,
        AdapterCapability.BATCHING,
        AdapterCapability.CACHING,
        AdapterCapability.VECTOR_NORMALIZATION,
    ],
    required_packages=["httpx", "numpy"],
)

log = logging.getLogger(__name__)


class Embeddings(EmbeddingsBase):
    name = "http"

    def __init__(self, settings: EmbeddingsSettings, http: HttpBase) -> None:
        self.settings = settings
        self.http = http
        self._state: EmbeddingState = "lazy"
        self._error: str | None = None
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths | None,
        resolve: Callable[[type], Any],
    ) -> Embeddings:
        return cls(settings.embeddings, resolve(HttpBase))

    # -- protocol -----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        # A failed request may succeed later (the server can come up): never "can never".
        return True

    @property
    def model_id(self) -> str:
        return f"http:{self.settings.api}:{self.settings.remote_model}"

    @property
    def dimension(self) -> int:
        return self.settings.dimension

    @property
    def state(self) -> EmbeddingState:
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def endpoint(self) -> str:
        base = self.settings.url.rstrip("/")
        if self.settings.api == "ollama":
            return f"{base}/api/embed"
        # Accept a base URL given with or without the /v1 suffix.
        return f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"

    # -- inference ----------------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise EmbeddingError("embed() takes a sequence of texts, not one str")
        if len(texts) == 0:
            return np.zeros((0, self.settings.dimension), dtype=np.float32)
        cleaned = [clean_text(t) for t in texts]
        batch = max(1, self.settings.batch_size)
        try:
            parts = [
                await self._request(cleaned[start : start + batch])
                for start in range(0, len(cleaned), batch)
            ]
        except EmbeddingError as exc:
            self._state = "failed"
            self._error = str(exc)
            raise
        self._state = "ready"
        self._error = None
        return np.concatenate(parts, axis=0)

    async def embed_query(self, text: str) -> np.ndarray:
        """One query vector; repeated texts come from an LRU cache (``embeddings.cache_size``)."""
        size = self.settings.cache_size
        cached = self._cache.pop(text, None) if size > 0 else None
        if cached is not None:
            self._cache[text] = cached  # most recent last (dicts keep insertion order)
            return cached.copy()
        vector = (await self.embed([text]))[0]
        if size > 0:
            self._cache[text] = vector.copy()
            while len(self._cache) > size:
                self._cache.pop(next(iter(self._cache)))
        return vector

    async def _request(self, texts: list[str]) -> np.ndarray:
        url = self.endpoint
        body = {"model": self.settings.remote_model, "input": texts}
        try:
            response = await self.http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise EmbeddingError(
                f"cannot reach the embeddings server at {url} ({type(exc).__name__}: {exc}). "
                f"Start it (for Ollama: `ollama serve` and `ollama pull "
                f"{self.settings.remote_model}`), or set embeddings.url "
                "(SESSION_BUDDY_EMBEDDINGS__URL), or use the local model with "
                "adapters.embeddings = onnx"
            ) from exc
        if response.status_code >= 400:
            detail = response.text[:300].strip()
            hint = ""
            if response.status_code == 404:
                hint = (
                    f" Check that model {self.settings.remote_model!r} exists on the server "
                    f"(Ollama: `ollama pull {self.settings.remote_model}`) and that "
                    f"embeddings.api ({self.settings.api!r}) matches the server."
                )
            raise EmbeddingError(
                f"the embeddings server at {url} answered HTTP {response.status_code}: "
                f"{detail or response.reason_phrase}.{hint}"
            )
        try:
            payload = response.json()
            rows = self._vectors(payload)
            matrix = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError, KeyError) as exc:
            raise EmbeddingError(
                f"the embeddings server at {url} sent an answer that is not "
                f"{self.settings.api!r} embeddings JSON ({type(exc).__name__}: {exc}); check "
                "embeddings.api"
            ) from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise EmbeddingError(
                f"the embeddings server at {url} returned {matrix.shape[0] if matrix.ndim else 0} "
                f"vectors for {len(texts)} texts"
            )
        if matrix.shape[1] != self.settings.dimension:
            raise DimensionMismatch(
                f"model {self.settings.remote_model!r} at {url} returns {matrix.shape[1]}-"
                f"dimensional vectors but embeddings.dimension is {self.settings.dimension}; "
                f"set embeddings.dimension to {matrix.shape[1]} (and re-embed stored items) or "
                f"choose a {self.settings.dimension}-dimensional embeddings.remote_model"
            )
        if not np.isfinite(matrix).all():
            raise EmbeddingError(f"the embeddings server at {url} returned NaN or infinite values")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)

    def _vectors(self, payload: Any) -> list[Any]:
        if self.settings.api == "ollama":
            rows = payload["embeddings"]
            if not isinstance(rows, list):
                raise TypeError("'embeddings' is not a list")
            return rows
        data = payload["data"]
        if not isinstance(data, list):
            raise TypeError("'data' is not a list")
        items = sorted(data, key=lambda item: item.get("index", 0))
        return [item["embedding"] for item in items]

    async def close(self) -> None:
        """The shared HTTP client is closed by its own adapter; only the cache goes here."""
        self._cache.clear()
