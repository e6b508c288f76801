"""The memory service: store conversations and reflections, search them (hybrid).

No MCP in here: tools call this, this calls the storage and embeddings adapters.
(API contract; the implementation is being filled in.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from session_buddy.adapters.embeddings._base import EmbeddingsBase
from session_buddy.adapters.storage._base import MemoryItem, StorageBase
from session_buddy.settings import SessionBuddySettings

SearchMode = Literal["hybrid", "semantic", "keyword"]
Confidence = Literal["high", "medium", "low", "none"]


@dataclass
class ItemInput:
    """What a caller gives to store (validated by the service)."""

    content: str
    kind: str = "conversation"
    project: str | None = None
    session_id: str | None = None
    role: str | None = None
    tags: list[str] = field(default_factory=list)
    author: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class StoreResult:
    id: str
    created: bool  # False: an identical item existed (same kind, project, content)
    embedded: bool  # False: stored without a vector (embeddings unavailable)


@dataclass
class SearchHit:
    id: str
    kind: str
    content: str  # full text, or a snippet when longer than settings.search.snippet_chars
    content_length: int
    truncated: bool
    score: float  # fused score, 0..1 (1 = best possible)
    confidence: Confidence
    semantic_score: float | None  # cosine similarity, when the vector ranker saw it
    keyword_score: float | None  # BM25 score, when the keyword ranker saw it
    project: str | None
    session_id: str | None
    role: str | None
    created_at: datetime
    tags: list[str]
    metadata: dict[str, Any]


@dataclass
class SearchResponse:
    hits: list[SearchHit]
    mode: SearchMode  # the mode actually used (hybrid falls back to keyword when degraded)
    confidence: Confidence  # of the best hit; "none" when nothing relevant came back
    degraded: str | None = None  # why semantic search was not used, if it was asked for
    has_more: bool = False


class MemoryService:
    def __init__(
        self, storage: StorageBase, embeddings: EmbeddingsBase, settings: SessionBuddySettings
    ) -> None:
        self.storage = storage
        self.embeddings = embeddings
        self.settings = settings

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> MemoryService:
        return cls(resolve(StorageBase), resolve(EmbeddingsBase), resolve(SessionBuddySettings))

    async def store(self, items: Sequence[ItemInput]) -> list[StoreResult]:
        raise NotImplementedError

    async def search(
        self,
        query: str,
        *,
        projects: list[str] | None = None,
        kinds: list[str] | None = None,
        tags: list[str] | None = None,
        role: str | None = None,
        session_id: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        offset: int = 0,
    ) -> SearchResponse:
        raise NotImplementedError

    async def get(self, item_id: str) -> MemoryItem:
        raise NotImplementedError

    async def delete(self, item_id: str) -> None:
        raise NotImplementedError

    async def update(
        self, item_id: str, *, content: str | None = None, tags: list[str] | None = None
    ) -> MemoryItem:
        raise NotImplementedError

    async def stats(self, project: str | None = None) -> dict[str, Any]:
        raise NotImplementedError
