"""Embeddings: turn texts into L2-normalised float32 vectors.

Implementations: ``onnx.py`` (local all-MiniLM-L6-v2, lazy, offline), ``http.py``
(Ollama / llama-server / OpenAI-compatible, through the shared httpx client), ``none.py``
(no vectors: search falls back to keywords and health reports it as degraded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np

EmbeddingState = Literal["lazy", "loading", "ready", "failed", "disabled"]


class EmbeddingsBase(ABC):
    #: The name used in settings (``adapters.embeddings``).
    name: str = ""

    @property
    @abstractmethod
    def available(self) -> bool:
        """False when this adapter can never produce vectors (``none``, or failed to load)."""

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Identifies the vector space; stored with the vectors to detect a change of model."""

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @property
    @abstractmethod
    def state(self) -> EmbeddingState: ...

    @property
    def error(self) -> str | None:
        """Why the adapter failed, when ``state == "failed"``."""
        return None

    def start_background_load(self) -> None:  # noqa: B027 - optional hook
        """Begin loading in the background (called after the MCP handshake)."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for texts, shape (len(texts), dimension), float32, L2-normalised.
        Runs off the event loop. Raises EmbeddingError when unavailable."""

    async def embed_query(self, text: str) -> np.ndarray:
        """One query vector (implementations may cache repeated query texts)."""
        return (await self.embed([text]))[0]

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model or connections."""
