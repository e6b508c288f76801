"""In-memory storage (``mode: lite`` and tests): nothing persisted, same behaviour as DuckDB.

Items, records and meta live in dicts; search uses the shared in-process
:class:`~session_buddy.search.SearchIndex`, exactly as the DuckDB backend does.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters.storage._adjacency import Adjacency
from session_buddy.adapters.storage._base import (
    Access,
    AddResult,
    DedupKey,
    Hit,
    ItemChange,
    ItemFilter,
    MemoryItem,
    NewItem,
    Record,
    StorageBase,
    StorageStats,
    check_id_prefix,
    check_meta,
    dedup_key,
    duplicate_item,
    no_item,
    record_values,
    stats_of,
    utcnow,
    validate_items,
)
from session_buddy.adapters.storage._graphsql import SqlGraph, graph_schema
from session_buddy.adapters.storage._local import sync_index
from session_buddy.search import IndexEntry, SearchIndex

if TYPE_CHECKING:
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="0b9f6a7e-3c51-4d2e-8f0a-6e2d41c7b812",
    name="memory",
    category="storage",
    provider="python",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="In-process storage for lite mode and tests (nothing persisted); BM25 + vector index",
    capabilities=[AdapterCapability.ASYNC_OPERATIONS, AdapterCapability.TRANSACTIONS],
    required_packages=["numpy", "PyStemmer"],
)


class _GraphHost:
    """The memory backend's graph: the SQL graph in an in-process DuckDB database (nothing
    persisted), opened on first use."""

    def __init__(self) -> None:
        from session_buddy.adapters.storage.duckdb import DUCKDB

        self.dialect = DUCKDB
        self._lock = threading.Lock()
        self._con: Any = None

    def _run(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        import duckdb

        with self._lock:
            if self._con is None:
                self._con = duckdb.connect(":memory:")
                for sql in graph_schema(self.dialect):
                    self._con.execute(sql)
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                rows = [con.execute(sql, list(params)).fetchall() for sql, params in statements]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return rows

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return (await asyncio.to_thread(self._run, [(sql, params)]))[0]

    async def _transaction(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        return await asyncio.to_thread(self._run, statements)

    def forget_items(self, ids: list[str]) -> list[Any]:
        """Delete the mentions of these items: their keys ``(item_id, entity_id, start)``."""
        if self._con is None:
            return []
        where = self.dialect.is_any("item_id", "?")
        sql = f"DELETE FROM graph_mentions WHERE {where} RETURNING item_id, entity_id, start_pos"
        return self._run([(sql, [ids])])[0]


class Storage(StorageBase):
    name = "memory"

    def __init__(self, *, dimension: int = 384, max_content_bytes: int = 4 * 1024 * 1024) -> None:
        self.dimension = dimension
        self.max_content_bytes = max_content_bytes
        self._lock = threading.RLock()
        self._items: dict[str, MemoryItem] = {}
        self._dedup: dict[DedupKey, str] = {}
        self._records: dict[tuple[str, str], Record] = {}
        self._meta: dict[str, str] = {}
        self.index = SearchIndex(dimension)
        self._graph_host = _GraphHost()
        self.graph = SqlGraph(self._graph_host, adjacency=Adjacency())

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths | None = None,
        resolve: Callable[[type], Any] | None = None,
    ) -> Storage:
        return cls(
            dimension=settings.embeddings.dimension,
            max_content_bytes=settings.storage.max_content_bytes,
        )

    async def initialize(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- items ----------------------------------------------------------------------------

    async def add_items(self, items: Sequence[NewItem]) -> list[AddResult]:
        validate_items(items, self.max_content_bytes, self.index.vectors.check)
        results: list[AddResult] = []
        entries: list[IndexEntry] = []
        with self._lock:
            for item in items:
                key = dedup_key(item)
                existing = self._dedup.get(key)
                if existing is not None:
                    results.append(AddResult(id=existing, created=False))
                    continue
                item_id = str(uuid.uuid4())
                stored = MemoryItem(
                    id=item_id,
                    kind=item.kind,
                    content=item.content,
                    project=item.project,
                    session_id=item.session_id,
                    role=item.role,
                    tags=list(item.tags),
                    author=item.author,
                    metadata=copy.deepcopy(item.metadata),
                    created_at=item.created_at,
                    updated_at=utcnow(),
                    content_hash=item.content_hash,
                    has_embedding=item.embedding is not None,
                )
                self._items[item_id] = stored
                self._dedup[key] = item_id
                results.append(AddResult(id=item_id, created=True))
                entries.append(IndexEntry.of(stored, item.embedding))
            self.index.add(entries)
        return results

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        prefix = check_id_prefix(prefix)
        with self._lock:
            return sorted(i for i in self._items if i.startswith(prefix))[:limit]

    async def get_items(self, ids: Sequence[str]) -> list[MemoryItem]:
        with self._lock:
            return [_copy(self._items[i]) for i in ids if i in self._items]

    async def _apply_update(self, item_id: str, change: ItemChange) -> MemoryItem:
        with self._lock:
            item = self._items.get(item_id)
            if item is None:
                raise no_item(item_id)
            updated = _copy(item)
            if change.content is not None and change.content_hash is not None:
                key = (item.kind, item.project, item.author, change.content_hash)
                other = self._dedup.get(key)
                if other is not None and other != item_id:
                    raise duplicate_item(item.kind, other)
                self._dedup.pop(dedup_key(item), None)
                self._dedup[key] = item_id
                updated.content = change.content
                updated.content_hash = change.content_hash
                updated.has_embedding = change.embedding is not None
            elif change.embedding is not None:
                updated.has_embedding = True
            if change.tags is not None:
                updated.tags = change.tags
            if change.metadata is not None:
                updated.metadata = change.metadata
            updated.updated_at = utcnow()
            self._items[item_id] = updated
            sync_index(self.index, updated, change)
            return _copy(updated)

    async def delete_items(self, ids: Sequence[str]) -> int:
        with self._lock:
            gone = [self._items.pop(i) for i in dict.fromkeys(ids) if i in self._items]
            for item in gone:
                self._dedup.pop(dedup_key(item), None)
            self.index.remove(item.id for item in gone)
        keys = await asyncio.to_thread(self._graph_host.forget_items, [item.id for item in gone])
        self.graph.unmentioned(keys)
        return len(gone)

    async def list_items(
        self, flt: ItemFilter, *, limit: int = 50, offset: int = 0, newest_first: bool = True
    ) -> list[MemoryItem]:
        with self._lock:
            rows = self.index.filter_ids(flt)
            rows.sort(key=lambda r: (r[1], r[0]), reverse=newest_first)
            return [_copy(self._items[i]) for i, _ in rows[offset : offset + max(0, limit)]]

    async def count_items(self, flt: ItemFilter | None = None) -> int:
        return self.index.count(flt)

    async def keyword_search(
        self, query: str, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        return await asyncio.to_thread(self.index.keyword_search, query, flt, limit, access)

    async def vector_search(
        self, vector: np.ndarray, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        return await asyncio.to_thread(self.index.vector_search, vector, flt, limit, access)

    async def stats(self) -> StorageStats:
        with self._lock:
            items = list(self._items.values())
            return stats_of(
                by_kind=dict(Counter(i.kind for i in items)),
                by_project=dict(Counter(i.project or "" for i in items)),
                embedded=self.index.embedded,
                meta=dict(self._meta),
            )

    async def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    async def set_meta(self, key: str, value: str) -> None:
        check_meta(key, value)
        self._meta[key] = value

    # -- records --------------------------------------------------------------------------

    async def put_record(self, record: Record) -> None:
        record_values(record)  # the checks
        with self._lock:
            self._records[(record.collection, record.id)] = _copy_record(record)

    async def get_record(self, collection: str, record_id: str) -> Record | None:
        with self._lock:
            found = self._records.get((collection, record_id))
            return _copy_record(found) if found else None

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
        with self._lock:
            found = [
                r
                for (c, _), r in self._records.items()
                if c == collection
                and (project is None or r.project == project)
                and (status is None or r.status == status)
            ]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=newest_first)
        return [_copy_record(r) for r in found[offset : offset + max(0, limit)]]

    async def delete_record(self, collection: str, record_id: str) -> bool:
        with self._lock:
            return self._records.pop((collection, record_id), None) is not None

    async def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.index.vectors_of(ids)

    async def changed_items(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        with self._lock:
            found = [
                i for i in self._items.values() if after is None or (i.updated_at, i.id) > after
            ]
        found.sort(key=lambda i: (i.updated_at, i.id))
        return [(_copy(i), None) for i in found[: max(0, limit)]]

    async def changed_records(
        self, collection: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Record]:
        with self._lock:
            found = [
                r
                for (c, _), r in self._records.items()
                if c == collection and (after is None or (r.updated_at, r.id) > after)
            ]
        found.sort(key=lambda r: (r.updated_at, r.id))
        return [_copy_record(r) for r in found[: max(0, limit)]]


def _copy(item: MemoryItem) -> MemoryItem:
    return replace(item, tags=list(item.tags), metadata=copy.deepcopy(item.metadata))


def _copy_record(record: Record) -> Record:
    return replace(record, data=copy.deepcopy(record.data))
