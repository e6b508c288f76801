"""DuckDB storage: one local file, durable writes, search through the in-process index.

Tables (schema version 1; the numbers are shared with the PostgreSQL backend):

* ``conversations`` - id, content, content_hash, role, project, session_id, tags, author,
  metadata (JSON), ``timestamp``, updated_at, embedding ``FLOAT[dimension]``;
* ``reflections`` - the same with ``created_at``, plus ``kind`` (``reflection`` or
  ``insight``: insights live with reflections);
* ``items`` - a view over both with common column names;
* ``records`` - small JSON documents: (collection, id) key, project, status, times, data;
* ``meta`` - key/value (embedding model and dimension, vector dimension of the columns);
* ``schema_version`` - one row per applied migration.

One connection, guarded by a lock; every call runs in ``asyncio.to_thread``. Each write is
one transaction committed before the call returns (DuckDB writes its WAL on commit), so a
killed process loses nothing that was acknowledged. Keyword and vector search run on the
shared :class:`~session_buddy.search.SearchIndex`, rebuilt from the file at
:meth:`Storage.initialize` and updated after every commit (DuckDB's FTS index does not
update on insert and its HNSW recall was poor; brute-force numpy is exact and ~10 ms at 100k).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb
import numpy as np

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters.storage._base import (
    Access,
    AddResult,
    DedupKey,
    Hit,
    ItemFilter,
    MemoryItem,
    NewItem,
    Record,
    StorageBase,
    StorageStats,
    check_text,
    content_hash,
    dedup_key,
    item_values,
    metadata_json,
    utcnow,
    validate_item,
    validate_stored_item,
)
from session_buddy.errors import NotFound, StorageError, ValidationError
from session_buddy.search import IndexEntry, SearchIndex

if TYPE_CHECKING:
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="5d7c1e0a-8b24-4f6a-9c3e-1a2b3c4d5e6f",
    name="duckdb",
    category="storage",
    provider="duckdb",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Local DuckDB file with durable writes, migrations, and in-process BM25 + vector search",
    capabilities=[
        AdapterCapability.ASYNC_OPERATIONS,
        AdapterCapability.TRANSACTIONS,
        AdapterCapability.SCHEMA_VALIDATION,
    ],
    required_packages=["duckdb", "numpy", "PyStemmer"],
)

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TABLE = {"conversation": "conversations", "reflection": "reflections", "insight": "reflections"}
_TIME = {"conversations": '"timestamp"', "reflections": "created_at"}


# -- schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: Callable[[int], list[str]]  # vector dimension -> SQL statements


def _schema_1(dim: int) -> list[str]:
    common = (
        "id VARCHAR PRIMARY KEY, content VARCHAR NOT NULL, content_hash VARCHAR NOT NULL, "
        "project VARCHAR, session_id VARCHAR, role VARCHAR, tags VARCHAR[] NOT NULL, "
        "author VARCHAR, metadata JSON NOT NULL"
    )
    times = f"updated_at TIMESTAMPTZ NOT NULL, embedding FLOAT[{dim}]"
    return [
        "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        f'CREATE TABLE conversations ({common}, "timestamp" TIMESTAMPTZ NOT NULL, {times})',
        f"CREATE TABLE reflections (kind VARCHAR NOT NULL DEFAULT 'reflection', {common}, "
        f"created_at TIMESTAMPTZ NOT NULL, {times})",
        "CREATE INDEX conversations_project ON conversations (project)",
        'CREATE INDEX conversations_time ON conversations ("timestamp")',
        "CREATE INDEX conversations_hash ON conversations (content_hash)",
        "CREATE INDEX reflections_project ON reflections (project)",
        "CREATE INDEX reflections_time ON reflections (created_at)",
        "CREATE INDEX reflections_hash ON reflections (content_hash)",
        "CREATE TABLE records (collection VARCHAR NOT NULL, id VARCHAR NOT NULL, "
        "project VARCHAR, status VARCHAR, created_at TIMESTAMPTZ NOT NULL, "
        "updated_at TIMESTAMPTZ NOT NULL, data JSON NOT NULL, PRIMARY KEY (collection, id))",
        "CREATE INDEX records_project ON records (collection, project)",
        "CREATE INDEX records_time ON records (collection, created_at)",
        "CREATE VIEW items AS "
        "SELECT id, 'conversation' AS kind, content, content_hash, project, session_id, role, "
        'tags, author, metadata, "timestamp" AS created_at, updated_at, embedding '
        "FROM conversations UNION ALL "
        "SELECT id, kind, content, content_hash, project, session_id, role, tags, author, "
        "metadata, created_at, updated_at, embedding FROM reflections",
        f"INSERT INTO meta VALUES ('vector_dimension', '{int(dim)}')",
    ]


#: Forward migrations, applied in order; never edit a released step, append a new one.
MIGRATIONS: list[Migration] = [
    Migration(1, "conversations, reflections, records, meta", _schema_1),
    # PostgreSQL's version 2 adds its keyword postings and a per-author dedup index; DuckDB
    # does both in process
    Migration(
        2,
        "keyword postings and dedup per author (DuckDB: both kept in process)",
        lambda dim: [],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1].version

_ITEM_COLUMNS = (
    "id, kind, content, project, session_id, role, tags, author, metadata, "
    "epoch_us(created_at), epoch_us(updated_at), content_hash, embedding IS NOT NULL"
)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _item(row: tuple[Any, ...]) -> MemoryItem:
    return MemoryItem(
        id=row[0],
        kind=row[1],
        content=row[2],
        project=row[3],
        session_id=row[4],
        role=row[5],
        tags=list(row[6] or []),
        author=row[7],
        metadata=json.loads(row[8]) if row[8] else {},
        created_at=_from_us(row[9]),
        updated_at=_from_us(row[10]),
        content_hash=row[11],
        has_embedding=bool(row[12]),
    )


def _where(flt: ItemFilter | None) -> tuple[str, list[Any]]:
    """A parameterised WHERE clause for the ``items`` view."""
    if flt is None:
        return "", []
    parts: list[str] = []
    params: list[Any] = []
    if flt.ids is not None:
        parts.append("id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(sorted(flt.ids))
    if flt.projects is not None:
        parts.append("project IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(flt.projects))
    if flt.kinds is not None:
        parts.append("kind IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(flt.kinds))
    if flt.role is not None:
        parts.append("role = ?")
        params.append(flt.role)
    if flt.session_id is not None:
        parts.append("session_id = ?")
        params.append(flt.session_id)
    if flt.after is not None:
        parts.append("created_at >= ?")
        params.append(_aware(flt.after))
    if flt.before is not None:
        parts.append("created_at < ?")
        params.append(_aware(flt.before))
    if flt.tags:
        parts.append("list_has_all(tags, ?::VARCHAR[])")
        params.append(list(flt.tags))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _Row(NamedTuple):
    """One item row as the item tables store it."""

    id: str
    kind: str
    content: str
    content_hash: str
    project: str | None
    session_id: str | None
    role: str | None
    tags: list[str]
    author: str | None
    metadata: str
    created_at: Any
    updated_at: Any
    embedding: Any

    @classmethod
    def of(cls, item_id: str, x: Any, created_at: Any, updated_at: Any, vector: Any) -> _Row:
        """The row of an item (new or stored: anything with the item fields)."""
        return cls(item_id, *item_values(x), created_at, updated_at, vector)


class Storage(StorageBase):
    name = "duckdb"

    def __init__(
        self,
        path: Path | str,
        *,
        dimension: int = 384,
        max_content_bytes: int = 4 * 1024 * 1024,
        checkpoint_on_close: bool = True,
    ) -> None:
        self.path = Path(path)
        self.dimension = dimension
        self.max_content_bytes = max_content_bytes
        self.checkpoint_on_close = checkpoint_on_close
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self.index = SearchIndex(dimension)
        #: seconds the last initialize() took to load the search index
        self.index_load_seconds: float | None = None

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths,
        resolve: Callable[[type], Any] | None = None,
    ) -> Storage:
        path = settings.storage.path or (paths.data / "memory.duckdb")
        return cls(
            Path(path).expanduser(),
            dimension=settings.embeddings.dimension,
            max_content_bytes=settings.storage.max_content_bytes,
            checkpoint_on_close=settings.storage.checkpoint_on_close,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        await asyncio.to_thread(self._initialize)

    def _initialize(self) -> None:
        with self._lock:
            if self._con is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.is_file() and self.path.stat().st_size == 0:
                    # an empty file (e.g. made by `touch`) holds nothing; DuckDB refuses it
                    log.info("%s is empty; creating a new database there", self.path)
                    self.path.unlink()
                con = duckdb.connect(str(self.path))
            except (OSError, duckdb.Error) as exc:
                raise StorageError(
                    f"cannot open the DuckDB file {self.path}: {exc}. Check that the folder is "
                    "writable and that no other session-buddy process holds the file "
                    "(set storage.path to use another file)"
                ) from exc
            try:
                self._migrate(con)
                stored_dim = con.execute(
                    "SELECT value FROM meta WHERE key = 'vector_dimension'"
                ).fetchone()
                if stored_dim is not None and int(stored_dim[0]) != self.dimension:
                    log.warning(
                        "%s holds %s-dimensional vectors but embeddings.dimension is %d; "
                        "semantic search stays off until they agree",
                        self.path,
                        stored_dim[0],
                        self.dimension,
                    )
                    self.dimension = int(stored_dim[0])
                self.index = SearchIndex(self.dimension)
                started = time.perf_counter()
                self._load_index(con)
                self.index_load_seconds = time.perf_counter() - started
            except BaseException:
                con.close()
                raise
            self._con = con
            log.info(
                "Opened %s: %d items, index loaded in %.2f s",
                self.path,
                len(self.index),
                self.index_load_seconds,
            )

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        row = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} has schema version {current} but this session-buddy knows only up "
                f"to {SCHEMA_VERSION}; upgrade session-buddy (or point storage.path elsewhere)"
            )
        for step in MIGRATIONS:
            if step.version <= current:
                continue
            con.execute("BEGIN TRANSACTION")
            try:
                for statement in step.statements(self.dimension):
                    con.execute(statement)
                con.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    [step.version, step.description, utcnow()],
                )
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StorageError(
                    f"migration {step.version} ({step.description}) of {self.path} failed: {exc}"
                ) from exc
            log.info("Migrated %s to schema version %d", self.path, step.version)

    def _load_index(self, con: duckdb.DuckDBPyConnection) -> None:
        result = con.execute(
            "SELECT id, embedding FROM items WHERE embedding IS NOT NULL"
        ).fetchnumpy()
        position = {str(item_id): i for i, item_id in enumerate(result["id"])}
        matrix = (
            np.stack(list(result["embedding"])).astype(np.float32, copy=False)
            if position
            else np.zeros((0, self.dimension), dtype=np.float32)
        )
        del result
        entries: list[IndexEntry] = []
        cursor = con.execute(
            "SELECT id, kind, content, project, session_id, role, tags, epoch_us(created_at), "
            "author "
            "FROM items ORDER BY created_at, id"
        )
        while rows := cursor.fetchmany(10_000):
            for r in rows:
                pos = position.get(r[0])
                entries.append(
                    IndexEntry(
                        id=r[0],
                        kind=r[1],
                        content=r[2],
                        project=r[3],
                        session_id=r[4],
                        role=r[5],
                        tags=tuple(r[6] or ()),
                        created_at=_from_us(r[7]),
                        vector=None if pos is None else matrix[pos],
                        author=r[8],
                    )
                )
        self.index.add(entries)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
            if con is None:
                return
            try:
                if self.checkpoint_on_close:
                    con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("CHECKPOINT of %s failed on close: %s", self.path, exc)
            finally:
                con.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StorageError(
                "the DuckDB storage is not open: call initialize() first (or it was closed)"
            )
        return self._con

    def _run(self, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """Run ``fn(con)`` under the lock in one transaction, committed before returning."""
        with self._lock:
            con = self.con
            con.execute("BEGIN TRANSACTION")
            try:
                result = fn(con)
                con.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise StorageError(f"DuckDB error on {self.path}: {exc}") from exc
                raise
            return result

    def _read(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                rows: list[tuple[Any, ...]] = self.con.execute(sql, params or []).fetchall()
            except duckdb.Error as exc:
                raise StorageError(f"DuckDB error on {self.path}: {exc}") from exc
            return rows

    # -- items ----------------------------------------------------------------------------

    async def add_items(self, items: Sequence[NewItem]) -> list[AddResult]:
        for item in items:
            validate_item(item, self.max_content_bytes)
            if item.embedding is not None:
                self.index.vectors.check(item.embedding)
        if not items:
            return []
        return await asyncio.to_thread(self._add_items, list(items))

    def _add_items(self, items: list[NewItem]) -> list[AddResult]:
        def work(
            con: duckdb.DuckDBPyConnection,
        ) -> tuple[list[AddResult], list[NewItem], list[str]]:
            hashes = sorted({i.content_hash for i in items})
            existing: dict[DedupKey, str] = {}
            for item_id, kind, project, author, digest in con.execute(
                "SELECT id, kind, project, author, content_hash FROM items "
                "WHERE content_hash IN (SELECT unnest(?::VARCHAR[]))",
                [hashes],
            ).fetchall():
                existing.setdefault((kind, project, author, digest), item_id)
            results: list[AddResult] = []
            new: list[NewItem] = []
            new_ids: list[str] = []
            for item in items:
                key = dedup_key(item)
                found = existing.get(key)
                if found is not None:
                    results.append(AddResult(id=found, created=False))
                    continue
                item_id = str(uuid.uuid4())
                existing[key] = item_id
                results.append(AddResult(id=item_id, created=True))
                new.append(item)
                new_ids.append(item_id)
            now = utcnow()
            self._insert_items(
                con,
                [
                    _Row.of(i, x, x.created_at, now, x.embedding)
                    for i, x in zip(new_ids, new, strict=True)
                ],
            )
            return results, new, new_ids

        with self._lock:
            results, new, new_ids = self._run(work)
            self.index.add(
                [
                    IndexEntry.of(x, x.embedding, item_id=item_id)
                    for item_id, x in zip(new_ids, new, strict=True)
                ]
            )
        return results

    def _insert_items(self, con: Any, rows: list[_Row]) -> None:
        """Insert item rows, each into its kind's table."""
        for table in ("conversations", "reflections"):
            chosen = [r for r in rows if _TABLE[r.kind] == table]
            if chosen:
                self._insert_rows(con, table, chosen)

    def _insert_rows(self, con: Any, table: str, rows: list[_Row]) -> None:
        """Insert rows into one item table in a single statement (columns as unnested
        arrays, vectors joined from a registered numpy view)."""
        kind_col = "kind, " if table == "reflections" else ""
        kind_val = "unnest(?::VARCHAR[]) AS c0, " if table == "reflections" else ""
        params: list[Any] = [[r.kind for r in rows]] if kind_col else []
        params += [
            len(rows),
            [r.id for r in rows],
            [r.content for r in rows],
            [r.content_hash for r in rows],
            [r.project for r in rows],
            [r.session_id for r in rows],
            [r.role for r in rows],
            [r.tags for r in rows],
            [r.author for r in rows],
            [r.metadata for r in rows],
            [r.created_at for r in rows],
            [r.updated_at for r in rows],
        ]
        with self._vectors_view(con, [r.embedding for r in rows]) as view:
            con.execute(
                f"INSERT INTO {table} ({kind_col}id, content, content_hash, project, "
                f"session_id, role, tags, author, metadata, {_TIME[table]}, updated_at, "
                f"embedding) SELECT r.* EXCLUDE (i), v.emb FROM (SELECT {kind_val}"
                "unnest(range(?)) AS i, unnest(?::VARCHAR[]) AS c1, "
                "unnest(?::VARCHAR[]) AS c2, unnest(?::VARCHAR[]) AS c3, "
                "unnest(?::VARCHAR[]) AS c4, unnest(?::VARCHAR[]) AS c5, "
                "unnest(?::VARCHAR[]) AS c6, unnest(?::VARCHAR[][]) AS c7, "
                "unnest(?::VARCHAR[]) AS c8, unnest(?::VARCHAR[])::JSON AS c9, "
                "unnest(?::TIMESTAMPTZ[]) AS c10, unnest(?::TIMESTAMPTZ[]) AS c11"
                f") AS r LEFT JOIN {view} AS v USING (i) "
                "ORDER BY r.i",
                params,
            )

    @contextlib.contextmanager
    def _vectors_view(
        self, con: duckdb.DuckDBPyConnection, vectors: list[np.ndarray | None]
    ) -> Iterator[str]:
        """A relation ``(i, emb FLOAT[dim])`` of the batch's vectors (row ``i`` of the batch).

        The vectors go in as one flat float32 numpy column, registered with the connection
        and folded into arrays by DuckDB: about 10x faster than binding nested Python lists
        (~70 against ~700 us per 384-d row)."""
        rows = [i for i, v in enumerate(vectors) if v is not None]
        if not rows:
            yield f"(SELECT NULL::BIGINT AS i, NULL::FLOAT[{self.dimension}] AS emb LIMIT 0)"
            return
        dim = self.dimension
        matrix = np.stack([np.asarray(vectors[i], dtype=np.float32).reshape(-1) for i in rows])
        frame = {
            "i": np.repeat(np.asarray(rows, dtype=np.int64), dim),
            "j": np.tile(np.arange(dim, dtype=np.int32), len(rows)),
            "x": np.ascontiguousarray(matrix.reshape(-1)),
        }
        name = "_sb_batch_vectors"
        con.register(name, frame)
        try:
            yield f"(SELECT i, list(x ORDER BY j)::FLOAT[{dim}] AS emb FROM {name} GROUP BY i)"
        finally:
            con.unregister(name)

    async def get_items(self, ids: Sequence[str]) -> list[MemoryItem]:
        if not ids:
            return []
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE id IN (SELECT unnest(?::VARCHAR[]))",
            [list(dict.fromkeys(ids))],
        )
        found = {r[0]: _item(r) for r in rows}
        return [found[i] for i in ids if i in found]

    async def update_item(
        self,
        item_id: str,
        *,
        content: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        embedding: np.ndarray | None = None,
    ) -> MemoryItem:
        if content is not None:
            check_text(content, self.max_content_bytes)
            if not content.strip():
                raise ValidationError("content is empty; there is nothing to store")
        if tags is not None and not all(isinstance(t, str) for t in tags):
            raise ValidationError("tags must be a list of strings")
        md_text = metadata_json(metadata) if metadata is not None else None
        if embedding is not None:
            self.index.vectors.check(embedding)
        return await asyncio.to_thread(
            self._update_item, item_id, content, tags, md_text, embedding
        )

    def _update_item(
        self,
        item_id: str,
        content: str | None,
        tags: list[str] | None,
        md_text: str | None,
        embedding: np.ndarray | None,
    ) -> MemoryItem:
        def work(con: duckdb.DuckDBPyConnection) -> MemoryItem:
            row = con.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", [item_id]
            ).fetchone()
            if row is None:
                raise NotFound(f"no memory item with id {item_id!r}")
            item = _item(row)
            table = _TABLE[item.kind]
            sets: list[str] = ["updated_at = ?"]
            params: list[Any] = [utcnow()]
            if content is not None:
                digest = content_hash(content)
                clash = con.execute(
                    "SELECT id FROM items WHERE content_hash = ? AND kind = ? "
                    "AND project IS NOT DISTINCT FROM ? AND author IS NOT DISTINCT FROM ? "
                    "AND id <> ?",
                    [digest, item.kind, item.project, item.author, item_id],
                ).fetchone()
                if clash is not None:
                    raise ValidationError(
                        f"an identical {item.kind} already exists (id {clash[0]}); delete one of them"
                    )
                sets += ["content = ?", "content_hash = ?", "embedding = ?"]
                params += [
                    content,
                    digest,
                    None if embedding is None else np.asarray(embedding, np.float32).tolist(),
                ]
            elif embedding is not None:
                sets.append("embedding = ?")
                params.append(np.asarray(embedding, np.float32).tolist())
            if tags is not None:
                sets.append("tags = ?::VARCHAR[]")
                params.append(list(tags))
            if md_text is not None:
                sets.append("metadata = ?::JSON")
                params.append(md_text)
            con.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE id = ?", [*params, item_id])
            updated = con.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", [item_id]
            ).fetchone()
            assert updated is not None
            return _item(updated)

        with self._lock:
            updated = self._run(work)
            if content is not None:
                self.index.add([IndexEntry.of(updated, embedding)])
            else:
                if tags is not None:
                    self.index.set_tags(item_id, updated.tags)
                if embedding is not None:
                    self.index.set_vector(item_id, embedding)
            return updated

    async def delete_items(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        unique = list(dict.fromkeys(ids))

        def work(con: duckdb.DuckDBPyConnection) -> int:
            gone = 0
            for table in ("conversations", "reflections"):
                rows = con.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT unnest(?::VARCHAR[])) RETURNING id",
                    [unique],
                ).fetchall()
                gone += len(rows)
            return gone

        def run() -> int:
            with self._lock:
                gone: int = self._run(work)
                self.index.remove(unique)
                return gone

        return await asyncio.to_thread(run)

    async def list_items(
        self, flt: ItemFilter, *, limit: int = 50, offset: int = 0, newest_first: bool = True
    ) -> list[MemoryItem]:
        where, params = _where(flt)
        order = "DESC" if newest_first else "ASC"
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {_ITEM_COLUMNS} FROM items{where} ORDER BY created_at {order}, id {order} "
            "LIMIT ? OFFSET ?",
            [*params, max(0, limit), max(0, offset)],
        )
        return [_item(r) for r in rows]

    async def count_items(self, flt: ItemFilter | None = None) -> int:
        where, params = _where(flt)
        rows = await asyncio.to_thread(self._read, f"SELECT count(*) FROM items{where}", params)
        return int(rows[0][0])

    async def keyword_search(
        self, query: str, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        self.con  # noqa: B018 - raises when not open
        return await asyncio.to_thread(self.index.keyword_search, query, flt, limit, access)

    async def vector_search(
        self, vector: np.ndarray, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        self.con  # noqa: B018 - raises when not open
        return await asyncio.to_thread(self.index.vector_search, vector, flt, limit, access)

    async def stats(self) -> StorageStats:
        def collect() -> StorageStats:
            by_kind = dict(self._read("SELECT kind, count(*) FROM items GROUP BY kind"))
            by_project = {
                p or "": n
                for p, n in self._read("SELECT project, count(*) FROM items GROUP BY project")
            }
            embedded = self._read("SELECT count(*) FROM items WHERE embedding IS NOT NULL")[0][0]
            meta = dict(self._read("SELECT key, value FROM meta"))
            try:
                size = self.path.stat().st_size
                wal = self.path.with_name(self.path.name + ".wal")
                size += wal.stat().st_size if wal.exists() else 0
            except OSError:
                size = None
            dim = meta.get("embedding_dimension")
            return StorageStats(
                items=sum(by_kind.values()),
                by_kind=by_kind,
                by_project=by_project,
                embedded=int(embedded),
                embedding_model=meta.get("embedding_model"),
                embedding_dimension=int(dim) if dim else None,
                size_bytes=size,
            )

        return await asyncio.to_thread(collect)

    async def get_meta(self, key: str) -> str | None:
        rows = await asyncio.to_thread(self._read, "SELECT value FROM meta WHERE key = ?", [key])
        return rows[0][0] if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        def work(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

        await asyncio.to_thread(self._run, work)

    # -- records --------------------------------------------------------------------------

    async def put_record(self, record: Record) -> None:
        data = metadata_json(record.data)

        def work(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?::JSON) "
                "ON CONFLICT (collection, id) DO UPDATE SET project = excluded.project, "
                "status = excluded.status, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, data = excluded.data",
                [
                    record.collection,
                    record.id,
                    record.project,
                    record.status,
                    _aware(record.created_at),
                    _aware(record.updated_at),
                    data,
                ],
            )

        await asyncio.to_thread(self._run, work)

    _RECORD_COLUMNS = (
        "collection, id, data, project, status, epoch_us(created_at), epoch_us(updated_at)"
    )

    @staticmethod
    def _record(row: tuple[Any, ...]) -> Record:
        return Record(
            collection=row[0],
            id=row[1],
            data=json.loads(row[2]),
            project=row[3],
            status=row[4],
            created_at=_from_us(row[5]),
            updated_at=_from_us(row[6]),
        )

    async def get_record(self, collection: str, record_id: str) -> Record | None:
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE collection = ? AND id = ?",
            [collection, record_id],
        )
        return self._record(rows[0]) if rows else None

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
        sql = f"SELECT {self._RECORD_COLUMNS} FROM records WHERE collection = ?"
        params: list[Any] = [collection]
        if project is not None:
            sql += " AND project = ?"
            params.append(project)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        order = "DESC" if newest_first else "ASC"
        sql += f" ORDER BY created_at {order}, id {order} LIMIT ? OFFSET ?"
        params += [max(0, limit), max(0, offset)]
        rows = await asyncio.to_thread(self._read, sql, params)
        return [self._record(r) for r in rows]

    async def delete_record(self, collection: str, record_id: str) -> bool:
        def work(con: duckdb.DuckDBPyConnection) -> bool:
            rows = con.execute(
                "DELETE FROM records WHERE collection = ? AND id = ? RETURNING id",
                [collection, record_id],
            ).fetchall()
            return bool(rows)

        result: bool = await asyncio.to_thread(self._run, work)
        return result

    # -- bulk copy (session-buddy migrate) ------------------------------------------------

    async def export_items(
        self, after_id: str | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {_ITEM_COLUMNS}, embedding FROM items WHERE ?::VARCHAR IS NULL OR id > ? "
            "ORDER BY id LIMIT ?",
            [after_id, after_id, max(0, limit)],
        )
        return [
            (_item(r), None if r[13] is None else np.asarray(r[13], dtype=np.float32)) for r in rows
        ]

    async def import_items(self, rows: Sequence[tuple[MemoryItem, np.ndarray | None]]) -> int:
        for x, vector in rows:
            validate_stored_item(x, self.max_content_bytes)
            if vector is not None:
                self.index.vectors.check(vector)
        if not rows:
            return 0
        return int(await asyncio.to_thread(self._import_items, list(rows)))

    def _import_items(self, rows: list[tuple[MemoryItem, np.ndarray | None]]) -> int:
        def work(con: duckdb.DuckDBPyConnection) -> list[tuple[MemoryItem, np.ndarray | None]]:
            present = {
                r[0]
                for r in con.execute(
                    "SELECT id FROM items WHERE id IN (SELECT unnest(?::VARCHAR[]))",
                    [[x.id for x, _ in rows]],
                ).fetchall()
            }
            fresh = list({x.id: (x, v) for x, v in rows if x.id not in present}.values())
            self._insert_items(
                con,
                [_Row.of(x.id, x, _aware(x.created_at), _aware(x.updated_at), v) for x, v in fresh],
            )
            return fresh

        with self._lock:
            fresh = self._run(work)
            self.index.add([IndexEntry.of(x, v) for x, v in fresh])
            return len(fresh)

    async def export_records(self, after: tuple[str, str] | None, limit: int) -> list[Record]:
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE ?::VARCHAR IS NULL OR "
            "collection > ? OR (collection = ? AND id > ?) ORDER BY collection, id LIMIT ?",
            [
                after[0] if after else None,
                after[0] if after else None,
                after[0] if after else None,
                after[1] if after else None,
                max(0, limit),
            ],
        )
        return [self._record(r) for r in rows]

    async def all_meta(self) -> dict[str, str]:
        rows = await asyncio.to_thread(self._read, "SELECT key, value FROM meta")
        return {str(k): str(v) for k, v in rows}
