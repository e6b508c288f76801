"""What the SQL backends (DuckDB, PostgreSQL) share, written once.

* :class:`Dialect` - how a backend's SQL differs, as data: placeholder style (``?`` or
  ``$1``), type names, the spelling of "column in a list" and "has every tag", how a time
  column is read;
* :class:`Params` - parameters collected while a statement is built;
* :func:`where` - an :class:`~._base.ItemFilter` as WHERE conditions over the item columns;
* row mapping (:meth:`Dialect.item`, :meth:`Dialect.record`) over the common column lists,
  and :class:`ItemRow`, an item row as both insert it;
* :class:`SqlStorage` - the protocol methods both backends answer with the same statements
  (items read, listed and counted; meta; records; stats) over two hooks that run one
  statement (:meth:`SqlStorage._fetch`, :meth:`SqlStorage._write`);
* the migration runner's rules over numbered steps (:class:`Migration`, :func:`migrations`,
  :func:`pending`, :func:`step_statements`): the version numbers and descriptions are the
  same on both backends, the statements of each step are the backend's own.

What is really different (DuckDB's two item tables and its in-process index, PostgreSQL's
postings, pgvector and server-side dedup) stays in the backend modules.
"""

from __future__ import annotations

import json
import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from session_buddy.adapters.storage._base import (
    Access,
    ItemChange,
    ItemFilter,
    MemoryItem,
    Record,
    StorageBase,
    StorageStats,
    aware,
    check_id_prefix,
    check_meta,
    in_order,
    item_values,
    stats_of,
    utcnow,
)
from session_buddy.adapters.storage._cipher import SealedRows
from session_buddy.errors import StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The differences of one backend's SQL, as data."""

    name: str
    #: ``$1, $2, ...`` (PostgreSQL) rather than ``?`` (DuckDB: values bound in text order)
    numbered: bool
    #: the type of a text column, of a JSON column
    text: str
    json: str
    #: "``column`` is one of the list ``param``" (``{column}``, ``{param}``)
    any_of: str
    #: "the ``tags`` column holds every tag of the list ``param``" (``{param}``)
    all_tags: str
    #: how a time column is selected (``{}`` is the column)
    time: str
    #: a selected time value as an aware datetime
    read_time: Callable[[Any], datetime]

    def params(self, *initial: Any) -> Params:
        return Params(self, *initial)

    def is_any(self, column: str, param: str) -> str:
        return self.any_of.format(column=column, param=param)

    @property
    def item_columns(self) -> str:
        """The columns :meth:`item` reads, in its order (13)."""
        return (
            "id, kind, content, project, session_id, role, tags, author, metadata::text, "
            f"{self.time.format('created_at')}, {self.time.format('updated_at')}, "
            "content_hash, embedding IS NOT NULL"
        )

    @property
    def record_columns(self) -> str:
        """The columns :meth:`record` reads, in its order (7)."""
        return (
            f"collection, id, data::text, project, status, {self.time.format('created_at')}, "
            f"{self.time.format('updated_at')}"
        )

    def item(self, row: Sequence[Any]) -> MemoryItem:
        """The item of a row of :attr:`item_columns`."""
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
            created_at=self.read_time(row[9]),
            updated_at=self.read_time(row[10]),
            content_hash=row[11],
            has_embedding=bool(row[12]),
        )

    def record(self, row: Sequence[Any]) -> Record:
        """The record of a row of :attr:`record_columns`."""
        return Record(
            collection=row[0],
            id=row[1],
            data=json.loads(row[2]),
            project=row[3],
            status=row[4],
            created_at=self.read_time(row[5]),
            updated_at=self.read_time(row[6]),
        )


class Params:
    """The values of a statement being built; :meth:`add` returns the placeholder to write.
    With ``?`` placeholders the values bind in the order they appear in the text, so add
    them in that order."""

    def __init__(self, dialect: Dialect, *initial: Any) -> None:
        self.dialect = dialect
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}" if self.dialect.numbered else "?"


# -- items ----------------------------------------------------------------------------------


def where(flt: ItemFilter | None, params: Params) -> list[str]:
    """The conditions of ``flt`` over the item columns (none for no filter)."""
    if flt is None:
        return []
    d = params.dialect
    parts: list[str] = []
    if flt.ids is not None:
        parts.append(d.is_any("id", params.add(sorted(flt.ids))))
    if flt.projects is not None:
        parts.append(d.is_any("project", params.add(list(flt.projects))))
    if flt.kinds is not None:
        parts.append(d.is_any("kind", params.add(list(flt.kinds))))
    if flt.role is not None:
        parts.append(f"role = {params.add(flt.role)}")
    if flt.session_id is not None:
        parts.append(f"session_id = {params.add(flt.session_id)}")
    if flt.after is not None:
        parts.append(f"created_at >= {params.add(aware(flt.after))}")
    if flt.before is not None:
        parts.append(f"created_at < {params.add(aware(flt.before))}")
    if flt.tags:
        parts.append(d.all_tags.format(param=params.add(list(flt.tags))))
    if flt.access is not None:
        parts.append(access_condition(flt.access, params))
    return parts


def access_condition(access: Access, params: Params) -> str:
    """The access rule as one condition: the item's author is one of the rule's (an
    author-less item when ``None`` is), or its id is shared with the caller."""
    d = params.dialect
    authors = sorted(a for a in access.authors if a is not None)
    parts = [d.is_any("author", params.add(authors))]
    if None in access.authors:
        parts.append("author IS NULL")
    if access.shared:
        parts.append(d.is_any("id", params.add(sorted(access.shared))))
    return f"({' OR '.join(parts)})"


def where_clause(parts: Sequence[str]) -> str:
    """``" WHERE a AND b"``, or nothing without conditions."""
    return (" WHERE " + " AND ".join(parts)) if parts else ""


def _record_key(p: Params, collection: str, record_id: str) -> str:
    return f"collection = {p.add(collection)} AND id = {p.add(record_id)}"


def _page(params: Params, newest_first: bool, limit: int, offset: int) -> str:
    order = "DESC" if newest_first else "ASC"
    return (
        f" ORDER BY created_at {order}, id {order} "
        f"LIMIT {params.add(max(0, limit))} OFFSET {params.add(max(0, offset))}"
    )


class ItemRow(NamedTuple):
    """One item row as both backends insert it."""

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
    def of(cls, item_id: str, x: Any, updated_at: datetime, vector: Any) -> ItemRow:
        """The row of an item (new or stored: anything with the item fields)."""
        return cls(item_id, *item_values(x), aware(x.created_at), aware(updated_at), vector)


def update_sets(
    change: ItemChange,
    params: Params,
    vector: Any,
    with_content: Sequence[tuple[str, Any]] = (),
) -> list[str]:
    """The assignments of an item's UPDATE for a checked change: the time, then a new
    content with its hash and ``vector`` (None clears it) or a new vector alone, the tags,
    the metadata. ``with_content`` are more ``(assignment, value)`` pairs a new content
    sets (PostgreSQL's keyword terms), ``{}`` standing for the value's placeholder."""
    d = params.dialect
    sets = [f"updated_at = {params.add(utcnow())}"]
    if change.content is not None:
        sets += [
            f"content = {params.add(change.content)}",
            f"content_hash = {params.add(change.content_hash)}",
            f"embedding = {params.add(vector)}",
        ]
        sets += [assignment.format(params.add(value)) for assignment, value in with_content]
    elif vector is not None:
        sets.append(f"embedding = {params.add(vector)}")
    if change.tags is not None:
        sets.append(f"tags = {params.add(change.tags)}::{d.text}[]")
    if change.metadata_json is not None:
        sets.append(f"metadata = {params.add(change.metadata_json)}::{d.json}")
    return sets


# -- statements of every start ---------------------------------------------------------------


ALL_META = "SELECT key, value FROM meta"
#: The stats' counts in one scan of the items: per (kind, project), the items and how many
#: have a vector (three queries, by kind, by project and embedded, scanned the table thrice;
#: at 1M items on DuckDB 34 ms, this one 10 ms, where ``count(*) FILTER (WHERE embedding IS
#: NOT NULL)`` took 190: it reads the vectors, ``count(embedding)`` only their validity).
COUNTS = "SELECT kind, project, count(*), count(embedding) FROM items GROUP BY kind, project"
#: The health check's round trip: one row at most, not a count of the table.
PING = "SELECT 1 FROM items LIMIT 1"
VECTOR_DIMENSION = "SELECT value FROM meta WHERE key = 'vector_dimension'"


def stored_dimension(stored: object, configured: int, store: str) -> int:
    """The vector dimension to use: the one the store was built with (``stored``, from
    :data:`VECTOR_DIMENSION`) when it has one; a disagreement is logged."""
    if stored is None or int(str(stored)) == configured:
        return configured
    log.warning(
        "%s holds %s-dimensional vectors but embeddings.dimension is %d; "
        "semantic search stays off until they agree",
        store,
        stored,
        configured,
    )
    return int(str(stored))


# -- migrations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: Callable[[int], list[str]]  # vector dimension -> SQL statements


#: The schema versions, numbered alike on both backends. Never edit a released step: append.
STEPS: dict[int, str] = {
    1: "conversations, reflections, records, meta",
    # PostgreSQL adds its keyword postings and a per-author dedup index; DuckDB does both in
    # process (its step 2 has no statements)
    2: "keyword postings and dedup per author (DuckDB: both kept in process)",
    3: "knowledge graph: entities, observations, relations, mentions",
    # walks look relations up by either end; PostgreSQL reads both ends from the index
    # alone (DuckDB walks an in-process adjacency: no statements)
    4: "graph relations: covering index by target for walks",
}


def migrations(statements: dict[int, Callable[[int], list[str]]]) -> list[Migration]:
    """A backend's migrations: its statements for each of :data:`STEPS`, in order."""
    if sorted(statements) != sorted(STEPS):
        raise AssertionError(f"migrations must give every step of {sorted(STEPS)}")
    return [Migration(v, STEPS[v], statements[v]) for v in sorted(STEPS)]


def schema_version_table(d: Dialect) -> str:
    return (
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        f"description {d.text} NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )


CURRENT_VERSION = "SELECT coalesce(max(version), 0) FROM schema_version"


def pending(steps: Sequence[Migration], current: int, *, store: str, moved: str) -> list[Migration]:
    """The steps a store at version ``current`` still needs; a store newer than every step
    is refused (``store`` names it, ``moved`` is the setting that points elsewhere)."""
    known = steps[-1].version
    if current > known:
        raise StorageError(
            f"{store} has schema version {current} but this session-buddy knows only up to "
            f"{known}: a newer session-buddy wrote it. Upgrade session-buddy (or point "
            f"{moved} elsewhere)"
        )
    return [step for step in steps if step.version > current]


def step_statements(d: Dialect, step: Migration, dimension: int) -> list[tuple[str, list[Any]]]:
    """What applying ``step`` runs, in one transaction: its statements, then its row in
    ``schema_version``."""
    p = d.params()
    record = (
        f"INSERT INTO schema_version VALUES ({p.add(step.version)}, "
        f"{p.add(step.description)}, {p.add(utcnow())})"
    )
    return [(sql, []) for sql in step.statements(dimension)] + [(record, p.values)]


# -- the methods both backends run alike ------------------------------------------------------


class SqlStorage(SealedRows, StorageBase):
    """The part of the protocol the SQL backends answer with the same statements: items
    read, listed and counted, meta, records, stats. A backend gives its :attr:`dialect` and
    two ways to run one statement (:meth:`_fetch`, :meth:`_write`)."""

    dialect: Dialect
    #: how vector search runs (health shows it)
    vector_plan: str = "exact"

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        """The rows of one read-only statement."""

    @abstractmethod
    async def _write(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        """Run one statement in its own transaction, committed before this returns; its rows
        (those of ``RETURNING``)."""

    @abstractmethod
    async def _transaction(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        """Run statements in one transaction, committed before this returns; the rows of
        each (those of ``RETURNING``)."""

    async def _size_bytes(self) -> int | None:
        """The store's size on disk, when known."""
        return None

    async def get_items(self, ids: Sequence[str]) -> list[MemoryItem]:
        if not ids:
            return []
        d = self.dialect
        p = d.params()
        sql = f"SELECT {d.item_columns} FROM items WHERE "
        sql += d.is_any("id", p.add(list(dict.fromkeys(ids))))
        return in_order(ids, [self._item(r) for r in await self._fetch(sql, p.values)])

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        p = self.dialect.params()
        sql = f"SELECT id FROM items WHERE id LIKE {p.add(check_id_prefix(prefix) + '%')} "
        sql += f"ORDER BY id LIMIT {int(limit)}"
        return [str(r[0]) for r in await self._fetch(sql, p.values)]

    async def list_items(
        self, flt: ItemFilter, *, limit: int = 50, offset: int = 0, newest_first: bool = True
    ) -> list[MemoryItem]:
        # the page's ids first, then their rows: a top-N sort of whole rows costs ~40x more
        # (250 ms for a page of 25 of 100k items on DuckDB, 6 ms for the ids)
        p = self.dialect.params()
        sql = f"SELECT id FROM items{where_clause(where(flt, p))}{_page(p, newest_first, limit, offset)}"
        return await self.get_items([str(r[0]) for r in await self._fetch(sql, p.values)])

    async def count_items(self, flt: ItemFilter | None = None) -> int:
        p = self.dialect.params()
        rows = await self._fetch(
            f"SELECT count(*) FROM items{where_clause(where(flt, p))}", p.values
        )
        return int(rows[0][0])

    async def _counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Items by kind and by project (None as ""), and how many have a vector."""
        by_kind: dict[str, int] = {}
        by_project: dict[str, int] = {}
        embedded = 0
        for kind, project, count, with_vector in await self._fetch(COUNTS):
            by_kind[kind] = by_kind.get(kind, 0) + int(count)
            by_project[project or ""] = by_project.get(project or "", 0) + int(count)
            embedded += int(with_vector)
        return by_kind, by_project, embedded

    async def stats(self) -> StorageStats:
        by_kind, by_project, embedded = await self._counts()
        return stats_of(
            by_kind=by_kind,
            by_project=by_project,
            embedded=embedded,
            meta=await self.all_meta(),
            size_bytes=await self._size_bytes(),
            vector_search=self.vector_plan,
        )

    async def ping(self) -> float:
        start = time.perf_counter()
        await self._fetch(PING)
        return (time.perf_counter() - start) * 1000

    async def get_meta(self, key: str) -> str | None:
        p = self.dialect.params()
        rows = await self._fetch(f"SELECT value FROM meta WHERE key = {p.add(key)}", p.values)
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        check_meta(key, value)
        p = self.dialect.params()
        await self._write(
            f"INSERT INTO meta VALUES ({p.add(key)}, {p.add(value)}) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value",
            p.values,
        )

    async def all_meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in await self._fetch(ALL_META)}

    async def put_record(self, record: Record) -> None:
        p = self.dialect.params()
        slots = ", ".join(p.add(value) for value in self._record_values(record))
        await self._write(
            f"INSERT INTO records VALUES ({slots}::{self.dialect.json}) "
            "ON CONFLICT (collection, id) DO UPDATE SET project = excluded.project, "
            "status = excluded.status, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at, data = excluded.data",
            p.values,
        )

    async def get_record(self, collection: str, record_id: str) -> Record | None:
        p = self.dialect.params()
        key = _record_key(p, collection, record_id)
        rows = await self._fetch(
            f"SELECT {self.dialect.record_columns} FROM records WHERE {key}", p.values
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
        p = self.dialect.params()
        sql = (
            f"SELECT {self.dialect.record_columns} FROM records "
            f"WHERE collection = {p.add(collection)}"
        )
        if project is not None:
            sql += f" AND project = {p.add(project)}"
        if status is not None:
            sql += f" AND status = {p.add(status)}"
        sql += _page(p, newest_first, limit, offset)
        return [self._record(r) for r in await self._fetch(sql, p.values)]

    async def delete_record(self, collection: str, record_id: str) -> bool:
        p = self.dialect.params()
        key = _record_key(p, collection, record_id)
        return bool(await self._write(f"DELETE FROM records WHERE {key} RETURNING id", p.values))
