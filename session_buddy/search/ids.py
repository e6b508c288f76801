"""Item ids (row number -> id, id -> row) as 16-byte binary UUIDs in numpy arrays.

Every id the stores make is a UUID in its canonical text form (``str(uuid.uuid4())``: 36
lowercase characters). :class:`Ids` keeps such an id as its 128 bits, two ``uint64`` a row
(``hi``, ``lo``), and the lookup id -> row as one ``int32`` array, the rows of those ids
sorted by (``hi``, ``lo``) and searched by bisection: 20 bytes a row, where the UTF-8 bytes,
their offsets and a sorted hash array with its row numbers (:class:`~.strings.Strings`)
took 56 (at 1M items 19 MB instead of 53). Any other id (an import's, a test's, an
uppercase UUID, which would not come back as it was given) is kept as text in a
:class:`~.strings.Strings` of its own beside the row it names.

Ids added since the last :meth:`Ids.fold` are in a small dict, folded into the sorted array
in one batch (at an eighth of it, before a snapshot). A row's id never changes; the index
marks removed rows dead itself (``valid``), and an id may name several rows (dead ones, and
at most one live): lookups skip the rows ``valid`` does not mark.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from session_buddy.search import strings as _strings
from session_buddy.search.strings import Growable, Strings

#: A canonical UUID: what ``str(uuid.UUID(...))`` gives, so it round-trips through 16 bytes.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOW = (1 << 64) - 1
#: Every this many sorted entries, their ``hi`` in a small array searched first (one
#: ``np.searchsorted``), so a lookup bisects only between two of them.
FENCE = 64


def parse(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(which values are canonical UUIDs, their high and low 64 bits, in that order)."""
    match = _UUID.fullmatch
    is_uuid = np.fromiter(
        (len(v) == 36 and match(v) is not None for v in values), dtype=bool, count=len(values)
    )
    chosen = [values[i].replace("-", "") for i in np.flatnonzero(is_uuid).tolist()]
    words = np.frombuffer(bytes.fromhex("".join(chosen)), dtype=">u8").reshape(-1, 2)
    return is_uuid, words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def format_uuids(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """The canonical text of these UUIDs."""
    words = np.empty((len(hi), 2), dtype=">u8")
    words[:, 0], words[:, 1] = hi, lo
    h = words.tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, len(h), 32)
    ]


class _Through:
    """``valid`` seen through a map: ``self[i]`` is ``valid[rows[i]]`` (for the other ids'
    :class:`~.strings.Strings`, numbered apart from the rows)."""

    def __init__(self, valid: np.ndarray, rows: np.ndarray) -> None:
        self.valid, self.rows = valid, rows

    def __getitem__(self, i: Any) -> Any:
        return self.valid[self.rows[i]]


#: What :meth:`Ids.find_many` learnt of the values, for :meth:`Ids.add`.
Parsed = tuple[np.ndarray, np.ndarray, np.ndarray]


class Ids:
    def __init__(self) -> None:
        self._hi = Growable(np.uint64)  # per row; 0 for the rows of other ids
        self._lo = Growable(np.uint64)
        self._sorted = np.zeros(0, dtype=np.int32)  # UUID rows, by (hi, lo)
        self._fence = np.zeros(0, dtype=np.uint64)  # hi of every FENCE-th of them
        self._recent: dict[str, int] = {}  # UUID -> row, since the last fold
        self._new_rows = Growable(np.int32)  # their rows, to fold
        self._other = Strings()  # the other ids, numbered in the order of their rows
        self._other_rows = Growable(np.int64)  # the row of each (ascending)

    def __len__(self) -> int:
        return self._hi.size

    # -- writes ---------------------------------------------------------------------------

    def add(self, values: Sequence[str], parsed: Parsed | None = None) -> int:
        """Give the next rows these ids (in order); the first one's row. ``parsed``: what
        :meth:`find_many` returned for them."""
        first = len(self)
        if not values:
            return first
        is_uuid, hi, lo = parse(values) if parsed is None else parsed
        uuid_at = np.flatnonzero(is_uuid)
        row_hi = np.zeros(len(values), dtype=np.uint64)
        row_lo = np.zeros(len(values), dtype=np.uint64)
        row_hi[uuid_at], row_lo[uuid_at] = hi, lo
        self._hi.extend(row_hi)
        self._lo.extend(row_lo)
        rows = first + uuid_at
        self._new_rows.extend(rows.astype(np.int32))
        recent = self._recent
        for at, row in zip(uuid_at.tolist(), rows.tolist(), strict=True):
            recent[values[at]] = row
        other_at = np.flatnonzero(~is_uuid)
        if len(other_at):
            self._other.add([values[i] for i in other_at.tolist()])
            self._other_rows.extend(first + other_at)
        return first

    def forget(self, value: str) -> None:
        """Drop ``value`` from the recent ids (its row is dead)."""
        self._recent.pop(value, None)
        self._other.forget(value)

    def maybe_fold(self) -> None:
        self._other.maybe_fold()  # the other ids' recent dict, as the UUIDs'
        if self._new_rows.size >= max(_strings.FOLD_MIN, len(self._sorted) // 8):
            self.fold()

    def fold(self) -> None:
        """Move the recent ids into the sorted array."""
        self._other.fold()
        if not self._new_rows.size:
            return
        rows = self._new_rows.view
        hi, lo = self._hi.data[rows], self._lo.data[rows]
        order = np.lexsort((lo, hi))
        rows, hi, lo = rows[order], hi[order], lo[order]
        self._sorted = np.insert(self._sorted, self._lower(hi, lo), rows).astype(np.int32)
        self._set_fence()
        self._recent = {}
        self._new_rows.replace(self._new_rows.view[:0])

    def keep(self, kept: np.ndarray) -> None:
        """Compaction: keep the ids of the rows ``kept`` (ascending), renumbered 0, 1, 2...
        in that order."""
        self.fold()
        new_row = np.full(len(self), -1, dtype=np.int64)
        new_row[kept] = np.arange(len(kept))
        self._hi.replace(self._hi.view[kept])
        self._lo.replace(self._lo.view[kept])
        renumbered = new_row[self._sorted]
        self._sorted = renumbered[renumbered >= 0].astype(np.int32)
        self._set_fence()
        others = new_row[self._other_rows.view]
        stays = np.flatnonzero(others >= 0)
        self._other.keep(stays)
        self._other_rows.replace(others[stays])

    # -- reads ----------------------------------------------------------------------------

    def _set_fence(self) -> None:
        self._fence = self._hi.data[self._sorted[::FENCE]]

    def _bounds(self, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each ``hi``, positions of the sorted array between which its first entry
        not below (hi, any lo) lies: from the fence entries below it to the first above."""
        fence = self._fence
        below = np.searchsorted(fence, hi, side="left").astype(np.int64)
        upto = np.searchsorted(fence, hi, side="right").astype(np.int64)
        low = np.maximum(below - 1, 0) * FENCE
        return low, np.minimum(upto * FENCE, len(self._sorted))

    def _lower(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """For each (hi, lo), the first position of the sorted array not below it."""
        ordered, row_hi, row_lo = self._sorted, self._hi.data, self._lo.data
        low, high = self._bounds(hi)
        active = np.flatnonzero(low < high)
        while len(active):
            mid = (low[active] + high[active]) // 2
            rows = ordered[mid]
            h, q = row_hi[rows], hi[active]
            below = (h < q) | ((h == q) & (row_lo[rows] < lo[active]))
            low[active[below]] = mid[below] + 1
            high[active[~below]] = mid[~below]
            active = active[low[active] < high[active]]
        return low

    def _scan(self, at: int, hi: int, lo: int, valid: np.ndarray | None) -> int:
        """The first row ``valid`` marks among the sorted entries from ``at`` with this
        UUID, or -1."""
        ordered, row_hi, row_lo = self._sorted, self._hi.data, self._lo.data
        while at < len(ordered):
            row = int(ordered[at])
            if int(row_hi[row]) != hi or int(row_lo[row]) != lo:
                return -1
            if valid is None or valid[row]:
                return row
            at += 1
        return -1

    def _other_find(self, values: Sequence[str], valid: np.ndarray | None) -> np.ndarray:
        through = None if valid is None else _Through(valid, self._other_rows.data)
        nums = self._other.find_many(values, through)[0]  # type: ignore[arg-type]
        found = nums >= 0
        nums[found] = self._other_rows.data[nums[found]]
        return nums

    def find(self, value: str, valid: np.ndarray | None = None) -> int | None:
        """The row of ``value`` (among those ``valid`` marks, if given), or None."""
        row = self._recent.get(value)
        if row is not None and (valid is None or valid[row]):
            return row
        if len(value) == 36 and _UUID.fullmatch(value):
            bits = int(value.replace("-", ""), 16)
            found = self._find_uuid(bits >> 64, bits & _LOW, valid)
        elif len(self._other):
            through = None if valid is None else _Through(valid, self._other_rows.data)
            num = self._other.find(value, through)  # type: ignore[arg-type]
            found = -1 if num is None else int(self._other_rows.data[num])
        else:
            found = -1
        return None if found < 0 else found

    def _find_uuid(self, hi: int, lo: int, valid: np.ndarray | None) -> int:
        """:meth:`find` of one UUID in the sorted array (a bisection on scalars between two
        fence entries: a vectorised one costs a few numpy calls a step)."""
        ordered, row_hi, row_lo = self._sorted, self._hi.data, self._lo.data
        key = np.uint64(hi)
        fence = self._fence
        low = max(int(fence.searchsorted(key, side="left")) - 1, 0) * FENCE
        high = min(int(fence.searchsorted(key, side="right")) * FENCE, len(ordered))
        while low < high:
            mid = (low + high) // 2
            row = ordered[mid]
            h = int(row_hi[row])
            if h < hi or (h == hi and int(row_lo[row]) < lo):
                low = mid + 1
            else:
                high = mid
        return self._scan(low, hi, lo, valid)

    def find_many(
        self, values: Sequence[str], valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, Parsed]:
        """:meth:`find` of each value (-1 where absent), with what was parsed of them (for
        :meth:`add`)."""
        parsed = is_uuid, hi, lo = parse(values)
        out = np.full(len(values), -1, dtype=np.int64)
        uuid_at = np.flatnonzero(is_uuid)
        if len(uuid_at):
            recent = self._recent
            rows = np.fromiter(
                (recent.get(values[i], -1) for i in uuid_at.tolist()),
                dtype=np.int64,
                count=len(uuid_at),
            )
            if valid is not None:
                had = np.flatnonzero(rows >= 0)
                rows[had[~valid[rows[had]]]] = -1
            rest = np.flatnonzero(rows < 0)
            if len(rest) and len(self._sorted):
                at = self._lower(hi[rest], lo[rest])
                first = self._sorted[np.minimum(at, len(self._sorted) - 1)]
                same = (at < len(self._sorted)) & (self._hi.data[first] == hi[rest])
                same &= self._lo.data[first] == lo[rest]
                ok = same if valid is None else same & valid[first]
                rows[rest[ok]] = first[ok]
                # the first row of the UUID is dead: look further (it was replaced)
                for j in np.flatnonzero(same & ~ok).tolist():
                    i = int(rest[j])
                    rows[i] = self._scan(int(at[j]), int(hi[i]), int(lo[i]), valid)
            out[uuid_at] = rows
        other_at = np.flatnonzero(~is_uuid)
        if len(other_at) and len(self._other):
            out[other_at] = self._other_find([values[i] for i in other_at.tolist()], valid)
        return out, parsed

    def values(self, rows: np.ndarray) -> list[str]:
        """The ids of these rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = format_uuids(self._hi.data[rows], self._lo.data[rows])
        if self._other_rows.size:
            other_rows = self._other_rows.view
            at = np.minimum(np.searchsorted(other_rows, rows), len(other_rows) - 1)
            other = np.flatnonzero(other_rows[at] == rows)
            if len(other):
                for i, text in zip(other.tolist(), self._other.values(at[other]), strict=True):
                    out[i] = text
        return out

    def value(self, row: int) -> str:
        return self.values(np.asarray([row]))[0]

    # -- snapshot -------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (the recent ids folded in first)."""
        self.fold()
        out = {
            "hi": self._hi.view,
            "lo": self._lo.view,
            "sorted": self._sorted,
            "other_rows": self._other_rows.view,
        }
        out.update({f"other_{k}": a for k, a in self._other.arrays().items()})
        return out

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._hi.replace(arrays["hi"], copy=False)
        self._lo.replace(arrays["lo"], copy=False)
        self._sorted = arrays["sorted"].astype(np.int32, copy=False)
        self._set_fence()
        self._recent = {}
        self._new_rows = Growable(np.int32)
        self._other_rows.replace(arrays["other_rows"], copy=False)
        self._other.restore(
            {k[len("other_") :]: a for k, a in arrays.items() if k.startswith("other_")}
        )

    @classmethod
    def of_strings(cls, table: Strings) -> Ids:
        """The same ids from a :class:`~.strings.Strings` (a snapshot of format 4)."""
        ids = cls()
        for start in range(0, len(table), 65_536):
            ids.add(table.values(np.arange(start, min(start + 65_536, len(table)))))
            ids.fold()
        return ids

    @property
    def nbytes(self) -> int:
        """The arrays' bytes, plus an estimate for the recent ids' dict."""
        arrays = (self._hi.data, self._lo.data, self._sorted, self._fence, self._new_rows.data)
        held = sum(a.nbytes for a in arrays) + self._other_rows.data.nbytes
        return int(held) + len(self._recent) * 160 + self._other.nbytes
