"""Storage: the protocol every backend implements (memory, duckdb, later postgres).

The unit of memory is a :class:`MemoryItem` of some ``kind`` (``conversation``,
``reflection``, ``insight``). A backend stores items durably, deduplicates them by
``(kind, project, content_hash)``, keeps their embeddings, and answers the two rankers that
hybrid search fuses: keyword (BM25) and vector (cosine). In-process backends delegate both
to :class:`session_buddy.search.SearchIndex`, kept consistent with every write;
a server backend (PostgreSQL) answers them natively.

Every method is async; blocking backends run their work with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from session_buddy.adapters.storage._graph import GraphStore

KINDS = ("conversation", "reflection", "insight")
ROLES = ("user", "assistant", "system", "tool")

_SPACE = re.compile(r"\s+")


def normalise_content(text: str) -> str:
    """The form used for deduplication: NFC, trimmed, runs of white space folded, case kept."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_hash(text: str) -> str:
    """SHA-256 of the normalised content (the dedup key, with kind, project and author)."""
    return hashlib.sha256(normalise_content(text).encode("utf-8", "surrogatepass")).hexdigest()


#: Items with the same key are stored once: kind, project, author and content hash. The
#: author is part of it so that, on a store several people share, one person's copy of a
#: text never becomes another's item they cannot see.
DedupKey = tuple[str, str | None, str | None, str]


def dedup_key(item: Any) -> DedupKey:
    """The dedup key of an item (new or stored)."""
    return (item.kind, item.project, item.author, item.content_hash)


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_text(text: object, max_bytes: int, *, what: str = "content") -> int:
    """Refuse what cannot be stored exactly; returns the UTF-8 size in bytes.

    Raises :class:`~session_buddy.errors.ValidationError` for a non-str, a lone surrogate
    (not valid Unicode: it has no UTF-8 form), a NUL character (PostgreSQL cannot store it;
    refused by every backend so they all behave alike) or more than ``max_bytes`` bytes."""
    from session_buddy.errors import ValidationError

    if not isinstance(text, str):
        raise ValidationError(f"{what} must be text (str), not {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{what} contains an unpaired surrogate (U+{ord(text[exc.start]):04X} at character "
            f"{exc.start}), which is not valid Unicode and cannot be stored exactly; decode the "
            "source as UTF-8 (or replace the character) and store it again"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ValidationError(
            f"{what} contains a NUL character (U+0000) at character {nul}; NUL cannot be "
            "stored by every backend (PostgreSQL text refuses it), so it is refused "
            "everywhere: remove it (or encode binary data, e.g. as base64) and store again"
        )
    if size > max_bytes:
        raise ValidationError(
            f"{what} is {size:,} bytes (UTF-8) but the limit is {max_bytes:,} bytes "
            "(setting storage.max_content_bytes, env SESSION_BUDDY_STORAGE__MAX_CONTENT_BYTES); "
            "split it into smaller items or raise the limit"
        )
    return size


def metadata_json(metadata: object) -> str:
    """``metadata`` as a JSON object string; refuses what JSON cannot round-trip."""
    from session_buddy.errors import ValidationError

    if not isinstance(metadata, dict):
        raise ValidationError(
            f"metadata must be a JSON object (dict), not {type(metadata).__name__}"
        )
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"metadata must hold only JSON values (str, number, bool, null, list, dict): {exc}"
        ) from None
    check_text(text, 1 << 30, what="metadata")
    if _has_nul(metadata):
        raise ValidationError(
            "metadata contains a NUL character (U+0000) in a key or value; it is refused "
            "like in content (PostgreSQL cannot store it): remove it and store again"
        )
    return text


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def check_content(content: object, max_bytes: int) -> str:
    """An item's content: text of at most ``max_bytes`` bytes, not blank."""
    from session_buddy.errors import ValidationError

    check_text(content, max_bytes)
    assert isinstance(content, str)
    if not content.strip():
        raise ValidationError("content is empty; there is nothing to store")
    return content


def check_tags(tags: object) -> list[str]:
    """An item's tags: a list of strings of at most 1 KiB each (a copy of it)."""
    from session_buddy.errors import ValidationError

    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValidationError("tags must be a list of strings")
    for tag in tags:
        check_text(tag, 1024, what="a tag")
    return list(tags)


def check_vector(vector: np.ndarray, dimension: int) -> np.ndarray:
    """``vector`` as a flat float32 array of ``dimension`` values; else DimensionMismatch."""
    from session_buddy.errors import DimensionMismatch

    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vec.shape[0] != dimension:
        raise DimensionMismatch(
            f"a {vec.shape[0]}-dimensional vector was given but the store holds "
            f"{dimension}-dimensional vectors; use the embedding model the store "
            "was built with, or re-embed the store"
        )
    return vec


def validate_item(item: NewItem, max_bytes: int) -> None:
    """The checks every backend applies to an item before storing it."""
    from session_buddy.errors import ValidationError

    if item.kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}, not {item.kind!r}")
    if item.role is not None and item.role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}, not {item.role!r}")
    check_content(item.content, max_bytes)
    check_tags(item.tags)
    for name in ("project", "session_id", "author"):
        value = getattr(item, name)
        if value is not None:
            check_text(value, 4096, what=name)
    metadata_json(item.metadata)
    if item.created_at.tzinfo is None:
        item.created_at = item.created_at.replace(tzinfo=UTC)


def validate_items(
    items: Sequence[NewItem], max_bytes: int, vector_check: Callable[[np.ndarray], object]
) -> None:
    """:func:`validate_item` on each item of an ``add_items`` batch, and its vector through
    the backend's ``vector_check`` (which raises DimensionMismatch)."""
    for item in items:
        validate_item(item, max_bytes)
        if item.embedding is not None:
            vector_check(item.embedding)


@dataclass(slots=True, frozen=True)
class ItemChange:
    """An ``update_item`` call, checked: each field None when it is kept."""

    content: str | None = None
    content_hash: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    #: ``metadata`` as JSON text (what the SQL backends write)
    metadata_json: str | None = None
    #: the new vector (flat float32), or None; with a new content, None clears the vector
    embedding: np.ndarray | None = None


def validate_update(
    *,
    content: str | None,
    tags: list[str] | None,
    metadata: dict[str, Any] | None,
    embedding: np.ndarray | None,
    max_bytes: int,
    dimension: int,
) -> ItemChange:
    """The checks of ``update_item``, the same on every backend and the same rules as
    :func:`validate_item` for what an update can change (content, tags, metadata, vector).
    The item's kind, project, author and times are not changed by an update."""
    md_text = None if metadata is None else metadata_json(metadata)
    return ItemChange(
        content=None if content is None else check_content(content, max_bytes),
        content_hash=None if content is None else content_hash(content),
        tags=None if tags is None else check_tags(tags),
        metadata=None if metadata is None else copy.deepcopy(metadata),
        metadata_json=md_text,
        embedding=None if embedding is None else check_vector(embedding, dimension),
    )


#: the shortest id prefix accepted (a short id in a compact search answer has 8 characters)
MIN_ID_PREFIX = 4
_ID_PREFIX = re.compile(r"[0-9A-Za-z-]+")  # no LIKE wildcard (% _) can pass


def check_id_prefix(prefix: str) -> str:
    """``prefix`` when it can start an item id (letters, digits, ``-``; at least
    :data:`MIN_ID_PREFIX` of them), else a ValidationError."""
    from session_buddy.errors import ValidationError

    if len(prefix) < MIN_ID_PREFIX or not _ID_PREFIX.fullmatch(prefix):
        raise ValidationError(
            f"id {prefix!r} is not an item id or the start of one (at least "
            f"{MIN_ID_PREFIX} letters, digits or -)"
        )
    return prefix


def no_item(item_id: str) -> Exception:
    """The error of an update of an item that does not exist."""
    from session_buddy.errors import NotFound

    return NotFound(f"no memory item with id {item_id!r}")


def duplicate_item(kind: str | None, other_id: object) -> Exception:
    """The error of an update that would make an item identical to another (its dedup key)."""
    from session_buddy.errors import ValidationError

    return ValidationError(
        f"an identical {kind or 'item'} already exists (id {other_id}); delete one of them"
    )


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone (UTC when it has none)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def in_order(ids: Sequence[str], items: Sequence[MemoryItem]) -> list[MemoryItem]:
    """``items`` in the order of ``ids`` (what ``get_items`` returns); unknown ids left out."""
    found = {x.id: x for x in items}
    return [found[i] for i in ids if i in found]


#: kind, content, content_hash, project, session_id, role, tags, author, metadata JSON
ItemValues = tuple[str, str, str, str | None, str | None, str | None, list[str], str | None, str]


def item_values(item: Any) -> ItemValues:
    """An item's stored fields in the column order both SQL backends use: kind, content,
    content_hash, project, session_id, role, tags, author, metadata (as JSON text)."""
    return (
        item.kind,
        item.content,
        item.content_hash,
        item.project,
        item.session_id,
        item.role,
        list(item.tags),
        item.author,
        metadata_json(item.metadata),
    )


def validate_stored_item(item: MemoryItem, max_bytes: int) -> None:
    """:func:`validate_item`'s checks on an item from another store (bulk import)."""
    validate_item(
        NewItem(
            kind=item.kind,
            content=item.content,
            project=item.project,
            session_id=item.session_id,
            role=item.role,
            tags=list(item.tags),
            author=item.author,
            metadata=item.metadata,
            created_at=item.created_at,
            content_hash=item.content_hash,
        ),
        max_bytes,
    )


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


TOOL_BLOCKS = ("tool_use", "tool_result")


def is_dialogue(item: NewItem | MemoryItem) -> bool:
    """A conversation turn people wrote or said (not a tool call or result): the turns that
    get, and give, embedding context, and whose questions lift their replies in search."""
    return (
        item.kind == "conversation"
        and item.role in ("user", "assistant", None)
        and item.metadata.get("block") not in TOOL_BLOCKS
    )


@dataclass(slots=True)
class AddResult:
    id: str
    created: bool  # False: an identical item existed, its id is returned


@dataclass(slots=True)
class ItemFilter:
    """Restricts listing and search. ``None`` means "any". Time bounds: ``after <= created_at
    < before``."""

    projects: list[str] | None = None
    kinds: list[str] | None = None
    tags: list[str] | None = None  # an item matches if it has every tag given
    role: str | None = None
    session_id: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    ids: set[str] | None = None
    # only what this rule lets the caller see (listing applies it like any other condition,
    # so pages stay full and counts agree with them)
    access: Access | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """Who may see what, as data the rankers apply like a filter: an item is visible when
    its ``author`` is one of ``authors`` (``None`` included when author-less items count)
    or its id is one of ``shared``. ``None`` in place of an Access means "everything"."""

    authors: frozenset[str | None]
    shared: frozenset[str] = frozenset()

    def allows(self, author: str | None, item_id: str) -> bool:
        return author in self.authors or item_id in self.shared


@dataclass(slots=True)
class Hit:
    """One ranker's answer: an id, a score (BM25 score or cosine similarity) and what the
    later steps of a search need without fetching the item (time decay, access, scoping)."""

    id: str
    score: float
    created_at: datetime | None = None
    author: str | None = None
    kind: str | None = None
    project: str | None = None


@dataclass(slots=True)
class StorageStats:
    items: int
    by_kind: dict[str, int]
    by_project: dict[str, int]
    embedded: int
    embedding_model: str | None
    embedding_dimension: int | None
    size_bytes: int | None = None
    #: how vector search runs: exact, or an index and its parameters (health shows it)
    vector_search: str = "exact"


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


#: collection, id, project, status, created_at, updated_at, data JSON
RecordValues = tuple[str, str, str | None, str | None, datetime, datetime, str]


def record_values(record: Record) -> RecordValues:
    """A record's stored fields in the column order of the ``records`` tables, checked the
    same way by every backend (text fields of at most 4 KiB, data a JSON object)."""
    data = metadata_json(record.data)
    for name in ("collection", "id", "project", "status"):
        value = getattr(record, name)
        if value is not None:
            check_text(value, 4096, what=f"a record's {name}")
    return (
        record.collection,
        record.id,
        record.project,
        record.status,
        aware(record.created_at),
        aware(record.updated_at),
        data,
    )


def check_meta(key: str, value: str) -> None:
    """A meta key/value, checked the same way by every backend."""
    check_text(key, 4096, what="a meta key")
    check_text(value, 1 << 20, what="a meta value")


def stats_of(
    by_kind: dict[str, int],
    by_project: dict[str, int],
    embedded: int,
    meta: dict[str, str],
    size_bytes: int | None = None,
    vector_search: str = "exact",
) -> StorageStats:
    """The stats answer from the counts every backend gathers."""
    dim = meta.get("embedding_dimension")
    return StorageStats(
        items=sum(by_kind.values()),
        by_kind=by_kind,
        by_project=by_project,
        embedded=int(embedded),
        embedding_model=meta.get("embedding_model"),
        embedding_dimension=int(dim) if dim else None,
        size_bytes=size_bytes,
        vector_search=vector_search,
    )


def check_record_key(record: Record, collection: str, record_id: str) -> None:
    if (record.collection, record.id) != (collection, record_id):
        raise ValueError(
            f"modify_record({collection!r}, {record_id!r}) was given a record of "
            f"({record.collection!r}, {record.id!r}) to write"
        )


class StorageBase(ABC):
    """The storage protocol. Implementations: ``memory.py``, ``duckdb.py``, ``postgres.py``."""

    #: The name used in settings (``adapters.storage``).
    name: str = ""
    #: the largest content accepted, in UTF-8 bytes (setting storage.max_content_bytes)
    max_content_bytes: int
    #: the dimension of the stored vectors
    dimension: int
    #: the knowledge graph beside the items (entities, relations, mentions)
    graph: GraphStore

    @abstractmethod
    async def initialize(self) -> None:
        """Open the backend, run migrations, load search indexes. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Flush, checkpoint and close. Idempotent."""

    @abstractmethod
    async def add_items(self, items: Sequence[NewItem]) -> list[AddResult]:
        """Store items in one transaction; durable when this returns. Duplicates (same
        :func:`dedup_key`: kind, project, author and content hash) are not stored again: their
        id is returned."""

    @abstractmethod
    async def get_items(self, ids: Sequence[str]) -> list[MemoryItem]:
        """The items with these ids, in the order given; unknown ids are left out."""

    @abstractmethod
    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """The ids that start with ``prefix`` (a short id, :func:`check_id_prefix`), in
        order, at most ``limit``: one is the item, more is an ambiguous prefix."""

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
        (or None when embeddings are off). Checked here by :func:`validate_update`, the same
        for every backend, then written by the backend's :meth:`_apply_update`."""
        change = validate_update(
            content=content,
            tags=tags,
            metadata=metadata,
            embedding=embedding,
            max_bytes=self.max_content_bytes,
            dimension=self.dimension,
        )
        return await self._apply_update(item_id, change)

    @abstractmethod
    async def _apply_update(self, item_id: str, change: ItemChange) -> MemoryItem:
        """Write a checked change (raises NotFound; ValidationError when the new content
        makes the item identical to another of the same dedup key)."""

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
    async def keyword_search(
        self, query: str, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        """BM25 ranking of the items matching the filter that ``access`` lets through (all
        when None); sees every acknowledged write. Each hit carries the item's created_at,
        author, kind and project."""

    @abstractmethod
    async def vector_search(
        self, vector: np.ndarray, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        """Cosine ranking (vectors are L2-normalised) of the items matching the filter that
        ``access`` lets through; hits carry the same fields as :meth:`keyword_search`'s."""

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

    async def modify_record(
        self,
        collection: str,
        record_id: str,
        change: Callable[[Record | None], Record | None],
    ) -> Record | None:
        """Read, change and write one record as one step, safe against every other writer
        (other services on a shared database too): no update is lost. ``change`` gets the
        current record (None when absent) and returns the record to write (same collection
        and id), or None to write nothing; it may raise to abort. Returns what was written,
        else the current record. ``change`` may run more than once (after a conflict): keep
        it free of side effects.

        This default serialises the calls of this object, which is enough for a store only
        one process writes (memory, DuckDB); a shared database overrides it."""
        lock = getattr(self, "_modify_lock", None)
        if lock is None:
            lock = self._modify_lock = asyncio.Lock()
        async with lock:
            current = await self.get_record(collection, record_id)
            new = change(current)
            if new is None:
                return current
            check_record_key(new, collection, record_id)
            await self.put_record(new)
            return new

    async def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these items (flat float32), by id; items without a vector
        and unknown ids are left out. A backend that keeps no vectors answers ``{}``."""
        return {}

    # -- changes in order (sync): what changed after a cursor -------------------------------

    async def changed_items(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        """Up to ``limit`` items whose ``(updated_at, id)`` is greater than ``after``, in that
        order, each with its vector (None when it has none, or when the backend keeps no
        vectors at hand: the memory backend)."""
        raise NotImplementedError(f"the {self.name} storage cannot list changes")

    async def changed_records(
        self, collection: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Record]:
        """Up to ``limit`` records of ``collection`` whose ``(updated_at, id)`` is greater than
        ``after``, in that order."""
        raise NotImplementedError(f"the {self.name} storage cannot list changes")

    # -- bulk copy (session-buddy migrate): ids, times and vectors preserved ---------------

    async def export_items(
        self, after_id: str | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        """Up to ``limit`` items with ids greater than ``after_id`` (byte order), ordered by
        id, each with its vector."""
        raise NotImplementedError(f"the {self.name} storage cannot export items")

    async def import_items(self, rows: Sequence[tuple[MemoryItem, np.ndarray | None]]) -> int:
        """Store exported items exactly (ids, hashes, times, vectors) in one transaction;
        ids already present are skipped (so an interrupted copy can be run again). Returns
        how many were inserted."""
        raise NotImplementedError(f"the {self.name} storage cannot import items")

    async def export_records(self, after: tuple[str, str] | None, limit: int) -> list[Record]:
        """Up to ``limit`` records after ``(collection, id)``, ordered by that key."""
        raise NotImplementedError(f"the {self.name} storage cannot export records")

    async def all_meta(self) -> dict[str, str]:
        """Every key/value of the meta table."""
        raise NotImplementedError(f"the {self.name} storage cannot list its meta table")

    async def ping(self) -> float:
        """Round trip to the backend, in milliseconds (for health)."""
        start = datetime.now(UTC)
        await self.count_items(None)
        return (datetime.now(UTC) - start).total_seconds() * 1000
