"""Incremental BM25 over row numbers (the rows of :class:`~.index.SearchIndex`).

Postings are numpy arrays, not Python objects per term: a *frozen* part in CSR form (the
postings of term ``t`` are ``rows[starts[t]:starts[t + 1]]`` with their term frequencies)
and a *tail* of recent postings as (term, row, tf) triples, merged into the frozen part once
it holds ``MERGE_MIN`` postings or an eighth of the frozen ones, whichever is more. Adding a
document appends to the tail: it is searchable at once, nothing is rebuilt on query. The
distinct terms of each row are kept the same way (CSR over rows), to correct document
frequencies on delete.
The vocabulary (term -> term id) is a :class:`~.strings.Strings` too: the terms' bytes and
a sorted hash array, its recent terms folded in when the postings merge (1.2M terms at 1M
items: ~30 MB of arrays instead of ~150 MB of Python strings and dict entries).

A deleted row is only marked dead (its postings stay until the index compacts) but the
collection statistics (document frequency, live count, total length) are corrected at once,
so scores stay exact. Scores use Lucene's BM25 (``idf = ln(1 + (N - df + .5)/(df + .5))``).

Searches want the best ``k`` rows only: :meth:`KeywordIndex.top` gives exactly the top-k of
the exhaustive :meth:`KeywordIndex.scores` (same rows, order and float32 scores) while
skipping most postings of the common terms (MaxScore: their upper bounds against the k-th
best score so far), ~2x faster on the feedback passes at 1M rows (docs/performance.md).

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
#: Top-k pruning drops a row only when its bound is below the floor by this share of it
#: (float32 sums in another order differ in the last bits; the bounds are not that tight).
_SLACK = 1e-4


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
        self._row_n = np.zeros(0, dtype=np.int32)  # -1 once removed
        self.doc_len = np.zeros(0, dtype=np.float32)
        self.live = 0
        self.total_len = 0.0
        #: terms the last :meth:`top` added to its candidates only (pruned), for tests
        self.pruned = 0
        self._writes = 0  # adds, removes and compactions: the length norms' key
        self._norm = np.zeros(0, dtype=np.float32)
        self._norm_key: tuple[int, int, float] | None = None

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
        self._writes += 1
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
        self._writes += 1
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
        """Take a live row out of the statistics (one without terms too: it counts in
        ``live``); a row removed already is marked -1 and left alone."""
        if row >= len(self._row_n) or self._row_n[row] < 0:
            return
        tids = self._tids_of(int(self._row_off[row]), int(self._row_n[row]))
        self._df[tids] -= 1
        self._row_n[row] = -1
        self._writes += 1
        self.live -= 1
        self.total_len -= float(self.doc_len[row])

    def remap(self, new_row: np.ndarray, alive: np.ndarray, count: int) -> None:
        """Compaction: keep postings of live rows only, renumbered by ``new_row``."""
        size = len(new_row)  # every posting's row is below it
        self._writes += 1
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
        # at the rows' new numbers: live rows without terms (not in ``live_rows``) keep
        # theirs, so ``live_rows`` are not 0, 1, 2... in the new numbering
        moved = new_row[live_rows]
        self.doc_len[moved] = old_len[live_rows]
        self._row_n = np.zeros(capacity, dtype=np.int32)
        self._row_n[moved] = counts
        self._row_off = np.zeros(capacity, dtype=np.int64)
        self._row_off[moved[1:]] = np.cumsum(counts)[:-1]

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

    def _weights(
        self, rows: np.ndarray, tf: np.ndarray, idf: np.float32, norm: np.ndarray
    ) -> np.ndarray:
        """The BM25 contributions of one term to these rows (float32; :meth:`scores` and
        :meth:`top` compute them alike, so their scores are the same to the bit)."""
        out: np.ndarray = idf * (tf * (self.k1 + 1.0)) / (tf + norm[rows])
        return out

    def _stats(self, tids: list[int], size: int) -> tuple[list[np.float32], np.ndarray]:
        """Each term's idf, and every row's length norm ``k1 * (1 - b + b * len / avgdl)``
        (below ``size``; kept until the next write: a search's two passes, and the searches
        between writes, share it; 4 bytes a row)."""
        n_docs = float(self.live)
        idfs = [
            np.float32(np.log1p((n_docs - int(self._df[t]) + 0.5) / (int(self._df[t]) + 0.5)))
            for t in tids
        ]
        avgdl = max(self.total_len / n_docs, 1e-9)
        key = (self._writes, size, avgdl)
        if self._norm_key != key:
            k1, b = self.k1, self.b
            self._norm = k1 * (1.0 - b + b * (self.doc_len[:size] / avgdl))
            self._norm_key = key
        return idfs, self._norm

    def _query(self, terms: list[str]) -> list[int]:
        """The ids of the query's terms found in a live document, rarest first (then by
        id): the order both :meth:`scores` and :meth:`top` add their scores in, so the
        float32 sums are the same to the bit."""
        tids = [t for t in self._ids(terms) if self._df[t] > 0]
        return sorted(tids, key=lambda t: (int(self._df[t]), t))

    def scores(self, terms: list[str], size: int) -> np.ndarray | None:
        """BM25 score of every row below ``size`` (0 where no term matches); None when no
        query term occurs in any live document. Exhaustive: every posting of every term."""
        tids = self._query(terms)
        if not tids or self.live <= 0:
            return None
        idfs, norm = self._stats(tids, size)
        out = np.zeros(size, dtype=np.float32)
        for tid, idf in zip(tids, idfs, strict=True):
            rows, tf = self.postings(tid)
            inside = rows < size
            if not inside.all():
                rows, tf = rows[inside], tf[inside]
            out[rows] += self._weights(rows, tf, idf, norm)
        return out

    def _pieces(self, tids: list[int], size: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Each term's postings below ``size`` as (rows, tfs) pieces with ascending rows:
        its frozen slice (a view: nothing copied, mapped pages stay mapped) and its tail
        postings, if any."""
        pieces: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for tid in tids:
            if tid + 1 < len(self._starts):
                lo, hi = int(self._starts[tid]), int(self._starts[tid + 1])
                rows = self._rows[lo:hi]
                # rows ascend within a term (a needle of their dtype: no copy of them)
                hi = lo + int(np.searchsorted(rows, rows.dtype.type(min(size, 2**31 - 1))))
                pieces.append([(self._rows[lo:hi], self._tfs[lo:hi])])
            else:
                pieces.append([])
        if self._tail_tid.size:  # one compare a term (np.isin is several times slower)
            tail = self._tail_tid.view
            for term, tid in enumerate(tids):
                hit = np.flatnonzero(tail == tid)
                if len(hit):
                    rows, tfs = self._tail_row.view[hit], self._tail_tf.view[hit]
                    inside = rows < size
                    pieces[term].append((rows[inside], tfs[inside]))
        return pieces

    def top(
        self, terms: list[str], size: int, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The ``k`` best rows below ``size`` (among those ``mask`` keeps, if given) with a
        score above 0, and their scores: score descending, then row ascending. The same rows
        and scores (to the bit) as sorting :meth:`scores` gives, without reading every
        posting of the common terms (MaxScore pruning):

        Terms are scored rarest first, each over all its postings, until the *bounds* of the
        terms left (a term's bound: its idf times BM25's saturation at its largest tf in the
        shortest possible document) sum below the *floor*, the ``k``-th best score so far:
        a lower bound of the final ``k``-th best, as scores only grow. A row no scored term
        matched can then not reach the best ``k``. The terms left are added to the other
        rows, the *candidates*, only (looked up in their sorted postings), and a candidate
        whose score plus the bounds left is below the floor is dropped. Terms are added in
        the same order as :meth:`scores` adds them, so a candidate's score is the same float.
        None when no term occurs in a live document."""
        tids = self._query(terms)
        self.pruned = 0
        if not tids or self.live <= 0 or k <= 0:
            return None
        idfs, norm = self._stats(tids, size)
        pieces = self._pieces(tids, size)
        counts = [sum(len(r) for r, _ in p) for p in pieces]
        rest = [0.0] * (len(tids) + 1)  # rest[i]: the bounds of terms i, i + 1, ... summed
        for i in range(len(tids) - 1, -1, -1):
            rest[i] = rest[i + 1] + _bound(
                float(idfs[i]), self._max_tf(pieces[i], counts[i], size), self.k1, self.b
            )
        acc = np.zeros(size, dtype=np.float32)
        cand: np.ndarray | None = None
        floor, term, left = 0.0, 0, sum(counts)  # left: postings of the terms not scanned
        while term < len(tids):
            # Can the floor be above the bounds left? Not while they are above the bounds
            # scanned (the best score so far). A check is a pass over the rows (~0.5 ms at
            # 1M): tried only with enough postings left to skip.
            if term and rest[term] < rest[0] - rest[term] and left * 32 >= size:
                # a floor above this leaves out every row no term scanned so far matched
                above = acc > rest[term] * (1.0 + 2.0 * _SLACK)
                if mask is not None:
                    above &= mask[:size]
                if np.count_nonzero(above) >= k:
                    floor = _kth(acc[np.flatnonzero(above)], k)
                    cand = _rows_above(acc, floor - _SLACK * floor - rest[term], mask)
                    break
            for rows, tfs in pieces[term]:
                acc[rows] += self._weights(rows, tfs, idfs[term], norm)
            left -= counts[term]
            term += 1
        if cand is None:  # every term scanned: the rows they matched
            if sum(counts) * 16 < size:
                parts = [rows for p in pieces for rows, _ in p]
                cand = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int32)
                if mask is not None and len(cand):
                    cand = cand[mask[cand]]
            else:
                cand = _rows_above(acc, 0.0, mask)
        else:  # the terms left only on the candidates
            self.pruned = len(tids) - term
            for at in range(term, len(tids)):
                for rows, tfs in pieces[at]:
                    if len(cand) * 4 < len(rows):  # a lookup costs ~4 postings' scoring
                        where, hit = _lookup(rows, cand)
                        found = cand[hit]
                        acc[found] += self._weights(found, tfs[where[hit]], idfs[at], norm)
                    else:  # nearly as many candidates as postings: all of them
                        acc[rows] += self._weights(rows, tfs, idfs[at], norm)
                floor = max(floor, _kth(acc[cand], k))
                cand = cand[acc[cand] + rest[at + 1] >= floor - _SLACK * floor]
        if len(cand) > k:  # every candidate has all its terms added: exact scores
            cand = cand[acc[cand] >= _kth(acc[cand], k)]
        best = np.lexsort((cand, -acc[cand]))[:k]
        return cand[best], acc[cand[best]]

    @staticmethod
    def _max_tf(pieces: list[tuple[np.ndarray, np.ndarray]], count: int, size: int) -> float:
        """A term's largest tf, for its bound (inf for a term in over half the rows: not
        read, BM25's saturation bounds it and its idf is below ln 2 anyway)."""
        if count * 2 > size:
            return float("inf")
        return max((float(tfs.max()) for _, tfs in pieces if len(tfs)), default=0.0)

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
            self._norm,
        )
        return int(sum(a.nbytes for a in arrays)) + self._terms.nbytes

    @property
    def vocabulary(self) -> int:
        return len(self._terms)


def _bound(idf: float, max_tf: float, k1: float, b: float) -> float:
    """The largest BM25 contribution a term can make: its idf times the saturation at its
    largest tf in the shortest document (length 0: the norm's floor ``k1 * (1 - b)``)."""
    if max_tf == float("inf"):
        return idf * (k1 + 1.0)
    return idf * (k1 + 1.0) * max_tf / (max_tf + k1 * (1.0 - b))


def _rows_above(acc: np.ndarray, low: float, mask: np.ndarray | None) -> np.ndarray:
    """The rows (ascending, int32 as the postings) whose score is at least ``low`` (above
    0 if ``low`` is 0), among those ``mask`` keeps."""
    chosen = acc >= low if low > 0 else acc > 0
    if mask is not None:
        chosen &= mask[: len(acc)]
    return np.flatnonzero(chosen).astype(np.int32)


def _kth(values: np.ndarray, k: int) -> float:
    """The ``k``-th largest of ``values`` (at least ``k`` of them)."""
    return float(np.partition(values, len(values) - k)[len(values) - k])


def _lookup(rows: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` is in the ascending ``rows`` and whether it is there."""
    if not len(rows):
        return np.zeros(len(wanted), dtype=np.intp), np.zeros(len(wanted), dtype=bool)
    wanted = wanted.astype(rows.dtype, copy=False)  # else searchsorted copies ``rows``
    where = np.minimum(np.searchsorted(rows, wanted), len(rows) - 1)
    return where, rows[where] == wanted
