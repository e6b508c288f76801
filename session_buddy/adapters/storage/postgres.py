"""PostgreSQL storage: one shared server for a team or several machines.

Same protocol and behaviour as :mod:`.duckdb`; the server answers both rankers itself, so
several session-buddy services pointed at one database see each other's writes at once
(nothing about items is cached in the process).

Schema (version 1, the numbers are shared with the DuckDB backend):

* ``items`` - every kind in one table: id, kind, content, content_hash, project,
  session_id, role, tags ``text[]``, author, metadata ``jsonb``, created_at, updated_at,
  embedding ``vector(dimension)`` (pgvector), ``terms tsvector`` + ``doc_len`` (keyword
  search), ``seq`` (insertion order, ties). ``conversations`` and ``reflections`` are views
  over it, with the DuckDB column names.
* ``records`` (collection, id) -> project, status, times, ``data jsonb``;
* ``meta`` key/value; ``schema_version`` one row per applied migration;
* ``graph_*`` - the knowledge graph (step 3, :mod:`._graphsql`);
* ``item_stats`` - one row: item count and total length in terms (BM25's N and average
  document length), updated as the last statement of every write transaction.

**Dedup** is enforced by the server: a unique index on ``(kind, project, author, content_hash)``
with ``NULLS NOT DISTINCT`` (PostgreSQL 15+), and inserts use ``ON CONFLICT DO NOTHING``:
two services inserting the same content at once get the same id.

**Keyword search** ranks with BM25 (k1 1.2, b 0.75, Lucene's idf; document frequencies
over the whole store, then the filter, as the in-process index does) computed in SQL over
the ``tsvector`` candidates (GIN index; a sequential scan when most rows match). The lexemes are the terms of the
in-process tokenizer (:mod:`session_buddy.search.tokens`), computed on write and
stored as a tsvector with one position per occurrence (term frequency): PostgreSQL's own
parser splits ``ERR_CONN_4021`` at the underscores, keeps ``HttpServerError`` whole and
does not stem inside identifiers, so using it would make the same query find different
things on DuckDB and PostgreSQL. Scores are comparable with the in-process BM25.

**Vector search** orders by cosine distance ``<=>`` and returns ``1 - distance`` (cosine
similarity). Exact by default (``storage.vector_index: none``); ``ivfflat`` builds an
approximate index (with pgvector's iterative scan so filters still fill the limit), built at a
start that finds at least 10 vectors per list (ivfflat learns its lists from the data present,
so it is never built on an empty store). HNSW is not offered: building it crashed the server
on some CPUs.

Driver: asyncpg (binary protocol, its own connection pool, prepared statements cached per
connection). Every write is one transaction committed before the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters.storage import _sql
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
    check_record_key,
    check_vector,
    dedup_key,
    duplicate_item,
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
from session_buddy.adapters.storage._graph import GraphStore
from session_buddy.adapters.storage._graphsql import SqlGraph, graph_schema, graph_walk_index
from session_buddy.adapters.storage._sql import ItemRow
from session_buddy.errors import StorageError
from session_buddy.search.tokens import query_terms, tokenize

if TYPE_CHECKING:
    import asyncpg

    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="9a3e5c21-7f4b-4d8e-b6a1-2c9d0e4f7b35",
    name="postgres",
    category="storage",
    provider="postgresql",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Shared PostgreSQL server: pgvector cosine search, tsvector BM25, server-side dedup",
    capabilities=[
        AdapterCapability.ASYNC_OPERATIONS,
        AdapterCapability.TRANSACTIONS,
        AdapterCapability.SCHEMA_VALIDATION,
        AdapterCapability.CONNECTION_POOLING,
    ],
    required_packages=["asyncpg", "numpy", "PyStemmer"],
)

log = logging.getLogger(__name__)

K1 = 1.2
B = 0.75
#: PostgreSQL limits: positions per lexeme, lexeme bytes, tsvector bytes
_MAX_POSITIONS = 255
_MAX_LEXEME_BYTES = 2046
_MAX_TSVECTOR_BYTES = 1_000_000
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


# -- schema ---------------------------------------------------------------------------------


def _schema_1(dim: int) -> list[str]:
    return [
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE items ("
        " seq bigint GENERATED ALWAYS AS IDENTITY,"
        " id text PRIMARY KEY,"
        " kind text NOT NULL CHECK (kind IN ('conversation', 'reflection', 'insight')),"
        " content text NOT NULL, content_hash text NOT NULL,"
        " project text, session_id text, role text, tags text[] NOT NULL DEFAULT '{}',"
        " author text, metadata jsonb NOT NULL DEFAULT '{}',"
        " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,"
        f" embedding vector({int(dim)}),"
        " terms tsvector NOT NULL DEFAULT ''::tsvector, doc_len integer NOT NULL DEFAULT 0)",
        # vectors inline (a TOASTed vector made exact search 5x slower), terms compressed inline
        "ALTER TABLE items ALTER COLUMN embedding SET STORAGE PLAIN, "
        "ALTER COLUMN terms SET STORAGE MAIN",
        # BM25 collection statistics, kept by every write (a full count per query is slow)
        "CREATE TABLE item_stats (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
        "n bigint NOT NULL, total_len bigint NOT NULL)",
        "INSERT INTO item_stats VALUES (true, 0, 0)",
        "CREATE UNIQUE INDEX items_dedup ON items (kind, project, content_hash) NULLS NOT DISTINCT",
        "CREATE INDEX items_project ON items (project)",
        "CREATE INDEX items_time ON items (created_at)",
        "CREATE INDEX items_session ON items (session_id)",
        "CREATE INDEX items_terms ON items USING gin (terms)",
        "CREATE TABLE records (collection text NOT NULL, id text NOT NULL, project text, "
        "status text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, "
        "data jsonb NOT NULL, PRIMARY KEY (collection, id))",
        "CREATE INDEX records_project ON records (collection, project)",
        "CREATE INDEX records_time ON records (collection, created_at)",
        "CREATE VIEW conversations AS SELECT id, content, content_hash, project, session_id, "
        'role, tags, author, metadata, created_at AS "timestamp", updated_at, embedding '
        "FROM items WHERE kind = 'conversation'",
        "CREATE VIEW reflections AS SELECT kind, id, content, content_hash, project, "
        "session_id, role, tags, author, metadata, created_at, updated_at, embedding "
        "FROM items WHERE kind <> 'conversation'",
        f"INSERT INTO meta VALUES ('vector_dimension', '{int(dim)}')",
    ]


#: the postings of the stored items, set-based: exactly the rows the trigger inserts per item
#: (the migration's fill; a bulk load may append ``WHERE i.seq ...``)
POSTINGS_OF_ITEMS = (
    "INSERT INTO postings SELECT u.lexeme, i.seq, coalesce(cardinality(u.positions), 1), "
    "i.doc_len FROM items i CROSS JOIN LATERAL unnest(i.terms) u"
)


def _schema_2(dim: int) -> list[str]:
    """The inverted index of keyword search: one posting per (term, item), kept by a trigger
    from ``items.terms`` so every write path (add, update, delete, import) maintains it in
    the writing transaction, then filled from the items already stored."""
    return [
        "CREATE UNIQUE INDEX items_seq ON items (seq)",
        "CREATE TABLE postings (lexeme text NOT NULL, seq bigint NOT NULL, "
        "tf smallint NOT NULL, doc_len integer NOT NULL)",
        # covering: BM25 reads the postings of a term from the index alone
        "CREATE UNIQUE INDEX postings_term ON postings (lexeme, seq) INCLUDE (tf, doc_len)",
        "CREATE INDEX postings_seq ON postings (seq)",
        # dedup per author: one person's copy of a text is never another's item
        "DROP INDEX items_dedup",
        "CREATE UNIQUE INDEX items_dedup ON items (kind, project, author, content_hash) "
        "NULLS NOT DISTINCT",
        # filters give the seqs they keep from an index alone (the rows are wide: vectors)
        "CREATE INDEX items_project_seq ON items (project) INCLUDE (seq)",
        "DROP INDEX items_project",
        "CREATE INDEX items_kind_seq ON items (kind) INCLUDE (seq)",
        "CREATE INDEX items_time_seq ON items (created_at) INCLUDE (seq)",
        "DROP INDEX items_time",
        "CREATE FUNCTION items_postings() RETURNS trigger LANGUAGE plpgsql "
        "SET search_path FROM CURRENT AS $body$ BEGIN "
        "IF TG_OP <> 'INSERT' THEN DELETE FROM postings WHERE seq = OLD.seq; END IF; "
        "IF TG_OP <> 'DELETE' THEN INSERT INTO postings (lexeme, seq, tf, doc_len) "
        "SELECT u.lexeme, NEW.seq, coalesce(cardinality(u.positions), 1), NEW.doc_len "
        "FROM unnest(NEW.terms) u; END IF; RETURN NULL; END $body$",
        "CREATE TRIGGER items_postings AFTER INSERT OR DELETE OR UPDATE OF terms, doc_len "
        "ON items FOR EACH ROW EXECUTE FUNCTION items_postings()",
        POSTINGS_OF_ITEMS,
        "ANALYZE postings",
    ]


#: PostgreSQL's SQL (asyncpg returns aware datetimes as they are)
POSTGRES = _sql.Dialect(
    name="postgres",
    numbered=True,
    text="text",
    json="jsonb",
    any_of="{column} = ANY({param}::text[])",
    all_tags="tags @> {param}::text[]",
    time="{}",
    read_time=lambda value: value,
)

#: Forward migrations (the steps of :data:`._sql.STEPS`), applied in order.
MIGRATIONS = _sql.migrations(
    {
        1: _schema_1,
        2: _schema_2,
        3: lambda dim: graph_schema(POSTGRES),
        4: lambda dim: graph_walk_index(POSTGRES),
    }
)
SCHEMA_VERSION = MIGRATIONS[-1].version
_ITEM_COLUMNS = POSTGRES.item_columns
_RECORD_COLUMNS = POSTGRES.record_columns


# -- keyword terms --------------------------------------------------------------------------


def _access(access: Access | None, params: _sql.Params) -> list[str]:
    """The access rule as a condition (none when everything is visible)."""
    return [] if access is None else [_sql.access_condition(access, params)]


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def term_counts(text: str, term: Callable[[str], str] = str) -> tuple[list[tuple[str, int]], int]:
    """``text``'s index terms as (stored term, occurrences) pairs, most frequent first, as many
    as a tsvector holds (occurrences capped at its 255 positions), and the document length in
    terms; ``term`` is how a term is stored (keyed in an encrypted store)."""
    terms = tokenize(text)
    counts = Counter(term(t) for t in terms if len(t.encode("utf-8")) <= _MAX_LEXEME_BYTES)
    kept: list[tuple[str, int]] = []
    size = 0
    # most frequent first, so a huge document that overflows the tsvector limit keeps the
    # terms that matter most (the content itself is always stored whole)
    for lexeme, tf in sorted(counts.items(), key=lambda kv: -kv[1]):
        n = min(tf, _MAX_POSITIONS)
        size += len(lexeme.encode("utf-8")) + 8 + 2 * n
        if size > _MAX_TSVECTOR_BYTES:
            log.warning(
                "an item has more distinct terms than a tsvector holds; %d of %d terms are "
                "not keyword-searchable",
                len(counts) - len(kept),
                len(counts),
            )
            break
        kept.append((lexeme, n))
    return kept, len(terms)


def terms_tsvector(text: str, term: Callable[[str], str] = str) -> tuple[str, int]:
    """The tsvector literal of ``text``'s index terms (one position per occurrence, so the
    term frequency survives) and the document length in terms (:func:`term_counts`)."""
    kept, doc_len = term_counts(text, term)
    return " ".join(_quote(t) + ":" + ",".join(map(str, range(1, n + 1))) for t, n in kept), doc_len


def terms_tsquery(query: str, term: Callable[[str], str] = str) -> tuple[str, list[str]] | None:
    """An OR tsquery of the query's terms (and the terms), or None when it has none."""
    terms = [term(t) for t in query_terms(query) if len(t.encode("utf-8")) <= _MAX_LEXEME_BYTES]
    if not terms:
        return None
    return " | ".join(_quote(t) for t in terms), terms


# -- SQL helpers ----------------------------------------------------------------------------


async def _count(con: asyncpg.Connection, items: int, length: int) -> None:
    """Keep the BM25 collection statistics; the last statement of a write transaction, so
    the row lock it takes is held only until the commit (no lock-order cycles)."""
    if items or length:
        await con.execute(
            "UPDATE item_stats SET n = n + $1, total_len = total_len + $2", items, length
        )


def _encode_vector(value: Any) -> bytes:
    vec = np.asarray(value, dtype=">f4").reshape(-1)
    return struct.pack(">HH", len(vec), 0) + vec.tobytes()


def _decode_vector(data: bytes) -> np.ndarray:
    (dim,) = struct.unpack_from(">H", data)
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)


def _host_of(dsn: str) -> str:
    """Where a DSN points (no credentials), for messages."""
    from session_buddy.settings import mask_dsn

    return mask_dsn(dsn)


class _Server:
    """The server side of the PostgreSQL store: its settings, the connection pool, and the
    preparation of a start (extension, schema, migrations, stored dimension, vector index)."""

    def __init__(
        self,
        dsn: str,
        *,
        dimension: int = 384,
        max_content_bytes: int = 4 * 1024 * 1024,
        password: str | None = None,
        sslmode: str | None = None,
        schema: str = "public",
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        connect_timeout_s: float = 10.0,
        vector_index: str = "none",
        ivfflat_lists: int = 0,
        ivfflat_probes: int = 10,
        key: Cipher | KeyProblem | None = None,
        key_optional: bool = False,
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise StorageError(
                f"storage.pg_schema {schema!r} is not a plain identifier (letters, digits, _)"
            )
        if vector_index not in ("none", "ivfflat"):
            raise StorageError(
                f"storage.vector_index must be 'none' or 'ivfflat', not {vector_index!r}"
            )
        self.dsn = dsn
        self.dimension = dimension
        self.max_content_bytes = max_content_bytes
        self.password = password
        self.sslmode = sslmode
        self.schema = schema
        self.pool_min_size = min(pool_min_size, pool_max_size)
        self.pool_max_size = pool_max_size
        self.connect_timeout_s = connect_timeout_s
        self.vector_index = vector_index
        self.ivfflat_lists = ivfflat_lists
        self.ivfflat_probes = ivfflat_probes
        # the configured key, and whether a store without a key check is read as plaintext
        self.key, self.key_optional = key, key_optional  # (migrate's source); see _cipher
        self._pool: asyncpg.Pool | None = None
        self._init_lock = asyncio.Lock()
        self._vector_schema = "public"
        self.cipher: Cipher | None = None
        #: how vector search runs (set when the store is prepared; shown by health)
        self.vector_plan = "exact"
        self.graph: GraphStore = SqlGraph(self)  # type: ignore[arg-type]

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths | None = None,
        resolve: Callable[[type], Any] | None = None,
    ) -> Self:
        s = settings.storage
        if not s.dsn:
            raise StorageError(
                "the postgres storage needs a connection string: set storage.dsn (env "
                "SESSION_BUDDY_STORAGE__DSN), e.g. postgresql://user@host:5432/session_buddy, "
                f"and the password in ${s.password_env}"
            )
        return cls(
            s.dsn,
            dimension=settings.embeddings.dimension,
            max_content_bytes=s.max_content_bytes,
            password=os.environ.get(s.password_env) or None,
            sslmode=s.sslmode,
            schema=s.pg_schema,
            pool_min_size=s.pool_min_size,
            pool_max_size=s.pool_max_size,
            connect_timeout_s=s.connect_timeout_s,
            vector_index=s.vector_index,
            ivfflat_lists=s.ivfflat_lists,
            ivfflat_probes=s.ivfflat_probes,
            key=key_from_settings(settings),
        )

    # -- lifecycle ------------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dsn": self.dsn, "timeout": self.connect_timeout_s}
        if self.password:
            kwargs["password"] = self.password
        if self.sslmode:
            kwargs["ssl"] = self.sslmode
        return kwargs

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        try:
            return await asyncpg.connect(**self._connect_kwargs())
        except (
            asyncpg.InvalidPasswordError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ) as exc:
            raise StorageError(
                f"PostgreSQL at {_host_of(self.dsn)} refused the login: {exc}. Check the user "
                "in storage.dsn and the password (in the environment variable named by "
                "storage.password_env, default SESSION_BUDDY_PG_PASSWORD)"
            ) from exc
        except asyncpg.InvalidCatalogNameError as exc:
            raise StorageError(
                f"the database of {_host_of(self.dsn)} does not exist: {exc}. Create it "
                "(CREATE DATABASE ...) or fix storage.dsn"
            ) from exc
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {_host_of(self.dsn)}: "
                f"{type(exc).__name__}: {exc}. Check that the server is running and reachable "
                "from here, and storage.dsn (env SESSION_BUDDY_STORAGE__DSN) and "
                "storage.sslmode"
            ) from exc

    async def initialize(self) -> None:
        async with self._init_lock:
            if self._pool is not None:
                return
            con = await self._connect()
            try:
                await self._prepare(con)
            finally:
                await con.close()
            import asyncpg

            try:
                self._pool = await asyncpg.create_pool(
                    **self._connect_kwargs(),
                    min_size=self.pool_min_size,
                    max_size=self.pool_max_size,
                    init=self._init_connection,
                    server_settings={
                        "search_path": self._search_path,
                        "application_name": "session-buddy",
                        # plans follow the actual terms and filters (a generic plan, chosen
                        # after five runs of a statement, guessed row counts badly)
                        "plan_cache_mode": "force_custom_plan",
                    },
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                raise StorageError(
                    f"cannot open a connection pool to {_host_of(self.dsn)}: {exc}"
                ) from exc
            log.info("Opened PostgreSQL store %s (schema %s)", _host_of(self.dsn), self.schema)

    @property
    def _search_path(self) -> str:
        paths = [f'"{self.schema}"']
        if self._vector_schema != self.schema:
            paths.append(f'"{self._vector_schema}"')
        return ", ".join(paths)

    async def _init_connection(self, con: asyncpg.Connection) -> None:
        await con.set_type_codec(
            "vector",
            schema=self._vector_schema,
            encoder=_encode_vector,
            decoder=_decode_vector,
            format="binary",
        )

    async def _prepare(self, con: asyncpg.Connection) -> None:
        """Extension, schema, migrations, dimension and vector index, under one advisory lock
        (services starting together migrate once)."""
        import asyncpg

        quoted = f'"{self.schema}"'
        try:
            async with con.transaction():
                await con.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"session-buddy:{self.schema}"
                )
                await self._ensure_vector(con)
                await con.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
                await con.execute(f"SET LOCAL search_path TO {self._search_path}")
                await self._migrate(con)
                self.cipher = await self._check_key(con)
                self.dimension = _sql.stored_dimension(
                    await con.fetchval(_sql.VECTOR_DIMENSION), self.dimension, _host_of(self.dsn)
                )
                await self._sync_vector_index(con)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise StorageError(
                f"the PostgreSQL user of {_host_of(self.dsn)} may not create the session-buddy "
                f"tables in schema {self.schema}: {exc}. Grant CREATE on the schema (or the "
                "database), or set storage.pg_schema to a schema it owns"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(
                f"preparing the PostgreSQL store at {_host_of(self.dsn)} failed: {exc}"
            ) from exc

    async def _check_key(self, con: asyncpg.Connection) -> Cipher | None:
        """The cipher this store is read with, after its key check (:func:`check_store`), in
        the preparing transaction (services starting together write one check)."""
        cipher, check = check_store(
            self.key,
            await con.fetchval(KEY_CHECK),
            bool(await con.fetchval(IN_USE)),
            f"the PostgreSQL store at {_host_of(self.dsn)} (schema {self.schema})",
            optional=self.key_optional,
        )
        if check is not None:
            await con.execute("INSERT INTO meta VALUES ($1, $2)", META_KEY, check)
        return cipher

    async def _ensure_vector(self, con: asyncpg.Connection) -> None:
        import asyncpg

        found = await con.fetchval(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
        if found is None:
            try:
                async with con.transaction():  # a savepoint: a failure leaves the rest usable
                    await con.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except asyncpg.PostgresError as exc:
                available = await con.fetchval(
                    "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
                )
                db = await con.fetchval("SELECT current_database()")
                if not available:
                    hint = (
                        "the pgvector extension is not installed on the server: install it "
                        "(e.g. the postgresql-<version>-pgvector package, or build it from "
                        "github.com/pgvector/pgvector), then retry"
                    )
                else:
                    hint = (
                        f"pgvector is installed but this user may not create it: ask an "
                        f"administrator to run CREATE EXTENSION vector; in database {db}"
                    )
                raise StorageError(
                    f"PostgreSQL at {_host_of(self.dsn)} has no 'vector' extension in database "
                    f"{db} and it could not be created ({type(exc).__name__}: {exc}); {hint}"
                ) from exc
            found = await con.fetchval(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                "ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
            )
        self._vector_schema = str(found)

    async def _migrate(self, con: asyncpg.Connection) -> None:
        """Apply the pending steps of :data:`MIGRATIONS` (in the caller's transaction, under
        its advisory lock)."""
        await con.execute(_sql.schema_version_table(POSTGRES))
        current = int(await con.fetchval(_sql.CURRENT_VERSION))
        store = f"the PostgreSQL store at {_host_of(self.dsn)} (schema {self.schema})"
        moved = "storage.dsn / storage.pg_schema"
        for step in _sql.pending(MIGRATIONS, current, store=store, moved=moved):
            for statement, params in _sql.step_statements(POSTGRES, step, self.dimension):
                await con.execute(statement, *params)
            log.info("Migrated %s to schema version %d", _host_of(self.dsn), step.version)

    async def _sync_vector_index(self, con: asyncpg.Connection) -> None:
        exists = await con.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'items_vector'",
            self.schema,
        )
        if self.vector_index == "none":
            self.vector_plan = "exact"
            if exists:
                await con.execute("DROP INDEX items_vector")
            return
        probes = f"{self.ivfflat_probes} probes"
        if exists:
            lists = await con.fetchval(
                "SELECT substring(array_to_string(c.reloptions, ',') from 'lists=([0-9]+)') "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relname = 'items_vector'",
                self.schema,
            )
            self.vector_plan = f"ivfflat ({lists or '?'} lists, {probes})"
            return
        rows = int(await con.fetchval("SELECT count(*) FROM items WHERE embedding IS NOT NULL"))
        lists = self.ivfflat_lists if self.ivfflat_lists > 0 else max(10, rows // 1000)
        if rows < 10 * lists:
            # ivfflat learns its lists from the vectors present: built on (almost) nothing it
            # would send every later vector to arbitrary lists and lose recall for good
            log.info(
                "storage.vector_index is ivfflat but the store holds %d vectors (fewer than "
                "10 per list for %d lists): exact search until a start finds at least %d",
                rows,
                lists,
                10 * lists,
            )
            self.vector_plan = (
                f"exact: ivfflat waits for {10 * lists} vectors ({rows} now) and a restart"
            )
            return
        log.info("Building an ivfflat index with %d lists (storage.vector_index)", lists)
        self.vector_plan = f"ivfflat ({lists} lists, {probes})"
        await con.execute(
            f"CREATE INDEX items_vector ON items USING ivfflat (embedding vector_cosine_ops) "
            f"WITH (lists = {int(lists)})"
        )

    async def close(self) -> None:
        async with self._init_lock:
            pool, self._pool = self._pool, None
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=10)
                except TimeoutError:
                    pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError(
                "the PostgreSQL storage is not open: call initialize() first (or it was closed)"
            )
        return self._pool

    @contextlib.asynccontextmanager
    async def _con(self, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (in one transaction when asked); driver errors become
        StorageError with the server's message."""
        import asyncpg

        try:
            async with self.pool.acquire() as con:
                if transaction:
                    async with con.transaction():
                        yield con
                else:
                    yield con
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if isinstance(exc, asyncpg.UniqueViolationError):
                raise
            raise StorageError(
                f"PostgreSQL error on {_host_of(self.dsn)}: {type(exc).__name__}: {exc}"
            ) from exc


class Storage(_Server, _sql.SqlStorage):
    """The storage protocol over a :class:`_Server`."""

    name = "postgres"
    dialect = POSTGRES

    def _check_vector(self, vector: np.ndarray) -> np.ndarray:
        return check_vector(vector, self.dimension)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        async with self._con() as con:
            rows: list[asyncpg.Record] = await con.fetch(sql, *params)
        return rows

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        async with self._con(transaction=True) as con:
            rows: list[asyncpg.Record] = await con.fetch(sql, *params)
        return rows

    async def _transaction(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        async with self._con(transaction=True) as con:
            return [list(await con.fetch(sql, *params)) for sql, params in statements]

    async def _size_bytes(self) -> int | None:
        """The tables of the store's schema, with their indexes and TOAST."""
        rows = await self._fetch(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
            "AND c.relkind = 'r'",
            [self.schema],
        )
        size = rows[0][0] if rows else None
        return None if size is None else int(size)

    # -- items ----------------------------------------------------------------------------

    _INSERT = (
        "INSERT INTO items (id, kind, content, content_hash, project, session_id, role, tags, "
        "author, metadata, created_at, updated_at, embedding, terms, doc_len) VALUES "
        "($1, $2, $3, $4, $5, $6, $7, $8::text[], $9, $10::jsonb, $11, $12, $13, "
        "$14::tsvector, $15) ON CONFLICT {target} DO NOTHING RETURNING id, doc_len"
    )

    async def _insert_args(
        self, entries: Sequence[tuple[str, NewItem | MemoryItem, datetime, Any]]
    ) -> list[tuple[Any, ...]]:
        """The arguments of :attr:`_INSERT` for (id, item, updated_at, vector or None)
        entries; the keyword terms of the whole batch are made in one worker thread."""
        terms = await asyncio.to_thread(
            lambda: [terms_tsvector(x.content, self._term) for _, x, _, _ in entries]
        )
        return [
            (
                *self._seal_row(
                    ItemRow.of(
                        item_id,
                        x,
                        updated_at,
                        None if vector is None else self._check_vector(vector),
                    )
                ),
                tsv,
                doc_len,
            )
            for (item_id, x, updated_at, vector), (tsv, doc_len) in zip(entries, terms, strict=True)
        ]

    async def add_items(self, items: Sequence[NewItem]) -> list[AddResult]:
        validate_items(items, self.max_content_bytes, self._check_vector)
        if not items:
            return []
        # duplicates inside the batch: the first one stands for the others
        first: dict[DedupKey, int] = {}
        for i, x in enumerate(items):
            first.setdefault(dedup_key(x), i)
        # insert in key order: concurrent batches then never wait on each other in a cycle
        unique = sorted(
            first.values(),
            key=lambda i: (
                items[i].kind,
                items[i].project or "",
                items[i].author or "",
                items[i].content_hash,
            ),
        )
        now = utcnow()
        rows = await self._insert_args(
            [(str(uuid.uuid4()), items[i], now, items[i].embedding) for i in unique]
        )
        sql = self._INSERT.format(target="(kind, project, author, content_hash)")
        async with self._con(transaction=True) as con:
            returned = await con.fetchmany(sql, rows)
            inserted = {r[0] for r in returned}
            ids: dict[DedupKey, tuple[str, bool]] = {}
            missing: list[int] = []
            for i, row in zip(unique, rows, strict=True):
                x = items[i]
                if row[0] in inserted:
                    ids[dedup_key(x)] = (row[0], True)
                else:
                    missing.append(i)
            if missing:
                # they existed (or another service inserted them concurrently and committed)
                found = await con.fetch(
                    "SELECT i.id, k.n FROM unnest($1::text[], $2::text[], $3::text[], "
                    "$4::text[]) WITH ORDINALITY AS k(kind, project, author, hash, n) "
                    "JOIN items i ON i.kind = k.kind AND i.project IS NOT DISTINCT FROM "
                    "k.project AND i.author IS NOT DISTINCT FROM k.author "
                    "AND i.content_hash = k.hash",
                    [items[i].kind for i in missing],
                    [items[i].project for i in missing],
                    [items[i].author for i in missing],
                    [self._stored_hash(items[i].content_hash) for i in missing],
                )
                for item_id, n in found:
                    x = items[missing[n - 1]]
                    ids[dedup_key(x)] = (item_id, False)
            await _count(con, len(returned), sum(r[1] for r in returned))
        results: list[AddResult] = []
        seen: set[str] = set()
        for x in items:
            got = ids.get(dedup_key(x))
            if got is None:  # pragma: no cover - deleted between the insert and the select
                raise StorageError(
                    "an item was deleted by another service while it was being stored; retry"
                )
            item_id, created = got
            results.append(AddResult(id=item_id, created=created and item_id not in seen))
            seen.add(item_id)
        return results

    async def _apply_update(self, item_id: str, change: ItemChange) -> MemoryItem:
        import asyncpg

        with_content: list[tuple[str, Any]] = []
        if change.content is not None:
            tsv, doc_len = await asyncio.to_thread(terms_tsvector, change.content, self._term)
            with_content = [("terms = {}::tsvector", tsv), ("doc_len = {}", doc_len)]
        params = POSTGRES.params()
        sealed = self._seal_change(item_id, change)
        sets = _sql.update_sets(sealed, params, change.embedding, with_content)
        sql = (
            f"WITH old AS (SELECT id, doc_len FROM items WHERE id = {params.add(item_id)} "
            f"FOR UPDATE) UPDATE items SET {', '.join(sets)} FROM old WHERE items.id = old.id "
            f"RETURNING items.{_ITEM_COLUMNS}, "
            "items.doc_len - old.doc_len"
        )
        try:
            async with self._con(transaction=True) as con:
                row = await con.fetchrow(sql, *params.values)
                if row is not None and row[13]:
                    await _count(con, 0, row[13])
        except asyncpg.UniqueViolationError:
            async with self._con() as con:
                clash = await con.fetchval(
                    "SELECT o.id FROM items o JOIN items i ON o.kind = i.kind AND "
                    "o.project IS NOT DISTINCT FROM i.project AND o.author IS NOT DISTINCT "
                    "FROM i.author WHERE i.id = $1 AND o.content_hash = $2 AND o.id <> $1",
                    item_id,
                    sealed.content_hash,
                )
                kind = await con.fetchval("SELECT kind FROM items WHERE id = $1", item_id)
            raise duplicate_item(kind, clash) from None
        if row is None:
            raise no_item(item_id)
        return self._item(row)

    async def delete_items(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self._con(transaction=True) as con:
            rows = await con.fetch(
                "DELETE FROM items WHERE id = ANY($1::text[]) RETURNING id, doc_len",
                list(dict.fromkeys(ids)),
            )
            await con.execute(
                "DELETE FROM graph_mentions WHERE item_id = ANY($1::text[])",
                list(dict.fromkeys(ids)),
            )
            await _count(con, -len(rows), -sum(r[1] for r in rows))
        return len(rows)

    @staticmethod
    def _hit(row: Any) -> Hit:
        return Hit(
            id=row[0],
            score=float(row[1]),
            created_at=row[2],
            author=row[3],
            kind=row[4],
            project=row[5],
        )

    async def keyword_search(
        self, query: str, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        """BM25 over every item (collection statistics of the whole store, as the
        in-process index computes them), then the filter: the same scores as DuckDB's.

        Two plans, one formula. In general the postings of the query's terms are summed
        from the covering index alone (no item row is read until the top hits are known);
        with a narrow filter (given ids or one session) the filtered items matching the
        query (GIN on ``terms``) are scored from their own term vectors instead.

        The access rule: no index knows the authors (a filter on them would read every
        item row), so the postings plan ranks without it and checks the hits, which carry
        their author: when ``limit`` of the best ``depth`` are visible, they are exactly the
        best visible ones (the usual case, one's own store, at ``depth = limit``). Else it
        looks 4 and 16 times deeper, then ranks with the rule as a filter."""
        self.pool  # noqa: B018 - raises when not open
        built = terms_tsquery(query, self._term)
        if built is None or limit <= 0:
            return []
        if access is None or flt.ids is not None or flt.session_id is not None:
            return await self._keyword(built, flt, limit, access)
        depth = limit
        while depth <= 16 * limit:
            hits = await self._keyword(built, flt, depth, None)
            visible = [h for h in hits if access.allows(h.author, h.id)]
            if len(visible) >= limit or len(hits) < depth:
                return visible[:limit]
            depth *= 4
        return await self._keyword(built, flt, limit, access)

    async def _keyword(
        self,
        built: tuple[str, list[str]],
        flt: ItemFilter,
        limit: int,
        access: Access | None,
    ) -> list[Hit]:
        tsquery, terms = built
        params = POSTGRES.params(list(dict.fromkeys(terms)), K1, B)
        where = _sql.where(flt, params) + _access(access, params)
        weights = (
            # document frequencies over the whole store, from the postings index
            "WITH q AS MATERIALIZED (SELECT u.lexeme, (SELECT count(*) FROM postings p"
            " WHERE p.lexeme = u.lexeme)::float8 AS df FROM unnest($1::text[]) u(lexeme)),"
            " t AS (SELECT greatest(n, 1)::float8 AS n,"
            " greatest(total_len::float8 / greatest(n, 1), 1e-9) AS avgdl FROM item_stats),"
            " w AS MATERIALIZED (SELECT q.lexeme, ln(1 + (t.n - q.df + 0.5) / (q.df + 0.5)) AS idf,"
            " t.avgdl FROM q CROSS JOIN t WHERE q.df > 0)"
        )
        # typed: an untyped $2 in "$2 + 1" would be taken as an integer (k1 = 1)
        bm25 = (
            "w.idf * {tf} * ($2::float8 + 1)"
            " / ({tf} + $2::float8 * (1 - $3::float8 + $3::float8 * {dl} / w.avgdl))"
        )
        if flt.ids is not None or flt.session_id is not None:
            sql = (
                f"{weights} SELECT i.id, sum("
                + bm25.format(tf="coalesce(cardinality(u.positions), 1)", dl="i.doc_len")
                + ") AS score, i.created_at, i.author, i.kind, i.project"
                " FROM items i CROSS JOIN LATERAL"
                # keep only the query's lexemes before unnesting: mark them, filter on it
                " unnest(ts_filter(setweight(i.terms, 'A', $1::text[]), '{a}')) u"
                " JOIN w ON w.lexeme = u.lexeme"
                f" WHERE i.terms @@ {params.add(tsquery)}::tsquery AND {' AND '.join(where)}"
                f" GROUP BY i.seq, i.id ORDER BY score DESC, i.seq LIMIT {params.add(limit)}"
            )
        else:
            kept = ""
            if where:
                # the seqs the filter keeps, then a hash semi-join (a probe into the wide
                # items rows per posting was 7x slower)
                weights += (
                    f", f AS MATERIALIZED (SELECT seq FROM items WHERE {' AND '.join(where)})"
                )
                kept = " AND p.seq IN (SELECT seq FROM f)"
            sql = (
                f"{weights}, top AS (SELECT p.seq, sum("
                + bm25.format(tf="p.tf::float8", dl="p.doc_len")
                + ") AS score FROM w JOIN postings p ON p.lexeme = w.lexeme"
                f" WHERE p.lexeme = ANY($1::text[]){kept}"
                f" GROUP BY p.seq ORDER BY score DESC, p.seq LIMIT {params.add(limit)})"
                " SELECT i.id, top.score, i.created_at, i.author, i.kind, i.project"
                " FROM top JOIN items i ON i.seq = top.seq"
                " ORDER BY top.score DESC, top.seq"
            )
        async with self._con() as con:
            rows = await con.fetch(sql, *params.values)
        return [self._hit(r) for r in rows if r[1] > 0]

    async def vector_search(
        self, vector: np.ndarray, flt: ItemFilter, limit: int, access: Access | None = None
    ) -> list[Hit]:
        vec = self._check_vector(vector)
        if limit <= 0:
            return []
        params = POSTGRES.params(vec)
        where = ["embedding IS NOT NULL", *_sql.where(flt, params), *_access(access, params)]
        sql = (
            "SELECT id, 1 - (embedding <=> $1) AS score, created_at, author, kind, project"
            " FROM items WHERE "
            + " AND ".join(where)
            + f" ORDER BY embedding <=> $1, seq LIMIT {params.add(limit)}"
        )
        async with self._con(transaction=self.vector_index == "ivfflat") as con:
            if self.vector_index == "ivfflat":
                await con.execute(
                    f"SET LOCAL ivfflat.probes = {int(self.ivfflat_probes)}; "
                    "SET LOCAL ivfflat.iterative_scan = relaxed_order"
                )
            rows = await con.fetch(sql, *params.values)
        hits = [self._hit(r) for r in rows]
        if self.vector_index == "ivfflat":  # relaxed order: sort what came back
            hits.sort(key=lambda h: -h.score)
        return hits

    # -- records --------------------------------------------------------------------------

    async def modify_record(
        self,
        collection: str,
        record_id: str,
        change: Callable[[Record | None], Record | None],
    ) -> Record | None:
        """The row is locked (FOR UPDATE) while ``change`` runs, so writers on other
        services wait; a record created meanwhile by another service is read again."""
        for _ in range(10):
            async with self._con(transaction=True) as con:
                row = await con.fetchrow(
                    f"SELECT {_RECORD_COLUMNS} FROM records WHERE collection = $1 AND id = $2 "
                    "FOR UPDATE",
                    collection,
                    record_id,
                )
                current = self._record(row) if row is not None else None
                new = change(current)
                if new is None:
                    return current
                check_record_key(new, collection, record_id)
                args = self._record_values(new)
                if current is not None:
                    await con.execute(
                        "UPDATE records SET project = $3, status = $4, created_at = $5, "
                        "updated_at = $6, data = $7::jsonb WHERE collection = $1 AND id = $2",
                        *args,
                    )
                    return new
                created = await con.fetchval(
                    "INSERT INTO records VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) "
                    "ON CONFLICT (collection, id) DO NOTHING RETURNING true",
                    *args,
                )
                if created:
                    return new
            # another service created it after our read: read it again, locked
        raise StorageError(
            f"record {collection}/{record_id} kept changing under concurrent writers; retry"
        )

    # -- bulk copy (session-buddy migrate) ------------------------------------------------

    async def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        async with self._con() as con:
            rows = await con.fetch(
                "SELECT id, embedding FROM items WHERE id = ANY($1::text[]) "
                "AND embedding IS NOT NULL",
                list(ids),
            )
        return {r[0]: np.asarray(r[1], dtype=np.float32) for r in rows}

    _AFTER = (
        '($1::timestamptz IS NULL OR (updated_at, id COLLATE "C") > ($1, $2)) '
        'ORDER BY updated_at, id COLLATE "C"'
    )

    async def changed_items(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        async with self._con() as con:
            rows = await con.fetch(
                f"SELECT {_ITEM_COLUMNS}, embedding FROM items WHERE {self._AFTER} LIMIT $3",
                after[0] if after else None,
                after[1] if after else None,
                max(0, limit),
            )
        return [(self._item(r), r[13]) for r in rows]

    async def changed_records(
        self, collection: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Record]:
        async with self._con() as con:
            rows = await con.fetch(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE collection = $4 AND {self._AFTER} "
                "LIMIT $3",
                after[0] if after else None,
                after[1] if after else None,
                max(0, limit),
                collection,
            )
        return [self._record(r) for r in rows]

    async def export_items(
        self, after_id: str | None, limit: int
    ) -> list[tuple[MemoryItem, np.ndarray | None]]:
        async with self._con() as con:
            rows = await con.fetch(
                f"SELECT {_ITEM_COLUMNS}, embedding FROM items "
                'WHERE $1::text IS NULL OR id COLLATE "C" > $1 ORDER BY id COLLATE "C" LIMIT $2',
                after_id,
                max(0, limit),
            )
        return [(self._item(r), r[13]) for r in rows]

    async def import_items(self, rows: Sequence[tuple[MemoryItem, np.ndarray | None]]) -> int:
        if not rows:
            return 0
        for x, _ in rows:
            validate_stored_item(x, self.max_content_bytes)
        args = await self._insert_args([(x.id, x, x.updated_at, vector) for x, vector in rows])
        async with self._con(transaction=True) as con:
            inserted = await con.fetchmany(self._INSERT.format(target=""), args)
            await _count(con, len(inserted), sum(r[1] for r in inserted))
        return len(inserted)

    async def export_records(self, after: tuple[str, str] | None, limit: int) -> list[Record]:
        async with self._con() as con:
            rows = await con.fetch(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE $1::text IS NULL OR "
                '(collection COLLATE "C", id COLLATE "C") > ($1, $2) '
                'ORDER BY collection COLLATE "C", id COLLATE "C" LIMIT $3',
                after[0] if after else None,
                after[1] if after else None,
                max(0, limit),
            )
        return [self._record(r) for r in rows]
