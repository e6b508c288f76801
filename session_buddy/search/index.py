"""The in-process search index shared by the memory and DuckDB storage backends.

One *row* per stored item. Per-row metadata lives in numpy arrays (kind, project, role,
session, time, alive) so a filter is a boolean mask computed in microseconds, and both
rankers apply that mask *before* taking their top-k: a filtered search is exact, never a
post-filtered top-N. The keyword ranker is incremental BM25 (:mod:`.keyword`), the vector
ranker a Hamming distance over binary (sign-bit) vector codes with the nearest candidates
rescored on the exact float32 vectors (:mod:`.vector`; those are kept in a file beside the
store when ``vector_dir`` is given, else in RAM).

The item ids are numpy arrays too (:mod:`.ids`: each row's UUID as 16 bytes, and the rows
sorted by it for id -> row; any other id as text), not a dict of Python strings: at 1M
items the ids take ~19 MB instead of ~150 MB (53 MB as UTF-8 bytes and hashes).

Writes: :meth:`SearchIndex.add` (new rows), :meth:`remove`, :meth:`set_tags`. Changing an
item's content is ``remove`` + ``add`` (a new row). Dead rows are reclaimed by compaction
once they are a quarter of the rows. Every method takes the index's lock, so the index can
be used from ``asyncio.to_thread`` workers; tokenising happens before the lock is taken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from session_buddy.adapters.storage._base import KINDS, ROLES, Access, Hit, ItemFilter
from session_buddy.search.ids import Ids
from session_buddy.search.keyword import KeywordIndex
from session_buddy.search.tokens import query_terms, tokenize

if TYPE_CHECKING:
    from session_buddy.search.vector import FloatRows

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Compact when dead rows exceed this fraction of rows in use (and COMPACT_MIN rows).
COMPACT_FRACTION = 0.25
COMPACT_MIN = 1024
#: Batches at least this large are indexed with the vectorised bulk path.
BULK = 64


def epoch_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass(slots=True)
class IndexEntry:
    id: str
    kind: str
    content: str
    created_at: datetime
    project: str | None = None
    session_id: str | None = None
    role: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    vector: np.ndarray | None = None
    author: str | None = None

    @classmethod
    def of(cls, item: Any, vector: np.ndarray | None, *, item_id: str | None = None) -> IndexEntry:
        """The entry of a stored or new item (anything with the item fields)."""
        return cls(
            id=item_id if item_id is not None else item.id,
            kind=item.kind,
            content=item.content,
            created_at=item.created_at,
            project=item.project,
            session_id=item.session_id,
            role=item.role,
            tags=tuple(item.tags),
            vector=vector,
            author=item.author,
        )


class _Codes:
    """Value <-> small int code (-1 = None) for a metadata column."""

    def __init__(self, fixed: Sequence[str] = ()) -> None:
        self.codes: dict[str, int] = {v: i for i, v in enumerate(fixed)}
        self.values: list[str | None] = [*fixed, None]  # values[-1]: code -1 is None

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.codes)
            self.values.insert(found, value)
        return found

    def lookup(self, values: Iterable[str]) -> list[int]:
        return [c for v in values if (c := self.codes.get(v)) is not None]


class SearchIndex:
    def __init__(
        self, dimension: int, vector_dir: Path | None = None, exact: FloatRows | None = None
    ) -> None:
        """``vector_dir``: keep the exact vectors in an unlinked file there; ``exact``: in
        this store instead (default: in RAM)."""
        from session_buddy.search.vector import FileRows, VectorIndex

        self.lock = threading.RLock()
        self.keyword = KeywordIndex()
        if exact is None and vector_dir is not None:
            exact = FileRows(dimension, vector_dir)
        self.vectors = VectorIndex(dimension, exact)
        self._ids = Ids()  # the id of each row (dead rows' too, until compaction)
        self._items = 0  # live rows
        self._size = 0  # rows in use (live or dead)
        self._dead = 0
        self._projects = _Codes()
        self._sessions = _Codes()
        self._kinds = _Codes(KINDS)
        self._roles = _Codes(ROLES)
        self._authors = _Codes()
        self._tags: dict[str, set[int]] = {}
        self._row_tags: dict[int, tuple[str, ...]] = {}
        cap = 0
        self.alive = np.zeros(cap, dtype=bool)
        self.kind = np.zeros(cap, dtype=np.int16)
        self.project = np.zeros(cap, dtype=np.int32)
        self.session = np.zeros(cap, dtype=np.int32)
        self.role = np.zeros(cap, dtype=np.int16)
        self.author = np.zeros(cap, dtype=np.int32)
        self.created = np.zeros(cap, dtype=np.int64)

    @property
    def dimension(self) -> int:
        return self.vectors.dimension

    def __len__(self) -> int:
        return self._items

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str):
            return False
        with self.lock:  # a compaction replaces the rows and the ids: see one layout
            return self._row(item_id) is not None

    def _row(self, item_id: str) -> int | None:
        """The live row of this id."""
        return self._ids.find(item_id, self.alive)

    @property
    def embedded(self) -> int:
        return self.vectors.count

    # -- capacity -------------------------------------------------------------------------

    _COLUMNS = ("alive", "kind", "project", "session", "role", "author", "created")

    def _ensure_capacity(self, need: int) -> None:
        cap = len(self.alive)
        if need <= cap:
            return
        new_cap = max(need, int(cap * 1.5), 1024)
        for name in self._COLUMNS:
            old = getattr(self, name)
            grown = np.zeros(new_cap, dtype=old.dtype)
            grown[:cap] = old
            setattr(self, name, grown)
        self.keyword.ensure_capacity(new_cap)
        self.vectors.ensure_capacity(new_cap)

    # -- writes ---------------------------------------------------------------------------

    def add(self, entries: Sequence[IndexEntry]) -> None:
        """Index new items (an id already present is replaced)."""
        if not entries:
            return
        ids = [e.id for e in entries]
        if len(set(ids)) < len(ids):  # the last of an id wins
            entries = list({e.id: e for e in entries}.values())
            ids = [e.id for e in entries]
        terms = [tokenize(e.content) for e in entries]
        vectors = [self.vectors.check(e.vector) if e.vector is not None else None for e in entries]
        with self.lock:
            present, parsed = self._ids.find_many(ids, self.alive)
            for row, item_id in zip(present.tolist(), ids, strict=True):
                if row >= 0:
                    self._remove_row(row, item_id)
            start = self._size
            # bulk loads leave headroom, so the next write does not copy the matrix
            self._ensure_capacity(
                start + len(entries) + (len(entries) // 4 if len(entries) > 1 else 0)
            )
            bulk = len(entries) >= BULK
            if bulk:
                self.keyword.add_many(start, terms)
            vec_rows: list[int] = []
            vec_list: list[np.ndarray] = []
            for offset, (entry, entry_terms, vec) in enumerate(
                zip(entries, terms, vectors, strict=True)
            ):
                row = start + offset
                self.alive[row] = True
                self.kind[row] = self._kinds.code(entry.kind)
                self.project[row] = self._projects.code(entry.project)
                self.session[row] = self._sessions.code(entry.session_id)
                self.role[row] = self._roles.code(entry.role)
                self.author[row] = self._authors.code(entry.author)
                self.created[row] = epoch_us(entry.created_at)
                self._set_tags_locked(row, entry.tags)
                if not bulk:
                    self.keyword.add(row, entry_terms)
                if vec is not None:
                    vec_rows.append(row)
                    vec_list.append(vec)
            self._size = start + len(entries)
            self._items += len(entries)
            self._ids.add(ids, parsed)
            self._ids.maybe_fold()
            if vec_rows:
                self.vectors.set_many(np.asarray(vec_rows), np.vstack(vec_list))

    def remove(self, ids: Iterable[str]) -> int:
        with self.lock:
            removed = sum(1 for item_id in ids if self._remove_locked(item_id))
            self._maybe_compact()
            return removed

    def _remove_locked(self, item_id: str) -> bool:
        row = self._row(item_id)
        if row is None:
            return False
        self._remove_row(row, item_id)
        return True

    def _remove_row(self, row: int, item_id: str) -> None:
        self.alive[row] = False
        self._ids.forget(item_id)
        self._items -= 1
        self.keyword.remove(row)
        self.vectors.clear(row)
        self._set_tags_locked(row, ())
        self._dead += 1

    def set_tags(self, item_id: str, tags: Sequence[str]) -> None:
        with self.lock:
            row = self._row(item_id)
            if row is not None:
                self._set_tags_locked(row, tags)

    def set_vector(self, item_id: str, vector: np.ndarray | None) -> None:
        with self.lock:
            row = self._row(item_id)
            if row is not None:
                self.vectors.set(row, vector)

    def _set_tags_locked(self, row: int, tags: Sequence[str]) -> None:
        for tag in self._row_tags.pop(row, ()):
            rows = self._tags.get(tag)
            if rows is not None:
                rows.discard(row)
                if not rows:
                    del self._tags[tag]
        if tags:
            unique = tuple(dict.fromkeys(tags))
            self._row_tags[row] = unique
            for tag in unique:
                self._tags.setdefault(tag, set()).add(row)

    def _maybe_compact(self) -> None:
        if self._dead < COMPACT_MIN or self._dead < COMPACT_FRACTION * self._size:
            return
        size = self._size
        alive = self.alive[:size].copy()
        keep = np.flatnonzero(alive)
        new_row = np.full(size, -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep))
        capacity = max(len(keep) + len(keep) // 2, 1024)
        for name in self._COLUMNS:
            old = getattr(self, name)
            fresh = np.zeros(capacity, dtype=old.dtype)
            fresh[: len(keep)] = old[keep]
            setattr(self, name, fresh)
        self.keyword.remap(new_row, alive, capacity)
        self.vectors.remap(keep, capacity)
        self._ids.keep(keep)
        self._row_tags = {int(new_row[r]): t for r, t in self._row_tags.items() if alive[r]}
        self._tags = {}
        for row, tags in self._row_tags.items():
            for tag in tags:
                self._tags.setdefault(tag, set()).add(row)
        self._size = len(keep)
        self._dead = 0

    # -- reads ----------------------------------------------------------------------------

    def _rows(self, ids: Iterable[str]) -> np.ndarray:
        """A mask of the rows of these ids."""
        chosen = np.zeros(self._size, dtype=bool)
        rows = self._ids.find_many(list(ids), self.alive)[0]
        chosen[rows[rows >= 0]] = True
        return chosen

    def _access_mask(self, access: Access) -> np.ndarray:
        codes = self._authors.lookup(a for a in access.authors if a is not None)
        if None in access.authors:
            codes.append(-1)
        return np.isin(self.author[: self._size], codes) | self._rows(access.shared)

    def _mask(self, flt: ItemFilter | None, access: Access | None = None) -> np.ndarray:
        size = self._size
        mask = self.alive[:size].copy()
        if access is not None:
            mask &= self._access_mask(access)
        if flt is None:
            return mask
        if flt.access is not None:
            mask &= self._access_mask(flt.access)
        if flt.ids is not None:
            mask &= self._rows(flt.ids)
        if flt.projects is not None:
            mask &= np.isin(self.project[:size], self._projects.lookup(flt.projects))
        if flt.kinds is not None:
            mask &= np.isin(self.kind[:size], self._kinds.lookup(flt.kinds))
        if flt.role is not None:
            mask &= self.role[:size] == self._roles.codes.get(flt.role, -2)
        if flt.session_id is not None:
            mask &= self.session[:size] == self._sessions.codes.get(flt.session_id, -2)
        if flt.after is not None:
            mask &= self.created[:size] >= epoch_us(flt.after)
        if flt.before is not None:
            mask &= self.created[:size] < epoch_us(flt.before)
        if flt.tags:
            for tag in dict.fromkeys(flt.tags):
                rows = self._tags.get(tag)
                chosen = np.zeros(size, dtype=bool)
                if rows:
                    chosen[list(rows)] = True
                mask &= chosen
        return mask

    def has_vector(self, item_id: str) -> bool:
        """Whether this id is indexed with a vector."""
        with self.lock:
            row = self._row(item_id)
            present = self.vectors.present
            return row is not None and row < len(present) and bool(present[row])

    def vectors_of(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The vectors of these ids (copies), for those that have one."""
        with self.lock:
            out: dict[str, np.ndarray] = {}
            for item_id in ids:
                row = self._row(item_id)
                vector = None if row is None else self.vectors.vector(row)
                if vector is not None:
                    out[item_id] = vector
            return out

    def filter_ids(self, flt: ItemFilter | None) -> list[tuple[str, int]]:
        """(id, created epoch us) of every live item matching the filter."""
        with self.lock:
            rows = np.flatnonzero(self._mask(flt))
            return list(zip(self._ids.values(rows), self.created[rows].tolist(), strict=True))

    def counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Live items by kind and by project (None as ""), and how many have a vector: a
        store's stats from the index, without scanning its table."""
        with self.lock:
            alive = self.alive[: self._size]
            out: list[dict[str, int]] = []
            for column, codes in ((self.kind, self._kinds), (self.project, self._projects)):
                # code -1 (None) counted at 0; a bincount, not np.unique (a sort of 1M rows)
                counts = np.bincount(column[: self._size][alive] + 1)
                tally: dict[str, int] = {}
                for code in np.flatnonzero(counts).tolist():
                    name = codes.values[code - 1] or ""
                    tally[name] = tally.get(name, 0) + int(counts[code])
                out.append(tally)
            return out[0], out[1], self.vectors.count

    def count(self, flt: ItemFilter | None = None) -> int:
        with self.lock:
            if flt is None:
                return self._items
            return int(self._mask(flt).sum())

    def _top(self, rows: np.ndarray, scores: np.ndarray, limit: int) -> list[Hit]:
        if len(rows) == 0 or limit <= 0:
            return []
        if len(rows) > limit:
            part = np.argpartition(-scores, limit - 1)[:limit]
            rows, scores = rows[part], scores[part]
        order = np.lexsort((rows, -scores))  # score desc, then older row first (stable)
        top = rows[order]
        kinds, projects, authors = (
            self._kinds.values,
            self._projects.values,
            self._authors.values,
        )
        return [
            Hit(i, s, from_epoch_us(c), authors[a], kinds[k], projects[p])
            for i, s, c, a, k, p in zip(
                self._ids.values(top),
                scores[order].tolist(),
                self.created[top].tolist(),
                self.author[top].tolist(),
                self.kind[top].tolist(),
                self.project[top].tolist(),
                strict=True,
            )
        ]

    def keyword_search(
        self, query: str, flt: ItemFilter | None, limit: int, access: Access | None = None
    ) -> list[Hit]:
        terms = query_terms(query)
        if not terms:
            return []
        with self.lock:
            found = self.keyword.top(terms, self._size, limit, self._mask(flt, access))
            if found is None:
                return []
            return self._top(*found, limit)

    def vector_search(
        self, vector: np.ndarray, flt: ItemFilter | None, limit: int, access: Access | None = None
    ) -> list[Hit]:
        with self.lock:
            rows, sims = self.vectors.scores(vector, self._mask(flt, access), limit)
            return self._top(rows, sims, limit)

    def memory(self) -> dict[str, int]:
        """Rows, vectors and the bytes the process holds for the index (its numpy arrays,
        plus an estimate for the dicts of recent ids and terms and the tags), for ``health``."""
        with self.lock:
            columns = sum(getattr(self, name).nbytes for name in self._COLUMNS)
            ids = self._ids.nbytes + len(self._row_tags) * 200
            return {
                "rows": self._size,
                "items": self._items,
                "vectors": self.vectors.count,
                "vocabulary": self.keyword.vocabulary,
                "vector_bytes": self.vectors.nbytes,
                "exact_vector_file_bytes": self.vectors.exact_file_bytes,
                "keyword_bytes": self.keyword.nbytes,
                "id_bytes": ids,
                "bytes": self.vectors.nbytes + self.keyword.nbytes + columns + ids,
            }

    def close(self) -> None:
        """Release the exact vectors' file (the index is not used after)."""
        with self.lock:
            self.vectors.close()
