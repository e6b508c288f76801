"""Cosine search over int8-quantised vectors, rescored exactly (one row per index row).

Vectors are L2-normalised, so cosine similarity is a dot product. Each row is kept in RAM
as int8 codes with one float32 scale (``code = round(v / max|v| * 127)``): 388 bytes a row
instead of 1,536. A search scores every selected row on the codes (in blocks, so the
float32 copy of a block stays small), takes the best ``limit * RESCORE_FACTOR`` (at least
``RESCORE_MIN``) candidates and rescores those with the exact float32 vectors, so the
returned similarities are exact and the order of the top hits is exact unless the
quantisation error (about 0.003 in cosine) moves a true hit below all those candidates.

The exact vectors live in a :class:`FloatRows` store: in RAM (:class:`RamRows`, the memory
backend and tests) or in a file read back with ``pread`` (:class:`FileRows`, DuckDB), which
the page cache holds rather than the process.

Not thread-safe by itself: :class:`~.index.SearchIndex` holds the lock.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

from session_buddy.errors import DimensionMismatch

#: Below this fraction of rows selected, gather the rows instead of scoring them all.
GATHER_FRACTION = 0.3
#: Candidates rescored exactly: ``limit * RESCORE_FACTOR``, at least ``RESCORE_MIN``.
RESCORE_FACTOR = 4
RESCORE_MIN = 64
#: Rows scored per block on the codes (a float32 copy of 8,192 x 384 is 12 MB).
BLOCK = 8192


class FloatRows(Protocol):
    """Exact float32 vectors by row."""

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None: ...
    def read(self, rows: np.ndarray) -> np.ndarray: ...
    def remap(self, keep_rows: np.ndarray) -> None: ...
    @property
    def nbytes(self) -> int: ...
    def close(self) -> None: ...


class RamRows:
    """Exact vectors in a growable float32 matrix."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.matrix = np.zeros((0, dimension), dtype=np.float32)

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        need = int(rows.max()) + 1
        if need > len(self.matrix):
            grown = np.zeros((max(need, len(self.matrix) * 3 // 2), self.dimension), np.float32)
            grown[: len(self.matrix)] = self.matrix
            self.matrix = grown
        self.matrix[rows] = vectors

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows]

    def remap(self, keep_rows: np.ndarray) -> None:
        have = keep_rows[keep_rows < len(self.matrix)]
        self.matrix = self.matrix[have].copy()

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes)

    def close(self) -> None:
        self.matrix = np.zeros((0, self.dimension), dtype=np.float32)


class FileRows:
    """Exact vectors in a file (row ``r`` at offset ``r * dimension * 4``), written and read
    with ``pwrite``/``pread``: the process holds no copy, the OS caches what is read often.

    Without ``path`` the file is a temporary one in ``folder``, removed as soon as it is
    created (it lives as long as its descriptor, so nothing is left behind after a crash).
    With ``path`` it persists beside the store, for an index snapshot (``keep``: reuse what
    it holds; else it starts empty)."""

    def __init__(
        self, dimension: int, folder: Path, path: Path | None = None, *, keep: bool = False
    ) -> None:
        self.dimension = dimension
        self.row_bytes = dimension * 4
        self.folder = folder
        self.path = path
        self._fresh = ""  # a remap's new file, before it takes ``path``
        if path is None:
            self.fd = self._open()
            self.rows = 0  # rows the file covers
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if not keep:
                os.ftruncate(self.fd, 0)
            self.rows = os.fstat(self.fd).st_size // self.row_bytes

    def _open(self) -> int:
        fd, name = tempfile.mkstemp(prefix=".session-buddy-vectors-", dir=self.folder)
        if self.path is not None:
            self._fresh = name
        else:
            with contextlib.suppress(OSError):  # e.g. Windows: an open file stays
                os.unlink(name)
        return fd

    def sync(self) -> None:
        os.fsync(self.fd)

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(rows) > 1 and bool((np.diff(rows) == 1).all()):
            os.pwrite(self.fd, data.tobytes(), int(rows[0]) * self.row_bytes)
        else:
            for row, vec in zip(rows.tolist(), data, strict=True):
                os.pwrite(self.fd, vec.tobytes(), row * self.row_bytes)
        self.rows = max(self.rows, int(rows.max()) + 1)

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self._read(self.fd, rows)

    def _read(self, fd: int, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.dimension), dtype=np.float32)
        for i, row in enumerate(rows.tolist()):
            data = os.pread(fd, self.row_bytes, row * self.row_bytes)
            if len(data) == self.row_bytes:
                out[i] = np.frombuffer(data, dtype=np.float32)
        return out

    def remap(self, keep_rows: np.ndarray) -> None:
        """Compaction: row ``i`` of the new file is row ``keep_rows[i]`` of the old."""
        old, covered = self.fd, self.rows
        self.fd, self.rows = self._open(), 0
        try:
            for start in range(0, len(keep_rows), BLOCK):
                chunk = keep_rows[start : start + BLOCK]
                chunk = chunk[chunk < covered]
                if len(chunk):
                    self.write(np.arange(start, start + len(chunk)), self._read(old, chunk))
        finally:
            os.close(old)
        if self.path is not None:  # the new file takes the persistent name
            os.replace(self._fresh, self.path)

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and per-row scales of float32 rows (``v ~= codes * scale``)."""
    peak = np.abs(vectors).max(axis=1)
    scales = (peak / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
    codes = np.rint(vectors / safe[:, None]).clip(-127, 127).astype(np.int8)
    return codes, scales


class VectorIndex:
    def __init__(self, dimension: int, exact: FloatRows | None = None) -> None:
        self.dimension = dimension
        self.codes = np.zeros((0, dimension), dtype=np.int8)
        self.scales = np.zeros(0, dtype=np.float32)
        self.present = np.zeros(0, dtype=bool)
        self.exact: FloatRows = exact if exact is not None else RamRows(dimension)
        self.count = 0

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > len(self.present):
            present = np.zeros(capacity, dtype=bool)
            present[: len(self.present)] = self.present
            self.present = present
        if self.count and capacity > len(self.codes):
            self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        codes = np.zeros((capacity, self.dimension), dtype=np.int8)
        codes[: len(self.codes)] = self.codes
        scales = np.zeros(capacity, dtype=np.float32)
        scales[: len(self.scales)] = self.scales
        self.codes, self.scales = codes, scales

    def check(self, vector: np.ndarray) -> np.ndarray:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dimension:
            raise DimensionMismatch(
                f"a {vec.shape[0]}-dimensional vector was given but the store holds "
                f"{self.dimension}-dimensional vectors; use the embedding model the store "
                "was built with, or re-embed the store"
            )
        return vec

    def set(self, row: int, vector: np.ndarray | None) -> None:
        if vector is None:
            self.clear(row)
            return
        self.set_many(np.asarray([row]), self.check(vector)[None, :])

    def set_many(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        if len(rows) == 0:
            return
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            self.check(vectors[0])
        vectors = np.asarray(vectors, dtype=np.float32)
        need = int(rows.max()) + 1
        if len(self.codes) < need:
            self._grow(max(len(self.present), need))
        self.codes[rows], self.scales[rows] = quantise(vectors)
        self.exact.write(rows, vectors)
        self.count += int((~self.present[rows]).sum())
        self.present[rows] = True

    def clear(self, row: int) -> None:
        if row < len(self.present) and self.present[row]:
            self.present[row] = False
            self.count -= 1

    def remap(self, keep_rows: np.ndarray, capacity: int) -> None:
        present = np.zeros(capacity, dtype=bool)
        present[: len(keep_rows)] = self.present[keep_rows]
        self.present = present
        if len(self.codes):
            have = keep_rows[keep_rows < len(self.codes)]
            codes = np.zeros((capacity, self.dimension), dtype=np.int8)
            codes[: len(have)] = self.codes[have]
            scales = np.zeros(capacity, dtype=np.float32)
            scales[: len(have)] = self.scales[have]
            self.codes, self.scales = codes, scales
            self.exact.remap(keep_rows)
        self.count = int(present.sum())

    def vector(self, row: int) -> np.ndarray | None:
        """The exact vector of a row (a copy), or None."""
        if row >= len(self.present) or not self.present[row]:
            return None
        return self.exact.read(np.asarray([row]))[0].copy()

    @property
    def nbytes(self) -> int:
        """Bytes the process holds for the vectors (codes, scales, flags, RAM rows)."""
        own = self.codes.nbytes + self.scales.nbytes + self.present.nbytes
        return int(own + (self.exact.nbytes if isinstance(self.exact, RamRows) else 0))

    @property
    def exact_file_bytes(self) -> int:
        return self.exact.nbytes if isinstance(self.exact, FileRows) else 0

    def approximate(self, vector: np.ndarray, rows: np.ndarray | None, size: int) -> np.ndarray:
        """Similarities on the codes: of ``rows``, or of every row below ``size``."""
        vec = self.check(vector)
        count = size if rows is None else len(rows)
        out = np.empty(count, dtype=np.float32)
        for start in range(0, count, BLOCK):
            stop = min(count, start + BLOCK)
            if rows is None:
                block, scale = self.codes[start:stop], self.scales[start:stop]
            else:
                chosen = rows[start:stop]
                block, scale = self.codes[chosen], self.scales[chosen]
            out[start:stop] = _dot(block.astype(np.float32), vec) * scale
        return out

    def scores(
        self, vector: np.ndarray, mask: np.ndarray, limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, exact cosine) of the best candidates among the rows selected by ``mask``
        (length = rows in use) that have a vector: all of them when ``limit`` is None, else
        the ``limit * RESCORE_FACTOR`` (at least ``RESCORE_MIN``) best on the codes."""
        vec = self.check(vector)
        size = len(mask)
        selected = mask & self.present[:size]
        chosen = int(selected.sum())
        if chosen == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = np.flatnonzero(selected)
        if chosen < GATHER_FRACTION * size:
            approx = self.approximate(vec, rows, size)
        else:
            approx = self.approximate(vec, None, size)[rows]
        keep = chosen if limit is None else max(limit * RESCORE_FACTOR, RESCORE_MIN)
        if keep < chosen:
            part = np.argpartition(-approx, keep - 1)[:keep]
            rows = rows[np.sort(part)]
        return rows, _dot(self.exact.read(rows), vec)

    def close(self) -> None:
        self.exact.close()


def _dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Row-wise dot products. ``einsum`` runs numpy's own SIMD loop on one core: on a busy
    2-core machine OpenBLAS's threaded sgemv was 2-3x slower at 100k rows and far less
    predictable (p95 up to 48 ms against 25 ms), and it needs no thread-pool tuning."""
    return np.einsum("ij,j->i", matrix, vector)
