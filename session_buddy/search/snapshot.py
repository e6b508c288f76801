"""A :class:`~.index.SearchIndex` written to a file and read back, so a service starts
without re-reading and re-tokenising every row of its store.

The snapshot is one file (a JSON header, then raw arrays): the index's numpy arrays as they are (row
metadata, the vectors' binary codes, the keyword postings merged into their CSR arrays, the ids
as :class:`~.ids.Ids` arrays (16-byte UUIDs, their sorted order), the vocabulary as
:class:`~.strings.Strings` arrays: bytes, offsets, sorted hashes) and
its few other strings (metadata values, tags) as JSON, plus a ``token`` the store
keeps too (see ``adapters/storage/duckdb.py``: the store forgets its token as soon as it is
opened, so a snapshot is used only if nothing wrote to the store since it was written).
The exact float32 vectors are not in it: they are the persistent vector file beside it
(:class:`~.vector.FileRows`), kept up to date by every write.

The big read-mostly arrays (the postings and the rows' term ids, :data:`MAPPED`) are mapped
from the file copy-on-write, not read: at 1M items that is ~250 MB the process holds only as
far as searches touch it. Loading gives the same index as a rebuild from the rows (tests check searches agree). A
snapshot also records the terms the tokeniser makes of a probe text: after a change of the
tokeniser it no longer matches, and the index is rebuilt with the new terms.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from session_buddy.search.ids import Ids
from session_buddy.search.index import SearchIndex, _Codes
from session_buddy.search.strings import Strings
from session_buddy.search.tokens import tokenize
from session_buddy.search.vector import FileRows

FORMAT = 5  # 5: ids as 16-byte UUIDs (search/ids.py); 4: binary (sign-bit) vector codes
#: Older formats still read: 4 held the ids as strings (converted when loaded).
READS = frozenset({4, FORMAT})
#: Terms of a probe text: a snapshot made by another tokeniser (different terms) is stale.
PROBE = "ERR_CONN_4021 HttpServerError src/api/routes.py The tests were failing, a café 42"
MAGIC = b"SBINDEX\x00"
_KEYWORD_ARRAYS = ("_df", "_starts", "_rows", "_tfs", "_row_off", "_row_n", "doc_len")


def save(index: SearchIndex, path: Path, token: str) -> None:
    """Write ``index`` to ``path`` (atomically: a temporary file, then a rename)."""
    with index.lock:
        kw = index.keyword
        kw._merge()  # the tail folded in: the file holds CSR arrays only
        size = index._size
        arrays: dict[str, np.ndarray] = {
            name: getattr(index, name)[:size] for name in index._COLUMNS
        }
        arrays.update({f"kw{name}": getattr(kw, name) for name in _KEYWORD_ARRAYS})
        arrays["kw_row_tids"] = kw.row_tids_all()
        for prefix, table in (("ids", index._ids), ("terms", kw._terms)):
            arrays.update({f"{prefix}_{name}": a for name, a in table.arrays().items()})
        arrays.update(index.vectors.arrays(size))  # "codes", "present"
        strings = {
            "format": FORMAT,
            "token": token,
            "tokenizer": tokenize(PROBE),
            "dimension": index.dimension,
            "size": size,
            "dead": index._dead,
            "live": kw.live,
            "total_len": kw.total_len,
            "items": index._items,
            "codes": {
                name: getattr(index, f"_{name}").values[:-1]
                for name in ("projects", "sessions", "kinds", "roles", "authors")
            },
            "tags": [[row, list(tags)] for row, tags in index._row_tags.items()],
        }
        arrays["strings"] = np.frombuffer(json.dumps(strings).encode("utf-8"), dtype=np.uint8)
        _write(path, arrays)


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A header line (JSON: each array's dtype, shape and offset), then the raw arrays, each
    at a 64-byte aligned offset: read back with one ``readinto`` per array, no zip or CRC."""
    layout: dict[str, Any] = {}
    offset = 0
    for name, array in arrays.items():
        layout[name] = [array.dtype.str, list(array.shape), offset]
        offset += -(-array.nbytes // 64) * 64
    header = (json.dumps(layout) + "\n").encode("utf-8")
    base = -(-(len(header) + 16) // 64) * 64
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(MAGIC + f"{base:08d}".encode() + header)
            for name, array in arrays.items():
                handle.seek(base + layout[name][2])
                handle.write(np.ascontiguousarray(array).data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # a full disk, an error mid-write: leave no partial file behind
        temporary.unlink(missing_ok=True)
        raise


#: Arrays mapped from the file (copy-on-write) instead of read: the keyword postings and the
#: rows' term ids, the bulk of the index, which searches read only a term's slice of and
#: writes never touch in place (new postings go to the tail, a merge makes new arrays, the
#: term offsets too); the vocabulary (its bytes, offsets, sorted hashes: ~32 MB at 1M
#: items), of which a search reads the pages its terms' lookups touch (new terms go to a
#: tail, a fold makes new hash arrays); and the ids' sorted order (a fold makes a new one).
MAPPED = frozenset(
    {
        *("kw_rows", "kw_tfs", "kw_row_tids", "kw_starts"),
        *("terms_blob", "terms_starts", "terms_keys", "terms_nums"),
        "ids_sorted",
    }
)


#: The kinds of dtype a snapshot holds (bool, signed and unsigned ints, floats): never an
#: object (pickled) or structured dtype, whose bytes would be taken as pointers.
_KINDS = frozenset("biuf")


def _declared(entry: object, base: int, end: int) -> tuple[np.dtype[Any], list[int], int]:
    """An array's (dtype, shape, start) from its header entry, checked before anything is
    allocated: a plain numeric dtype, whole non-negative sizes, and bytes that lie inside
    the file (a damaged header must not ask for gigabytes). ValueError otherwise."""
    if not (isinstance(entry, list) and len(entry) == 3):
        raise ValueError("the index snapshot's header is damaged")
    dtype, shape, offset = entry
    try:
        kind = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        kind = None
    if kind is None or kind.kind not in _KINDS or kind.hasobject or kind.fields is not None:
        raise ValueError(f"the index snapshot declares an unsupported dtype {dtype!r}")
    if not (
        isinstance(shape, list)
        and all(type(n) is int and n >= 0 for n in shape)
        and type(offset) is int
        and offset >= 0
    ):
        raise ValueError("the index snapshot's header is damaged")
    nbytes = kind.itemsize * math.prod(shape)  # Python ints: no overflow
    if base + offset + nbytes > end:
        raise ValueError("the index snapshot is truncated")
    return kind, shape, base + offset


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as handle:
        if handle.read(8) != MAGIC:
            raise ValueError("not an index snapshot")
        base = int(handle.read(8))
        layout = json.loads(handle.readline())
        if not isinstance(layout, dict):
            raise ValueError("the index snapshot's header is damaged")
        end = os.fstat(handle.fileno()).st_size
        if base < handle.tell():
            raise ValueError("the index snapshot's header is damaged")
        declared = {name: _declared(entry, base, end) for name, entry in layout.items()}
        out: dict[str, np.ndarray] = {}
        for name, (dtype, shape, start) in declared.items():
            if name in MAPPED and math.prod(shape) > 0:
                out[name] = _mapped(handle.fileno(), start, dtype, shape)
                continue
            array = np.empty(shape, dtype=dtype)
            if array.nbytes:
                handle.seek(start)
                if handle.readinto(memoryview(array.reshape(-1)).cast("B")) != array.nbytes:
                    raise ValueError("the index snapshot is truncated")
            out[name] = array
        return out


def _mapped(fd: int, start: int, dtype: np.dtype[Any], shape: list[int]) -> np.ndarray:
    """The array of this dtype and shape at ``start`` of the file, mapped copy-on-write:
    pages are read when first touched and count in the process only then; writing one
    copies that page. One mapping per array, so the old postings are unmapped as soon as a
    merge replaces them."""
    count = math.prod(shape)
    page = start - start % mmap.ALLOCATIONGRANULARITY
    mapping = mmap.mmap(
        fd, start - page + count * dtype.itemsize, offset=page, access=mmap.ACCESS_COPY
    )
    flat = np.frombuffer(mapping, dtype=dtype, count=count, offset=start - page)
    return flat.reshape(shape)


def load(path: Path, token: str, dimension: int, vectors: FileRows) -> SearchIndex | None:
    """The index in ``path`` if it was written with ``token`` for vectors of this
    dimension (its exact vectors in ``vectors``), else None."""
    try:
        arrays = _read(path)
        strings = json.loads(arrays.pop("strings").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError):
        return None
    if (
        not isinstance(strings, dict)
        or strings.get("format") not in READS
        or strings.get("token") != token
        or strings.get("dimension") != dimension
        or strings.get("tokenizer") != tokenize(PROBE)
    ):
        return None
    with_vectors = np.flatnonzero(arrays["present"])
    if len(with_vectors) and vectors.rows <= int(with_vectors[-1]):
        return None  # the vector file is shorter than the snapshot needs
    return _build(strings, arrays, dimension, vectors)


def _build(
    strings: dict[str, Any], arrays: dict[str, np.ndarray], dimension: int, vectors: FileRows
) -> SearchIndex:
    index = SearchIndex(dimension, exact=vectors)
    size = int(strings["size"])
    capacity = max(size + size // 4, 1024)
    for name in index._COLUMNS:
        column = np.zeros(capacity, dtype=arrays[name].dtype)
        column[:size] = arrays[name]
        setattr(index, name, column)
    index._size, index._dead = size, int(strings["dead"])
    index._items = int(strings["items"])

    def part(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) + 1 :]: a for k, a in arrays.items() if k.startswith(prefix + "_")}

    if strings["format"] == 4:  # the ids as strings
        old = Strings()
        old.restore(part("ids"))
        index._ids = Ids.of_strings(old)
    else:
        index._ids.restore(part("ids"))
    index.keyword._terms.restore(part("terms"))
    for name, values in strings["codes"].items():
        codes = _Codes()
        codes.values = [*values, None]
        codes.codes = {value: i for i, value in enumerate(values)}
        setattr(index, f"_{name}", codes)
    for row, tags in strings["tags"]:
        index._set_tags_locked(int(row), tags)
    kw = index.keyword
    for name in _KEYWORD_ARRAYS:
        setattr(kw, name, arrays[f"kw{name}"])
    kw.adopt_row_tids(arrays["kw_row_tids"])
    kw.live, kw.total_len = int(strings["live"]), float(strings["total_len"])
    kw.ensure_capacity(capacity)
    index.vectors.restore(arrays, capacity)
    return index
