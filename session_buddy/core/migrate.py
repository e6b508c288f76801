"""Copy a whole store to another backend: ``session-buddy migrate --from A --to B``.

Endpoints are written ``duckdb:PATH`` or ``postgres:DSN`` (a bare ``postgresql://...`` DSN
works too). Everything is copied: items with their ids, times, hashes and vectors, the
records, the meta table (embedding model and dimension) and the knowledge graph (entities,
observations, relations, mentions, with their ids).

**Safety.** The target must be empty - or hold an unfinished copy *from the same source*,
which is then resumed. Items and records go over in batches, each one transaction on the
target; the progress (the last id copied) is written to the target's meta table
(``migration_in_progress``) after each batch, and importing skips ids already present, so an
interrupted copy (Ctrl-C, a lost connection, a killed process) is resumed by running the
same command again: nothing is copied twice and nothing is lost. The source is only read;
stop the services writing to it during the copy. When either store is the one the data
directory's service holds, the copy runs inside that service (``run_migration(own=...)``,
asked by the CLI), so no second process ever opens its DuckDB file.

**Verification.** When the copy is done, both stores are read again and compared: per table
a count and a SHA-256 over every row in id order (items: id, kind, content, hash, project,
session, role, tags, author, metadata, times and the exact float32 vector bytes; records:
every field; meta: every key but the migration's own; each knowledge-graph table: every
row). Only when they agree is the
in-progress marker cleared and ``migrated_from`` recorded; otherwise it raises and says which
table differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from session_buddy.adapters.storage._base import MemoryItem, Record, StorageBase, utcnow
from session_buddy.adapters.storage._cipher import (
    META_KEY,
    Cipher,
    cipher_from_settings,
    configured_key,
    decode_key,
)
from session_buddy.adapters.storage._graph import GRAPH_TABLES
from session_buddy.errors import StorageError, ValidationError

if TYPE_CHECKING:
    from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

#: meta keys the migration owns (not copied, not compared)
MARKER = "migration_in_progress"
DONE = "migrated_from"
#: (each store has its own key check: an encrypted target gets one of its own)
OWN_KEYS = frozenset({MARKER, DONE, "vector_dimension", META_KEY})
BACKENDS = ("duckdb", "postgres")
#: the key of an encrypted source when it is not the configured one (changing keys)
SOURCE_KEY_ENV = "SESSION_BUDDY_SOURCE_KEY"


@dataclass(frozen=True)
class Endpoint:
    backend: str  # duckdb | postgres
    location: str  # a file path or a DSN

    def describe(self) -> str:
        """A stable description without secrets (stored in the target's meta)."""
        if self.backend == "postgres":
            from session_buddy.settings import mask_dsn

            return f"postgres:{mask_dsn(self.location)}"
        return f"duckdb:{Path(self.location).expanduser().resolve()}"


def parse_endpoint(text: str) -> Endpoint:
    text = text.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return Endpoint("postgres", text)
    backend, sep, location = text.partition(":")
    if not sep or backend not in BACKENDS or not location:
        raise ValidationError(
            f"cannot read the store {text!r}: write duckdb:PATH or postgres:DSN "
            "(e.g. duckdb:~/.claude/data/session-buddy/memory.duckdb or "
            "postgres:postgresql://user@host:5432/session_buddy)"
        )
    return Endpoint(backend, location)


def open_storage(
    endpoint: Endpoint,
    settings: SessionBuddySettings,
    *,
    dimension: int | None = None,
    key: Cipher | None = None,
    key_optional: bool = False,
) -> StorageBase:
    """A storage for the endpoint, with the other storage settings taken from ``settings``;
    ``key`` opens an encrypted store (``key_optional``: a plaintext one is read as it is)."""
    dim = dimension or settings.embeddings.dimension
    if endpoint.backend == "duckdb":
        from session_buddy.adapters.storage.duckdb import Storage as DuckStorage

        return DuckStorage(
            Path(endpoint.location).expanduser(),
            dimension=dim,
            max_content_bytes=settings.storage.max_content_bytes,
            key=key,
            key_optional=key_optional,
        )
    from session_buddy.adapters.storage.postgres import Storage as PgStorage

    s = settings.storage
    return PgStorage(
        endpoint.location,
        dimension=dim,
        max_content_bytes=s.max_content_bytes,
        password=os.environ.get(s.password_env) or None,
        sslmode=s.sslmode,
        schema=s.pg_schema,
        pool_min_size=1,
        pool_max_size=max(2, min(s.pool_max_size, 4)),
        connect_timeout_s=s.connect_timeout_s,
        vector_index=s.vector_index,
        ivfflat_lists=s.ivfflat_lists,
        ivfflat_probes=s.ivfflat_probes,
        key=key,
        key_optional=key_optional,
    )


# -- checksums ------------------------------------------------------------------------------


@dataclass
class TableDigest:
    count: int
    sha256: str


@dataclass
class StoreDigest:
    items: TableDigest
    embedded: int
    records: TableDigest
    meta: TableDigest
    #: the knowledge graph's tables
    graph: dict[str, TableDigest]

    def differences(self, other: StoreDigest) -> list[str]:
        out = []
        mine_all = {"items": self.items, "records": self.records, "meta": self.meta, **self.graph}
        theirs_all = {
            "items": other.items,
            "records": other.records,
            "meta": other.meta,
            **other.graph,
        }
        for name, mine in mine_all.items():
            theirs = theirs_all.get(name, TableDigest(0, ""))
            if mine != theirs:
                out.append(
                    f"{name}: source {mine.count} rows ({mine.sha256[:12]}), "
                    f"target {theirs.count} rows ({theirs.sha256[:12]})"
                )
        if self.embedded != other.embedded:
            out.append(f"vectors: source {self.embedded}, target {other.embedded}")
        return out


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _item_line(x: MemoryItem, vector: np.ndarray | None) -> bytes:
    vec = "" if vector is None else hashlib.sha256(np.asarray(vector, "<f4").tobytes()).hexdigest()
    fields = [
        x.id,
        x.kind,
        hashlib.sha256(x.content.encode("utf-8")).hexdigest(),
        x.content_hash,
        _canonical([x.project, x.session_id, x.role, x.author, list(x.tags)]),
        _canonical(x.metadata),
        _utc(x.created_at),
        _utc(x.updated_at),
        vec,
    ]
    return ("\x1f".join(fields) + "\n").encode("utf-8")


def _record_line(r: Record) -> bytes:
    fields = [
        r.collection,
        r.id,
        _canonical([r.project, r.status]),
        _canonical(r.data),
        _utc(r.created_at),
        _utc(r.updated_at),
    ]
    return ("\x1f".join(fields) + "\n").encode("utf-8")


async def digest(store: StorageBase, *, batch: int = 1000) -> StoreDigest:
    """Counts and SHA-256 checksums of everything a migration copies."""
    lines: list[tuple[str, bytes]] = []
    embedded = 0
    after: str | None = None
    while rows := await store.export_items(after, batch):
        for x, vector in rows:
            lines.append((x.id, _item_line(x, vector)))
            embedded += vector is not None
        after = rows[-1][0].id
    items = _table_digest(lines)
    rec_lines: list[tuple[str, bytes]] = []
    key: tuple[str, str] | None = None
    while records := await store.export_records(key, batch):
        for r in records:
            rec_lines.append((f"{r.collection}\x1f{r.id}", _record_line(r)))
        key = (records[-1].collection, records[-1].id)
    meta = {k: v for k, v in (await store.all_meta()).items() if k not in OWN_KEYS}
    meta_lines = [(k, f"{k}\x1f{v}\n".encode()) for k, v in meta.items()]
    return StoreDigest(
        items=items,
        embedded=embedded,
        records=_table_digest(rec_lines),
        meta=_table_digest(meta_lines),
        graph={t: await _graph_digest(store, t, batch) for t in GRAPH_TABLES},
    )


async def _graph_digest(store: StorageBase, table: str, batch: int) -> TableDigest:
    lines: list[tuple[str, bytes]] = []
    after: tuple[Any, ...] | None = None
    while rows := await store.graph.export_rows(table, after, batch):
        for row in rows:
            text = _canonical([_utc(v) if isinstance(v, datetime) else v for v in row])
            lines.append((text, (text + "\n").encode("utf-8")))
        after = _key(table, rows[-1])
    return _table_digest(lines)


def _key(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of an exported graph row (its first columns)."""
    return row[: {"graph_entities": 1, "graph_observations": 2}.get(table, 3)]


async def _copy_graph(source: StorageBase, target: StorageBase, batch: int) -> int:
    """The knowledge graph's tables, in order (entities first); rows present are skipped."""
    copied = 0
    for table in GRAPH_TABLES:
        after: tuple[Any, ...] | None = None
        while rows := await source.graph.export_rows(table, after, batch):
            copied += await target.graph.import_rows(table, rows)
            after = _key(table, rows[-1])
    return copied


def _table_digest(lines: list[tuple[str, bytes]]) -> TableDigest:
    h = hashlib.sha256()
    for _, line in sorted(lines, key=lambda kv: kv[0].encode("utf-8")):
        h.update(line)
    return TableDigest(count=len(lines), sha256=h.hexdigest())


# -- the copy -------------------------------------------------------------------------------


@dataclass
class MigrationReport:
    source: str
    target: str
    items: int  # items in the source
    items_copied: int  # inserted by this run (fewer when resumed)
    records: int
    meta: int
    resumed: bool
    verified: bool
    digest: dict[str, Any]
    seconds: float


Progress = Callable[[str, int, int], None]  # (table, done, total)


async def _start(
    source: StorageBase, target: StorageBase, source_name: str, target_name: str
) -> tuple[dict[str, Any], bool]:
    """The target's migration marker (a new one, or the one to resume) and whether it resumes;
    refuses a target that holds another migration, other data or other vectors."""
    if getattr(source, "dimension", None) != getattr(target, "dimension", None):
        raise StorageError(
            f"the source holds {getattr(source, 'dimension', '?')}-dimensional vectors but the "
            f"target {getattr(target, 'dimension', '?')}-dimensional ones: migrate into an "
            "empty target (a new database, schema or file)"
        )
    marker_text = await target.get_meta(MARKER)
    marker = json.loads(marker_text) if marker_text else None
    if marker is not None:
        if marker.get("source") != source_name:
            raise StorageError(
                f"{target_name} holds an unfinished migration from {marker.get('source')}, "
                f"not from {source_name}: finish that one (run it again) or use another target"
            )
        log.info("Resuming the migration from %s at item %s", source_name, marker.get("item"))
        return marker, True
    if await target.count_items() or await target.export_records(None, 1):
        raise StorageError(
            f"{target_name} is not empty; migrate copies into an empty store only (a new "
            "database, schema or DuckDB file), so nothing is merged by accident"
        )
    marker = {"source": source_name, "started_at": _utc(utcnow()), "item": None}
    await target.set_meta(MARKER, json.dumps(marker))
    return marker, False


async def _copy(
    source: StorageBase,
    target: StorageBase,
    marker: dict[str, Any],
    batch: int,
    progress: Progress | None,
) -> tuple[int, int]:
    """Items (resumably, from the marker's last item), records and meta; returns (items
    copied, records copied)."""
    total = await source.count_items()
    copied = 0
    done = 0
    after: str | None = marker.get("item")
    while rows := await source.export_items(after, batch):
        copied += await target.import_items(rows)
        after = rows[-1][0].id
        done += len(rows)
        marker["item"] = after
        await target.set_meta(MARKER, json.dumps(marker))
        if progress:
            progress("items", min(done, total), total)
    records = 0
    key: tuple[str, str] | None = None
    while chunk := await source.export_records(key, batch):
        for record in chunk:
            await target.put_record(record)
        records += len(chunk)
        key = (chunk[-1].collection, chunk[-1].id)
        if progress:
            progress("records", records, records)
    meta = {k: v for k, v in (await source.all_meta()).items() if k not in OWN_KEYS}
    for k, v in meta.items():
        await target.set_meta(k, v)
    await _copy_graph(source, target, batch)
    return copied, records


async def migrate(
    source: StorageBase,
    target: StorageBase,
    *,
    source_name: str,
    target_name: str,
    batch: int = 500,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy ``source`` into ``target`` (both initialised), resumably, then verify."""
    started = utcnow()
    marker, resumed = await _start(source, target, source_name, target_name)
    copied, _ = await _copy(source, target, marker, batch, progress)
    want = await digest(source)
    got = await digest(target)
    problems = want.differences(got)
    if problems:
        raise StorageError(
            "the copy does not match its source (" + "; ".join(problems) + "). Was the source "
            "written to during the copy? Stop the services using it and run the same command "
            "again (it resumes), or start over with an empty target"
        )
    finished = utcnow()
    await target.set_meta(MARKER, "")
    await target.set_meta(
        DONE,
        json.dumps(
            {
                "source": source_name,
                "finished_at": _utc(finished),
                "items": want.items.count,
                "records": want.records.count,
                "items_sha256": want.items.sha256,
            }
        ),
    )
    return MigrationReport(
        source=source_name,
        target=target_name,
        items=want.items.count,
        items_copied=copied,
        records=want.records.count,
        meta=want.meta.count,
        resumed=resumed,
        verified=True,
        digest=asdict(want),
        seconds=(finished - started).total_seconds(),
    )


def _is_file(location: str) -> bool:
    return Path(location).expanduser().is_file()


def configured_endpoint(settings: SessionBuddySettings, data_dir: Path) -> Endpoint | None:
    """The store the settings' service uses (None for in-memory storage): a migration that
    reads or writes it goes through that service, the one process that holds it."""
    backend = settings.adapters.storage
    if backend == "duckdb":
        return Endpoint("duckdb", str(settings.storage.path or data_dir / "memory.duckdb"))
    if backend == "postgres" and settings.storage.dsn:
        return Endpoint("postgres", settings.storage.dsn)
    return None


@contextlib.asynccontextmanager
async def _opened(
    endpoint: Endpoint,
    settings: SessionBuddySettings,
    own: Mapping[str, StorageBase],
    dimension: int | None = None,
    *,
    key: Cipher | None = None,
    key_optional: bool = False,
) -> AsyncIterator[StorageBase]:
    """The endpoint's storage: one already open in this process (the service's own store,
    left open, with the service's key), else opened here (with ``key``) and closed after."""
    store = own.get(endpoint.describe())
    if store is not None:
        yield store
        return
    store = open_storage(
        endpoint, settings, dimension=dimension, key=key, key_optional=key_optional
    )
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


async def run_migration(
    source_text: str,
    target_text: str,
    settings: SessionBuddySettings,
    *,
    batch: int = 500,
    progress: Progress | None = None,
    own: Mapping[str, StorageBase] | None = None,
) -> MigrationReport:
    """Open both stores from their endpoint strings, copy, verify, close. ``own`` maps the
    description of a store this process already has open (the service's) to it: that one is
    used as it is, never opened a second time nor closed."""
    src_ep, dst_ep = parse_endpoint(source_text), parse_endpoint(target_text)
    own = own or {}
    if src_ep.describe() == dst_ep.describe():
        raise ValidationError("the source and the target are the same store")
    if (
        src_ep.backend == "duckdb"
        and src_ep.describe() not in own
        and not await asyncio.to_thread(_is_file, src_ep.location)
    ):
        raise ValidationError(f"the source DuckDB file {src_ep.location} does not exist")
    # the source is read with the configured key when there is one (an encrypted source),
    # as it is otherwise ($SESSION_BUDDY_SOURCE_KEY: another key, to change keys); the target
    # is encrypted when storage.encryption says so
    other = os.environ.get(SOURCE_KEY_ENV)
    source_key = (
        decode_key(other, f"${SOURCE_KEY_ENV}")
        if other
        else configured_key(settings.storage.key_file)
    )
    source_cipher = None if source_key is None else Cipher(source_key)
    async with _opened(src_ep, settings, own, key=source_cipher, key_optional=True) as source:
        dimension = getattr(source, "dimension", None)
        target_cipher = cipher_from_settings(settings)
        async with _opened(dst_ep, settings, own, dimension, key=target_cipher) as target:
            return await migrate(
                source,
                target,
                source_name=src_ep.describe(),
                target_name=dst_ep.describe(),
                batch=batch,
                progress=progress,
            )
