"""No embeddings: nothing is ever turned into a vector.

Search falls back to keyword ranking and ``health`` reports semantic search as degraded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from session_buddy._acb import AdapterMetadata, AdapterStatus
from session_buddy.adapters.embeddings._base import EmbeddingsBase, EmbeddingState
from session_buddy.errors import EmbeddingError

if TYPE_CHECKING:
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="2b9f6c41-0e7d-4a3b-9c58-d1e4f7a6b320",
    name="none",
    category="embeddings",
    provider="session-buddy",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Embeddings turned off: keyword search only, reported as degraded by health",
    capabilities=[],
    required_packages=[],
)

DISABLED_MESSAGE = (
    "embeddings are disabled (adapters.embeddings = none); keyword search still works"
)


class Embeddings(EmbeddingsBase):
    name = "none"

    def __init__(self, dimension: int = 384) -> None:
        self._dimension = dimension

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths | None = None,
        resolve: Callable[[type], Any] | None = None,
    ) -> Embeddings:
        return cls(settings.embeddings.dimension)

    @property
    def available(self) -> bool:
        return False

    @property
    def model_id(self) -> str:
        return "none"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def state(self) -> EmbeddingState:
        return "disabled"

    @property
    def reason(self) -> str:
        """Why there are no vectors (for health and logs; ``error`` stays None: nothing failed)."""
        return DISABLED_MESSAGE

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingError(DISABLED_MESSAGE)

    async def embed_query(self, text: str) -> np.ndarray:
        raise EmbeddingError(DISABLED_MESSAGE)
