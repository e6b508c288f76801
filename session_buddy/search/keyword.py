"""Incremental BM25 over row numbers (the rows of :class:`~.index.SearchIndex`).

Postings are numpy arrays, not Python objects per term: a *frozen* part in CSR form (the
postings of term ``t`` are ``rows[starts[t]:starts[t + 1]]`` with their term frequencies)
and a *tail* of recent postings as (term, row, tf) triples, merged into the frozen part once
it holds ``MERGE_MIN`` postings or an eighth of the frozen ones, whichever is more. Adding a document appends to
the tail: it is searchable at once, nothing is rebuilt on query. The distinct terms of each
row are kept the same way (CSR over rows), to correct document frequencies on delete.
The vocabulary (term -> term id) is a :class:`~.strings.Strings` too: the terms' bytes and
a sorted hash array, its recent terms folded in when the postings merge (1.2M terms at 1M
items: ~30 MB of arrays instead of ~150 MB of Python strings and dict entries).

A deleted row is only marked dead (its postings stay until the index compacts) but the
collection statistics (document frequency, live count, total length) are corrected at once,
so scores stay exact. Scores use Lucene's BM25 (``idf = ln(1 + (N - df + .5)/(df + .5))``).

Not thread-safe by itself: :class:`~.index.SearchIndex` holds the lock.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from session_buddy.search.strings import Growable, Strings

K1 = 1.2
B = 0.75
#: Tail postings merged into the frozen CSR arrays at this size (or an eighth of the frozen
#: postings, when that is more).
MERGE_MIN = 65_536


class KeywordIndex:
    def __init__(self, k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self._terms = Strings()  # term id -> term, and the lookup term -> id
        self._df = np.zeros(1024, dtype=np.int32)
        # frozen postings (CSR by term id) and the tail (triples, in the order added)
        self._starts = np.zeros(1, dtype=np.int64)
        self._rows = np.zeros(0, dtype=np.int32)
        self._tfs = np.zeros(0, dtype=np.float32)
        self._tail_tid = Growable(np.int32)
        self._tail_row = Growable(np.int32)
        self._tail_tf = Growable(np.float32)
        #: the distinct term ids of each row: ``_row_tids[_row_off[r]:_row_off[r] + _row_n[r]]``
        self._row_tids = Growable(np.int32)
        #: the term ids of the rows a snapshot brought (mapped from it), before ``_row_tids``:
        #: an offset ``o`` below its length is in it, else at ``o - len`` in ``_row_tids``
        self._row_tids_frozen = np.zeros(0, dtype=np.int32)
        self._row_off = np.zeros(0, dtype=np.int64)
        self._row_n = np.zeros(0, dtype=np.int32)  # 0 once removed
        self.doc_len = np.zeros(0, dtype=np.float32)
        self.live = 0
        self.total_len = 0.0

    # -- writes ---------------------------------------------------------------------------

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > len(self.doc_len):
            old = len(self.doc_len)
            for name, dtype in (
                ("doc_len", np.float32),
                ("_row_off", np.int64),
                ("_row_n", np.int32),
            ):
                grown = np.zeros(capacity, dtype=dtype)
                grown[:old] = getattr(self, name)[:old]
                setattr(self, name, grown)

    def _term_ids(self, unique: list[str]) -> np.ndarray:
        """The ids of these distinct terms, new ones numbered after the others."""
        tids = self._terms.numbers(unique)
        vocab = len(self._terms)
        if vocab > len(self._df):
            grown = np.zeros(max(vocab, len(self._df) * 2), dtype=np.int32)
            grown[: len(self._df)] = self._df
            self._df = grown
        return tids

    def add(self, row: int, terms: list[str]) -> None:
        """Index ``row`` with its terms (repeats count). ``row`` must be new."""
        counts = Counter(terms)
        tids = self._term_ids(list(counts)).astype(np.int32)
        tfs = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        self._append(np.full(len(tids), row, dtype=np.int32), tids, tfs)
        self._set_rows(np.asarray([row]), np.asarray([len(tids)]), tids)
        self.doc_len[row] = len(terms)
        self.live += 1
        self.total_len += len(terms)

    def add_many(self, first_row: int, docs: list[list[str]]) -> None:
        """Index rows ``first_row, first_row + 1, ...`` (all new) in one vectorised pass:
        the same result as calling :meth:`add` for each, several times faster in bulk."""
        if not docs:
            return
        flat: list[str] = []
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        for doc in docs:
            flat.extend(doc)
        unique = list(dict.fromkeys(flat))
        term_ids = dict(zip(unique, self._term_ids(unique).tolist(), strict=True))
        vocab = len(self._terms)
        tids = np.fromiter(map(term_ids.__getitem__, flat), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(first_row, first_row + len(docs), dtype=np.int64), lengths)
        keys, tf = np.unique(rows * vocab + tids, return_counts=True)  # sorted by row, tid
        key_rows = (keys // vocab).astype(np.int32)
        key_tids = (keys % vocab).astype(np.int32)
        per_row = np.bincount(key_rows - first_row, minlength=len(docs))
        self._append(key_rows, key_tids, tf.astype(np.float32))
        self._set_rows(np.arange(first_row, first_row + len(docs)), per_row, key_tids)
        self.doc_len[first_row : first_row + len(docs)] = lengths
        self.live += len(docs)
        self.total_len += float(lengths.sum())

    def _append(self, rows: np.ndarray, tids: np.ndarray, tfs: np.ndarray) -> None:
        self._tail_tid.extend(tids)
        self._tail_row.extend(rows)
        self._tail_tf.extend(tfs)
        if len(tids) > 4096:
            vocab = len(self._terms)
            self._df[:vocab] += np.bincount(tids, minlength=vocab).astype(np.int32)
        else:
            np.add.at(self._df, tids, 1)
        if self._tail_tid.size >= max(MERGE_MIN, len(self._rows) // 8):
            self._merge()

    def _set_rows(self, rows: np.ndarray, counts: np.ndarray, tids: np.ndarray) -> None:
        offsets = (
            len(self._row_tids_frozen)
            + self._row_tids.size
            + np.concatenate(([0], np.cumsum(counts)[:-1]))
        )
        self._row_off[rows] = offsets
        self._row_n[rows] = counts
        self._row_tids.extend(tids)

    def _merge(self, keep: np.ndarray | None = None, new_row: np.ndarray | None = None) -> None:
        """Fold the tail into the frozen CSR arrays; with ``keep``/``new_row`` (compaction)
        drop the postings of dead rows and renumber the others. The new terms are folded
        into the vocabulary's sorted arrays too."""
        self._terms.fold()
        vocab = len(self._terms)
        frozen_tids = np.repeat(
            np.arange(len(self._starts) - 1, dtype=np.int32), np.diff(self._starts)
        )
        tids = np.concatenate((frozen_tids, self._tail_tid.view))
        rows = np.concatenate((self._rows, self._tail_row.view))
        tfs = np.concatenate((self._tfs, self._tail_tf.view))
        del frozen_tids
        if keep is not None and new_row is not None:
            alive = keep[rows]
            tids, rows, tfs = tids[alive], new_row[rows[alive]].astype(np.int32), tfs[alive]
        # by term; within a term rows stay ascending: the frozen rows (renumbered in order by
        # a compaction) are all below the tail's, which are added in ascending order
        order = np.argsort(tids, kind="stable")
        self._rows, self._tfs = rows[order], tfs[order]
        self._starts = np.zeros(vocab + 1, dtype=np.int64)
        np.cumsum(np.bincount(tids, minlength=vocab), out=self._starts[1:])
        for tail in (self._tail_tid, self._tail_row, self._tail_tf):
            tail.replace(tail.view[:0])

    def remove(self, row: int) -> None:
        if row >= len(self._row_n) or self._row_n[row] == 0:
            return
        tids = self._tids_of(int(self._row_off[row]), int(self._row_n[row]))
        self._df[tids] -= 1
        self._row_n[row] = 0
        self.live -= 1
        self.total_len -= float(self.doc_len[row])

    def remap(self, new_row: np.ndarray, alive: np.ndarray, count: int) -> None:
        """Compaction: keep postings of live rows only, renumbered by ``new_row``."""
        size = len(new_row)  # every posting's row is below it
        keep = alive[:size] & (self._row_n[:size] > 0)
        self._merge(keep, new_row)
        live_rows = np.flatnonzero(keep[:size])
        counts = self._row_n[live_rows]
        parts = [
            self._tids_of(o, n)
            for o, n in zip(self._row_off[live_rows].tolist(), counts.tolist(), strict=True)
        ]
        self._row_tids.replace(np.concatenate(parts) if parts else np.zeros(0, np.int32))
        self._row_tids_frozen = np.zeros(0, dtype=np.int32)
        capacity = max(count, len(self.doc_len))
        old_len = self.doc_len
        self.doc_len = np.zeros(capacity, dtype=np.float32)
        self.doc_len[new_row[live_rows]] = old_len[live_rows]
        self._row_n = np.zeros(capacity, dtype=np.int32)
        self._row_n[: len(live_rows)] = counts
        self._row_off = np.zeros(capacity, dtype=np.int64)
        self._row_off[1 : len(live_rows)] = np.cumsum(counts)[:-1]

    def _tids_of(self, start: int, count: int) -> np.ndarray:
        """The distinct term ids a row's offset and count point at (a row's ids are added
        at once, so they are all in the frozen part or all in the growable one)."""
        frozen = len(self._row_tids_frozen)
        if start < frozen:
            return self._row_tids_frozen[start : start + count]
        return self._row_tids.view[start - frozen : start - frozen + count]

    def row_tids_all(self) -> np.ndarray:
        """Every row's term ids, in offset order (for a snapshot)."""
        if not len(self._row_tids_frozen):
            return self._row_tids.view
        return np.concatenate((self._row_tids_frozen, self._row_tids.view))

    def adopt_row_tids(self, tids: np.ndarray) -> None:
        """Take a snapshot's term ids as they are (mapped: nothing writes them)."""
        self._row_tids_frozen = tids
        self._row_tids.replace(tids[:0])

    # -- reads ----------------------------------------------------------------------------

    def has_terms(self, terms: list[str]) -> bool:
        return any(self._df[t] > 0 for t in self._ids(terms))

    def _ids(self, terms: list[str]) -> list[int]:
        return [tid for t in dict.fromkeys(terms) if (tid := self._terms.find(t)) is not None]

    def postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, term frequencies) of a term: frozen, then the tail's."""
        if tid + 1 < len(self._starts):
            lo, hi = int(self._starts[tid]), int(self._starts[tid + 1])
            rows, tfs = self._rows[lo:hi], self._tfs[lo:hi]
        else:
            rows, tfs = self._rows[:0], self._tfs[:0]
        if self._tail_tid.size:
            hit = self._tail_tid.view == tid
            if hit.any():
                rows = np.concatenate((rows, self._tail_row.view[hit]))
                tfs = np.concatenate((tfs, self._tail_tf.view[hit]))
        return rows, tfs

    def scores(self, terms: list[str], size: int) -> np.ndarray | None:
        """BM25 score of every row below ``size`` (0 where no term matches); None when no
        query term occurs in any live document."""
        tids = [t for t in self._ids(terms) if self._df[t] > 0]
        if not tids or self.live <= 0:
            return None
        n_docs = float(self.live)
        avgdl = max(self.total_len / n_docs, 1e-9)
        k1, b = self.k1, self.b
        out = np.zeros(size, dtype=np.float32)
        for tid in tids:
            rows, tf = self.postings(tid)
            inside = rows < size
            if not inside.all():
                rows, tf = rows[inside], tf[inside]
            df = int(self._df[tid])
            idf = np.float32(np.log1p((n_docs - df + 0.5) / (df + 0.5)))
            norm = k1 * (1.0 - b + b * (self.doc_len[rows] / avgdl))
            out[rows] += idf * (tf * (k1 + 1.0)) / (tf + norm)
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held: the numpy arrays (the vocabulary's too, and an estimate for its
        recent terms' dict)."""
        arrays = (
            self._df,
            self._starts,
            self._rows,
            self._tfs,
            self._tail_tid.data,
            self._tail_row.data,
            self._tail_tf.data,
            self._row_tids.data,
            self._row_tids_frozen,
            self._row_off,
            self._row_n,
            self.doc_len,
        )
        return int(sum(a.nbytes for a in arrays)) + self._terms.nbytes

    @property
    def vocabulary(self) -> int:
        return len(self._terms)
