"""Storage: the protocol every backend implements (memory, duckdb, later postgres).

The unit of memory is a :class:`MemoryItem` of some ``kind`` (``conversation``,
``reflection``, ``insight``). A backend stores items durably, deduplicates them by
``(kind, project, content_hash)``, keeps their embeddings, and answers the two rankers that
hybrid search fuses: keyword (BM25) and vector (cosine). In-process backends delegate both
to :class:`session_buddy.adapters.search.SearchIndex`, kept consistent with every write;
a server backend (PostgreSQL) answers them natively.

Every method is async; blocking backends run their work with ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

KINDS = ("conversation", "reflection", "insight")
ROLES = ("user", "assistant", "system", "tool")

_SPACE = re.compile(r"\s+")


def normalise_content(text: str) -> str:
    """The form used for deduplication: NFC, trimmed, runs of white space folded, case kept."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_hash(text: str) -> str:
    """SHA-256 of the normalised content (the dedup key, with kind and project)."""
    return hashlib.sha256(normalise_content(text).encode("utf-8", "surrogatepass")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class NewItem:
    """An item to store. ``embedding`` is filled in by the memory service."""

    kind: str
    content: str
    project: str | None = None
    session_id: str | None = None
    role: str | None = None
    tags: list[str] = field(default_factory=list)
    author: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    embedding: np.ndarray | None = None
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = content_hash(self.content)


@dataclass(slots=True)
class MemoryItem:
    id: str
    kind: str
    content: str
    project: str | None
    session_id: str | None
    role: str | None
    tags: list[str]
    author: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    content_hash: str
    has_embedding: bool = False


@dataclass(slots=True)
class AddResult:
    id: str
    created: bool  # False: an identical item existed, its id is returned


@dataclass(slots=True)
class ItemFilter:
    """Restricts listing and search. ``None`` means "any"."""

    projects: list[str] | None = None
    kinds: list[str] | None = None
    tags: list[str] | None = None  # an item matches if it has every tag given
    role: str | None = None
    session_id: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    ids: set[str] | None = None


@dataclass(slots=True)
class Hit:
    """One ranker's answer: an id and a score (BM25 score or cosine similarity)."""

    id: str
    score: float


@dataclass(slots=True)
class StorageStats:
    items: int
    by_kind: dict[str, int]
    by_project: dict[str, int]
    embedded: int
    embedding_model: str | None
    embedding_dimension: int | None
    size_bytes: int | None = None


@dataclass(slots=True)
class Record:
    """A small JSON document of a named collection (sessions, quality history, projects...)."""

    collection: str
    id: str
    data: dict[str, Any]
    project: str | None = None
    status: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


class StorageBase(ABC):
    """The storage protocol. Implementations: ``memory.py``, ``duckdb.py``."""

    #: The name used in settings (``adapters.storage``).
    name: str = ""

    @abstractmethod
    async def initialize(self) -> None:
        """Open the backend, run migrations, load search indexes. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Flush, checkpoint and close. Idempotent."""

    @abstractmethod
    async def add_items(self, items: Sequence[NewItem]) -> list[AddResult]:
        """Store items in one transaction; durable when this returns. Duplicates
        (same kind, project and content hash) are not stored again: their id is returned."""

    @abstractmethod
    async def get_items(self, ids: Sequence[str]) -> list[MemoryItem]:
        """The items with these ids, in the order given; unknown ids are left out."""

    @abstractmethod
    async def update_item(
        self,
        item_id: str,
        *,
        content: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        embedding: np.ndarray | None = None,
    ) -> MemoryItem:
        """Change an item; raises NotFound. A new content must come with its new embedding
        (or None when embeddings are off)."""

    @abstractmethod
    async def delete_items(self, ids: Sequence[str]) -> int:
        """Delete items; returns how many existed."""

    @abstractmethod
    async def list_items(
        self, flt: ItemFilter, *, limit: int = 50, offset: int = 0, newest_first: bool = True
    ) -> list[MemoryItem]:
        """Items matching the filter, ordered by ``created_at``."""

    @abstractmethod
    async def count_items(self, flt: ItemFilter | None = None) -> int: ...

    @abstractmethod
    async def keyword_search(self, query: str, flt: ItemFilter, limit: int) -> list[Hit]:
        """BM25 ranking of items matching the filter; sees every acknowledged write."""

    @abstractmethod
    async def vector_search(self, vector: np.ndarray, flt: ItemFilter, limit: int) -> list[Hit]:
        """Cosine ranking (vectors are L2-normalised) of items matching the filter."""

    @abstractmethod
    async def stats(self) -> StorageStats: ...

    @abstractmethod
    async def get_meta(self, key: str) -> str | None:
        """A value of the store's own key/value table (schema version, embedding model)."""

    @abstractmethod
    async def set_meta(self, key: str, value: str) -> None: ...

    # -- records: small JSON documents for the session, quality and project services --------

    @abstractmethod
    async def put_record(self, record: Record) -> None:
        """Insert or replace (by collection and id); durable when this returns."""

    @abstractmethod
    async def get_record(self, collection: str, record_id: str) -> Record | None: ...

    @abstractmethod
    async def list_records(
        self,
        collection: str,
        *,
        project: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[Record]:
        """Records of a collection ordered by ``created_at``, optionally by project/status."""

    @abstractmethod
    async def delete_record(self, collection: str, record_id: str) -> bool: ...

    async def ping(self) -> float:
        """Round trip to the backend, in milliseconds (for health)."""
        start = datetime.now(UTC)
        await self.count_items(None)
        return (datetime.now(UTC) - start).total_seconds() * 1000
