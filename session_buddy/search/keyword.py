"""Incremental BM25 over row numbers (the rows of :class:`~.index.SearchIndex`).

Each term keeps a postings list (rows and term frequencies) in growable ``array`` buffers,
so adding a document is a few appends: it is searchable at once, nothing is rebuilt on
query. A deleted row is only marked dead (its postings stay until the index compacts) but
the collection statistics (document frequency, live count, total length) are corrected at
once, so scores stay exact. Scores use Lucene's BM25 (``idf = ln(1 + (N - df + .5)/(df + .5))``).

Not thread-safe by itself: :class:`~.index.SearchIndex` holds the lock.
"""

from __future__ import annotations

from array import array
from collections import Counter

import numpy as np

K1 = 1.2
B = 0.75


class KeywordIndex:
    def __init__(self, k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self._term_ids: dict[str, int] = {}
        self._rows: list[array[int]] = []
        self._tfs: list[array[float]] = []
        self._df: list[int] = []
        #: row -> the distinct term ids of that row (to correct df on delete)
        self._row_terms: dict[int, array[int]] = {}
        self.doc_len = np.zeros(0, dtype=np.float32)
        self.live = 0
        self.total_len = 0.0

    # -- writes ---------------------------------------------------------------------------

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > len(self.doc_len):
            grown = np.zeros(capacity, dtype=np.float32)
            grown[: len(self.doc_len)] = self.doc_len
            self.doc_len = grown

    def add(self, row: int, terms: list[str]) -> None:
        """Index ``row`` with its terms (repeats count). ``row`` must be new."""
        counts = Counter(terms)
        ids = array("i")
        term_ids = self._term_ids
        for term, tf in counts.items():
            tid = term_ids.get(term)
            if tid is None:
                tid = len(self._rows)
                term_ids[term] = tid
                self._rows.append(array("i"))
                self._tfs.append(array("f"))
                self._df.append(0)
            self._rows[tid].append(row)
            self._tfs[tid].append(tf)
            self._df[tid] += 1
            ids.append(tid)
        self._row_terms[row] = ids
        self.doc_len[row] = len(terms)
        self.live += 1
        self.total_len += len(terms)

    def add_many(self, first_row: int, docs: list[list[str]]) -> None:
        """Index rows ``first_row, first_row + 1, ...`` (all new) in one vectorised pass:
        the same result as calling :meth:`add` for each, several times faster in bulk."""
        if not docs:
            return
        term_ids = self._term_ids
        flat: list[str] = []
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        for doc in docs:
            flat.extend(doc)
        for term in dict.fromkeys(flat):
            if term not in term_ids:
                term_ids[term] = len(self._rows)
                self._rows.append(array("i"))
                self._tfs.append(array("f"))
                self._df.append(0)
        vocab = len(self._rows)
        tids = np.fromiter((term_ids[t] for t in flat), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(first_row, first_row + len(docs), dtype=np.int64), lengths)
        keys, tf = np.unique(rows * vocab + tids, return_counts=True)  # sorted by row, tid
        key_rows = (keys // vocab).astype(np.int32)
        key_tids = keys % vocab
        # per row: its distinct term ids
        bounds = np.searchsorted(key_rows, np.arange(first_row, first_row + len(docs) + 1))
        tid32 = key_tids.astype(np.int32)
        for i in range(len(docs)):
            self._row_terms[first_row + i] = array("i", tid32[bounds[i] : bounds[i + 1]].tobytes())
        # per term: append its postings (rows ascending, as add() would)
        order = np.argsort(key_tids, kind="stable")
        sorted_tids = key_tids[order]
        sorted_rows = key_rows[order]
        sorted_tf = tf[order].astype(np.float32)
        unique_tids, starts, counts = np.unique(sorted_tids, return_index=True, return_counts=True)
        for tid, start, count in zip(
            unique_tids.tolist(), starts.tolist(), counts.tolist(), strict=True
        ):
            self._rows[tid].frombytes(sorted_rows[start : start + count].tobytes())
            self._tfs[tid].frombytes(sorted_tf[start : start + count].tobytes())
            self._df[tid] += count
        self.doc_len[first_row : first_row + len(docs)] = lengths
        self.live += len(docs)
        self.total_len += float(lengths.sum())

    def remove(self, row: int) -> None:
        ids = self._row_terms.pop(row, None)
        if ids is None:
            return
        for tid in ids:
            self._df[tid] -= 1
        self.live -= 1
        self.total_len -= float(self.doc_len[row])

    def remap(self, new_row: np.ndarray, alive: np.ndarray, count: int) -> None:
        """Compaction: keep postings of live rows only, renumbered by ``new_row``."""
        for tid in range(len(self._rows)):
            rows = np.frombuffer(self._rows[tid], dtype=np.int32)
            if len(rows) == 0:
                continue
            tfs = np.frombuffer(self._tfs[tid], dtype=np.float32)
            keep = alive[rows]
            new_rows = array("i", new_row[rows[keep]].astype(np.int32).tobytes())
            new_tfs = array("f", tfs[keep].tobytes())
            del rows, tfs  # release the buffers before replacing them
            self._rows[tid] = new_rows
            self._tfs[tid] = new_tfs
        self._row_terms = {
            int(new_row[row]): ids for row, ids in self._row_terms.items() if alive[row]
        }
        old = self.doc_len
        self.doc_len = np.zeros(max(count, len(old)), dtype=np.float32)
        live_rows = np.flatnonzero(alive[: len(new_row)])
        self.doc_len[new_row[live_rows]] = old[live_rows]

    # -- reads ----------------------------------------------------------------------------

    def has_terms(self, terms: list[str]) -> bool:
        return any(self._df[t] > 0 for t in self._ids(terms))

    def _ids(self, terms: list[str]) -> list[int]:
        return [tid for t in dict.fromkeys(terms) if (tid := self._term_ids.get(t)) is not None]

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
            rows = np.array(self._rows[tid], dtype=np.int32)
            tf = np.array(self._tfs[tid], dtype=np.float32)
            df = self._df[tid]
            idf = np.float32(np.log1p((n_docs - df + 0.5) / (df + 0.5)))
            norm = k1 * (1.0 - b + b * (self.doc_len[rows] / avgdl))
            out[rows] += idf * (tf * (k1 + 1.0)) / (tf + norm)
        return out

    @property
    def nbytes(self) -> int:
        """An estimate of the bytes held: postings buffers plus Python object overheads."""
        buffers = (
            sum(len(r) for r in self._rows) * 8 + sum(len(t) for t in self._row_terms.values()) * 4
        )
        per_term = 2 * 64 + 100 + 60 + 28  # two arrays, dict entry + key, df int
        per_row = 64 + 100
        return (
            buffers
            + len(self._rows) * per_term
            + len(self._row_terms) * per_row
            + self.doc_len.nbytes
        )

    @property
    def vocabulary(self) -> int:
        return len(self._term_ids)
