"""The DuckDB store's search index kept across restarts (see ``search/snapshot.py``).

Beside ``memory.duckdb`` live ``memory.duckdb.vectors`` (the exact float32 vectors, kept
current by every write) and, after a clean close, ``memory.duckdb.index`` (the rest of
the index). The close also stores a random token in the ``meta`` table and in the snapshot;
an open reads the token and deletes it at once, before anything can write. So the snapshot
is used only when the store was closed cleanly after the snapshot was written and nothing
opened it since (a crash, or a writer that did not write a snapshot, leaves no token), and
when the store's item count agrees; otherwise the index is rebuilt from the rows.

Encrypted stores keep no snapshot: the index holds the words of every item in the clear.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from session_buddy.adapters._memory import release_free_memory
from session_buddy.search import SearchIndex, snapshot
from session_buddy.search.vector import FileRows

log = logging.getLogger(__name__)

TOKEN_KEY = "index_snapshot"
#: The store's item count, from each table's own count: DuckDB counts a table from its
#: metadata, but ``count(*)`` over the ``items`` view (a UNION ALL) scans a column of every
#: row, which left ~21 MB of table blocks in the buffer pool at 1M items.
COUNT = "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM reflections)"


def paths(db: Path) -> tuple[Path, Path]:
    """(snapshot file, vector file) of the store at ``db``."""
    return db.with_name(db.name + ".index"), db.with_name(db.name + ".vectors")


def open_index(
    con: Any, db: Path, dimension: int, persist: bool, rebuild: Callable[[SearchIndex], None]
) -> tuple[SearchIndex, str]:
    """The store's index and where it came from (``snapshot`` or ``rows``)."""
    snap, vector_path = paths(db)
    row = con.execute("SELECT value FROM meta WHERE key = ?", [TOKEN_KEY]).fetchone()
    if row is not None:
        con.execute("DELETE FROM meta WHERE key = ?", [TOKEN_KEY])
    if persist and row is not None and snap.is_file():
        vectors = FileRows(dimension, db.parent, vector_path, keep=True)
        try:
            index = snapshot.load(snap, str(row[0]), dimension, vectors)
        except Exception as exc:  # a damaged snapshot: the rows are the truth, rebuild
            log.warning(
                "The index snapshot of %s is unreadable (%s: %s); rebuilding",
                db,
                type(exc).__name__,
                exc,
            )
            index = None
        counted = con.execute(COUNT).fetchone()
        if index is not None and counted is not None and int(counted[0]) == len(index):
            release_free_memory()  # the decoding's transient strings
            return index, "snapshot"
        log.info("The index snapshot of %s does not match the store; rebuilding", db)
        vectors.close()
    if not persist:
        for stale in (snap, vector_path):
            stale.unlink(missing_ok=True)
    exact = FileRows(dimension, db.parent, vector_path if persist else None)
    index = SearchIndex(dimension, exact=exact)
    rebuild(index)
    return index, "rows"


def save_index(con: Any, db: Path, index: SearchIndex, persist: bool) -> None:
    """Write the snapshot and its token (at close, before the checkpoint)."""
    exact = index.vectors.exact
    if not persist or not isinstance(exact, FileRows) or exact.path is None:
        return
    token = uuid.uuid4().hex
    try:
        exact.sync()
        snapshot.save(index, paths(db)[0], token)
    except OSError as exc:
        log.warning("Could not write the index snapshot of %s: %s", db, exc)
        return
    con.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [TOKEN_KEY, token],
    )
