"""DuckDB storage: one local file, durable writes, search through the in-process index.

Tables (schema version 1; the numbers are shared with the PostgreSQL backend):

* ``conversations`` - id, content, content_hash, role, project, session_id, tags, author,
  metadata (JSON), ``timestamp``, updated_at, embedding ``FLOAT[dimension]``;
* ``reflections`` - the same with ``created_at``, plus ``kind`` (``reflection`` or
  ``insight``: insights live with reflections);
* ``items`` - a view over both with common column names;
* ``records`` - small JSON documents: (collection, id) key, project, status, times, data;
* ``meta`` - key/value (embedding model and dimension, vector dimension of the columns);
* ``graph_*`` - the knowledge graph (step 3, :mod:`._graphsql`);
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
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters._memory import release_free_memory
from session_buddy.adapters.storage import _snapshot, _sql
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
    check_vector,
    duplicate_item,
    in_order,
    no_item,
    utcnow,
    validate_items,
    validate_stored_item,
)
from session_buddy.adapters.storage._cipher import (
    IN_USE,
    KEY_CHECK,
    META_KEY,
    Cipher,
    KeyProblem,
    check_store,
    key_from_settings,
)
from session_buddy.adapters.storage._graphsql import SqlGraph, graph_schema, graph_walk_index
from session_buddy.adapters.storage._local import sync_index
from session_buddy.adapters.storage._sql import ItemRow
from session_buddy.errors import StorageError
from session_buddy.search import IndexEntry, SearchIndex
from session_buddy.search.tokens import clear_caches

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


def _release_buffers(con: duckdb.DuckDBPyConnection) -> None:
    """Hand back what loading the index left resident: DuckDB keeps every block it read in
    its buffer pool until its memory limit (80% of RAM) is reached, so the limit is lowered
    for a moment (the pool evicts down to it) and restored; then the heap is trimmed. When
    DuckDB cannot evict that far (pinned memory, e.g. a large WAL being replayed) the pool
    stays as it is."""
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    if row is not None:
        try:
            con.execute("SET memory_limit = '32MB'")
        except duckdb.Error as exc:
            log.debug("DuckDB's buffer pool was not shrunk after the index load: %s", exc)
        finally:
            con.execute(f"SET memory_limit = '{row[0]}'")
    release_free_memory()


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


#: DuckDB's SQL (times are read as epoch microseconds: DuckDB's own TIMESTAMPTZ conversion
#: needs pytz and the local zone)
DUCKDB = _sql.Dialect(
    name="duckdb",
    numbered=False,
    text="VARCHAR",
    json="JSON",
    any_of="{column} IN (SELECT unnest({param}::VARCHAR[]))",
    all_tags="list_has_all(tags, {param}::VARCHAR[])",
    time="epoch_us({})",
    read_time=_from_us,
)
_TABLE = {"conversation": "conversations", "reflection": "reflections", "insight": "reflections"}
_TIME = {"conversations": '"timestamp"', "reflections": "created_at"}


# -- schema ---------------------------------------------------------------------------------


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


#: Forward migrations (the steps of :data:`._sql.STEPS`), applied in order.
MIGRATIONS = _sql.migrations(
    {
        1: _schema_1,
        2: lambda dim: [],
        3: lambda dim: graph_schema(DUCKDB),
        4: lambda dim: graph_walk_index(DUCKDB),
    }
)
SCHEMA_VERSION = MIGRATIONS[-1].version
_ITEM_COLUMNS = DUCKDB.item_columns
#: ``get_items``'s columns: whether a row has a vector is the index's to say, as
#: ``embedding IS NOT NULL`` reads the rows' whole embedding blocks (1.5 KB a row): the
#: hits a search fetches are spread over the table, so its buffer pool came to cache most
#: of the embedding column (~140 MB at 100k items) for a flag
_FETCH_COLUMNS = _ITEM_COLUMNS.replace("embedding IS NOT NULL", "NULL")


#: Up to this many ids are looked up as ``id IN (?, ?, ...)`` in a store of at least
#: ``IN_LIST_ROWS`` items; else as ``id = ANY(?)``.
IN_LIST_MAX = 512
IN_LIST_ROWS = 50_000


def _by_ids(ids: list[str], rows: int) -> tuple[str, list[Any]]:
    """``get_items``' query for a store of ``rows`` items. DuckDB runs ``id = ANY(?)`` as a
    hash join against a scan of both tables, and a short ``IN`` list as a filter pushed into
    the scans, which compares every row with each id: 100 ids took 10.7 / 24 / 430 ms the
    first way and 15.4 / 17 / 73 ms the second at 10k / 100k / 1M items (a search fetches
    ~100), so the list is used from 50k items on."""
    if len(ids) > IN_LIST_MAX or rows < IN_LIST_ROWS:
        return f"SELECT {_FETCH_COLUMNS} FROM items WHERE {DUCKDB.is_any('id', '?')}", [ids]
    marks = ", ".join("?" * len(ids))
    return f"SELECT {_FETCH_COLUMNS} FROM items WHERE id IN ({marks})", list(ids)


# -- writing item rows ---------------------------------------------------------------------


def _insert_items(con: Any, rows: list[ItemRow], dim: int) -> None:
    """Insert item rows, each into its kind's table."""
    for table in ("conversations", "reflections"):
        chosen = [r for r in rows if _TABLE[r.kind] == table]
        if chosen:
            _insert_rows(con, table, chosen, dim)


def _insert_rows(con: Any, table: str, rows: list[ItemRow], dim: int) -> None:
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
    with _vectors_view(con, [r.embedding for r in rows], dim) as view:
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
    con: duckdb.DuckDBPyConnection, vectors: list[np.ndarray | None], dim: int
) -> Iterator[str]:
    """A relation ``(i, emb FLOAT[dim])`` of the batch's vectors (row ``i`` of the batch).

    The vectors go in as one flat float32 numpy column, registered with the connection
    and folded into arrays by DuckDB: about 10x faster than binding nested Python lists
    (~70 against ~700 us per 384-d row)."""
    rows = [i for i, v in enumerate(vectors) if v is not None]
    if not rows:
        yield f"(SELECT NULL::BIGINT AS i, NULL::FLOAT[{dim}] AS emb LIMIT 0)"
        return
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


def _key_check(
    con: duckdb.DuckDBPyConnection, key: Cipher | KeyProblem | None, store: str, optional: bool
) -> Cipher | None:
    """The cipher a store is read with, after its key check (:func:`check_store`)."""
    row = con.execute(KEY_CHECK).fetchone()
    used = con.execute(IN_USE).fetchone()
    cipher, check = check_store(
        key, None if row is None else str(row[0]), bool(used and used[0]), store, optional=optional
    )
    if check is not None:
        con.execute("INSERT INTO meta VALUES (?, ?)", [META_KEY, check])
    return cipher


def _after(after: tuple[datetime, str] | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of rows changed after the cursor ``after``."""
    if after is None:
        return "TRUE", []
    moment = after[0] if after[0].tzinfo else after[0].replace(tzinfo=UTC)
    us = (moment - _EPOCH) // timedelta(microseconds=1)
    return "(epoch_us(updated_at) > ? OR (epoch_us(updated_at) = ? AND id > ?))", [
        us,
        us,
        after[1],
    ]


class Storage(_sql.SqlStorage):
    name = "duckdb"
    dialect = DUCKDB

    def __init__(
        self,
        path: Path | str,
        *,
        dimension: int = 384,
        max_content_bytes: int = 4 * 1024 * 1024,
        checkpoint_on_close: bool = True,
        memory_limit: str | None = None,
        key: Cipher | KeyProblem | None = None,
        key_optional: bool = False,
    ) -> None:
        self.path = Path(path)
        # the configured key, and whether a store without a key check is read as plaintext
        self.key, self.key_optional = key, key_optional  # (migrate's source); see _cipher
        self.dimension = dimension
        self.max_content_bytes = max_content_bytes
        self.checkpoint_on_close = checkpoint_on_close
        self.memory_limit = memory_limit
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self.index = SearchIndex(dimension)
        #: seconds the last initialize() took to load the search index, and from what
        self.index_load_seconds: float | None = None
        self.index_source = "rows"
        self.graph = SqlGraph(self, adjacency=Adjacency())

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
            memory_limit=settings.storage.memory_limit,
            key=key_from_settings(settings),
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
                config: dict[str, str | bool | int | float | list[str]] = {}
                if self.memory_limit:
                    config["memory_limit"] = self.memory_limit
                con = duckdb.connect(str(self.path), config=config)
            except (OSError, duckdb.Error) as exc:
                raise StorageError(
                    f"cannot open the DuckDB file {self.path}: {exc}. Check that the folder is "
                    "writable and that no other session-buddy process holds the file "
                    "(set storage.path to use another file)"
                ) from exc
            try:
                self._migrate(con)
                self.cipher = _key_check(con, self.key, str(self.path), self.key_optional)
                stored = con.execute(_sql.VECTOR_DIMENSION).fetchone()
                self.dimension = _sql.stored_dimension(
                    stored[0] if stored else None, self.dimension, str(self.path)
                )
                started = time.perf_counter()
                self.index, self.index_source = _snapshot.open_index(
                    con,
                    self.path,
                    self.dimension,
                    self.cipher is None,
                    lambda index: _load_rows(self, con, index),
                )
                self.index_load_seconds = time.perf_counter() - started
            except BaseException:
                self.index.close()
                con.close()
                raise
            self._con = con
            log.info(
                "Opened %s: %d items, index loaded from its %s in %.2f s",
                self.path,
                len(self.index),
                self.index_source,
                self.index_load_seconds,
            )

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Apply the pending steps of :data:`MIGRATIONS`, each in its own transaction."""
        con.execute(_sql.schema_version_table(DUCKDB))
        row = con.execute(_sql.CURRENT_VERSION).fetchone()
        current = int(row[0]) if row else 0
        for step in _sql.pending(MIGRATIONS, current, store=str(self.path), moved="storage.path"):
            con.execute("BEGIN TRANSACTION")
            try:
                for statement, params in _sql.step_statements(DUCKDB, step, self.dimension):
                    con.execute(statement, params)
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StorageError(
                    f"migration {step.version} ({step.description}) of {self.path} failed: {exc}"
                ) from exc
            log.info("Migrated %s to schema version %d", self.path, step.version)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
            if con is None:
                return
            try:
                _snapshot.save_index(con, self.path, self.index, self.cipher is None)
                self.index.close()
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

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._read, sql, list(params))

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def work(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
            return con.execute(sql, list(params)).fetchall()

        rows: list[tuple[Any, ...]] = await asyncio.to_thread(self._run, work)
        return rows

    async def _transaction(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        def work(con: duckdb.DuckDBPyConnection) -> list[list[Any]]:
            return [con.execute(sql, list(params)).fetchall() for sql, params in statements]

        rows: list[list[Any]] = await asyncio.to_thread(self._run, work)
        return rows

    async def _size_bytes(self) -> int | None:
        """The file and its write-ahead log."""
        try:
            wal = self.path.with_name(self.path.name + ".wal")
            return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        except OSError:
            return None

    # -- items ----------------------------------------------------------------------------

    async def add_items(self, items: Sequence[NewItem]) -> list[AddResult]:
        validate_items(items, self.max_content_bytes, self.index.vectors.check)
        if not items:
            return []
        return await asyncio.to_thread(self._add_items, list(items))

    def _add_items(self, items: list[NewItem]) -> list[AddResult]:
        def work(
            con: duckdb.DuckDBPyConnection,
        ) -> tuple[list[AddResult], list[NewItem], list[str]]:
            hashes = sorted({self._stored_hash(i.content_hash) for i in items})
            existing: dict[DedupKey, str] = {}
            for item_id, kind, project, author, digest in con.execute(
                "SELECT id, kind, project, author, content_hash FROM items "
                f"WHERE {DUCKDB.is_any('content_hash', '?')}",
                [hashes],
            ).fetchall():
                existing.setdefault((kind, project, author, digest), item_id)
            results: list[AddResult] = []
            new: list[NewItem] = []
            new_ids: list[str] = []
            for item in items:
                key = self._stored_key(item)
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
            _insert_items(
                con,
                [
                    self._seal_row(ItemRow.of(i, x, now, x.embedding))
                    for i, x in zip(new_ids, new, strict=True)
                ],
                self.dimension,
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

    async def _apply_update(self, item_id: str, change: ItemChange) -> MemoryItem:
        return await asyncio.to_thread(self._update_item, item_id, change)

    def _update_item(self, item_id: str, change: ItemChange) -> MemoryItem:
        def work(con: duckdb.DuckDBPyConnection) -> MemoryItem:
            row = con.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", [item_id]
            ).fetchone()
            if row is None:
                raise no_item(item_id)
            item = self._item(row)
            sealed = self._seal_change(item_id, change)
            if sealed.content is not None:
                clash = con.execute(
                    "SELECT id FROM items WHERE content_hash = ? AND kind = ? "
                    "AND project IS NOT DISTINCT FROM ? AND author IS NOT DISTINCT FROM ? "
                    "AND id <> ?",
                    [sealed.content_hash, item.kind, item.project, item.author, item_id],
                ).fetchone()
                if clash is not None:
                    raise duplicate_item(item.kind, clash[0])
            params = DUCKDB.params()
            vector = None if change.embedding is None else change.embedding.tolist()
            sets = _sql.update_sets(sealed, params, vector)
            con.execute(
                f"UPDATE {_TABLE[item.kind]} SET {', '.join(sets)} WHERE id = ?",
                [*params.values, item_id],
            )
            updated = con.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", [item_id]
            ).fetchone()
            assert updated is not None
            return self._item(updated)

        with self._lock:
            updated = self._run(work)
            sync_index(self.index, updated, change)
            return updated

    async def delete_items(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        unique = list(dict.fromkeys(ids))

        def work(con: duckdb.DuckDBPyConnection) -> tuple[int, list[tuple[Any, ...]]]:
            gone = 0
            for table in ("conversations", "reflections"):
                rows = con.execute(
                    f"DELETE FROM {table} WHERE {DUCKDB.is_any('id', '?')} RETURNING id",
                    [unique],
                ).fetchall()
                gone += len(rows)
            mentions = con.execute(
                f"DELETE FROM graph_mentions WHERE {DUCKDB.is_any('item_id', '?')} "
                "RETURNING item_id, entity_id, start_pos",
                [unique],
            ).fetchall()
            return gone, mentions

        def run() -> int:
            with self._lock:
                gone, mentions = self._run(work)
                self.index.remove(unique)
                self.graph.unmentioned(mentions)
                return int(gone)

        return await asyncio.to_thread(run)

    async def _counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """The stats' counts from the index (which holds every item's kind, project and
        whether it has a vector): ``GROUP BY`` over the ``items`` view scanned the kind,
        project and embedding columns of every row, ~21 MB of blocks kept in DuckDB's
        buffer pool at 1M items, on each ``health``."""
        self.con  # noqa: B018 - raises when not open
        return await asyncio.to_thread(self.index.counts)

    async def get_items(self, ids: Sequence[str]) -> list[MemoryItem]:
        if not ids:
            return []
        wanted = list(dict.fromkeys(ids))
        rows = await self._fetch(*_by_ids(wanted, len(self.index)))
        items = [self._item(r) for r in rows]
        for item in items:
            item.has_embedding = self.index.has_vector(item.id)
        return in_order(ids, items)

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

    async def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        self.con  # noqa: B018 - raises when not open
        return await asyncio.to_thread(self.index.vectors_of, ids)

    # -- bulk copy (session-buddy migrate) ------------------------------------------------

    async def changed_items(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        where, params = _after(after)
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {_ITEM_COLUMNS}, embedding FROM items WHERE {where} "
            "ORDER BY updated_at, id LIMIT ?",
            [*params, max(0, limit)],
        )
        return [
            (self._item(r), None if r[13] is None else np.asarray(r[13], dtype=np.float32))
            for r in rows
        ]

    async def changed_records(
        self, collection: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Record]:
        where, params = _after(after)
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {DUCKDB.record_columns} FROM records WHERE collection = ? AND {where} "
            "ORDER BY updated_at, id LIMIT ?",
            [collection, *params, max(0, limit)],
        )
        return [self._record(r) for r in rows]

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
            (self._item(r), None if r[13] is None else np.asarray(r[13], dtype=np.float32))
            for r in rows
        ]

    async def import_items(self, rows: Sequence[tuple[MemoryItem, np.ndarray | None]]) -> int:
        for x, vector in rows:
            validate_stored_item(x, self.max_content_bytes)
            if vector is not None:
                check_vector(vector, self.dimension)
        if not rows:
            return 0
        return int(await asyncio.to_thread(self._import_items, list(rows)))

    def _import_items(self, rows: list[tuple[MemoryItem, np.ndarray | None]]) -> int:
        def work(con: duckdb.DuckDBPyConnection) -> list[tuple[MemoryItem, np.ndarray | None]]:
            present = {
                r[0]
                for r in con.execute(
                    f"SELECT id FROM items WHERE {DUCKDB.is_any('id', '?')}",
                    [[x.id for x, _ in rows]],
                ).fetchall()
            }
            fresh = list({x.id: (x, v) for x, v in rows if x.id not in present}.values())
            _insert_items(
                con,
                [self._seal_row(ItemRow.of(x.id, x, x.updated_at, v)) for x, v in fresh],
                self.dimension,
            )
            return fresh

        with self._lock:
            fresh = self._run(work)
            self.index.add([IndexEntry.of(x, v) for x, v in fresh])
            return len(fresh)

    async def export_records(self, after: tuple[str, str] | None, limit: int) -> list[Record]:
        rows = await asyncio.to_thread(
            self._read,
            f"SELECT {DUCKDB.record_columns} FROM records WHERE ?::VARCHAR IS NULL OR "
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


def _load_rows(storage: Storage, con: duckdb.DuckDBPyConnection, index: SearchIndex) -> None:
    """Build the index from every row of the store."""
    result = con.execute("SELECT id, embedding FROM items WHERE embedding IS NOT NULL").fetchnumpy()
    position = {str(item_id): i for i, item_id in enumerate(result["id"])}
    matrix = (
        np.stack(list(result["embedding"])).astype(np.float32, copy=False)
        if position
        else np.zeros((0, storage.dimension), dtype=np.float32)
    )
    del result
    cursor = con.execute(
        "SELECT id, kind, content, project, session_id, role, tags, epoch_us(created_at), "
        "author "
        "FROM items ORDER BY created_at, id"
    )
    # indexed 10,000 rows at a time: the tokens of one chunk, not of the whole store,
    # are alive at once
    while rows := cursor.fetchmany(10_000):
        index.add(
            [
                IndexEntry(
                    id=r[0],
                    kind=r[1],
                    content=storage._content(r[0], r[2]),
                    project=r[3],
                    session_id=r[4],
                    role=r[5],
                    tags=tuple(r[6] or ()),
                    created_at=_from_us(r[7]),
                    vector=None if (pos := position.get(r[0])) is None else matrix[pos],
                    author=r[8],
                )
                for r in rows
            ]
        )
    del matrix, position
    clear_caches()
    _release_buffers(con)
