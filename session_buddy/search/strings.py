"""Strings numbered 0, 1, 2... held in numpy arrays, with a lookup string -> number.

The vocabulary of :class:`~.keyword.KeywordIndex` (number = term id; and the item ids
that are not UUIDs, :mod:`.ids`) are kept this way, not as a Python
``str`` and a dict entry each: at 1M items those were ~300 MB of Python objects (1M ids,
1.2M terms) and most of a snapshot's load time (building the dicts again).

- the strings' UTF-8 bytes, concatenated (``blob``), and where each one starts (``starts``,
  one more than there are strings);
- the lookup: a sorted array of stable 64-bit hashes (BLAKE2b, the same in every process,
  so a snapshot keeps it) beside the number of each, searched with ``np.searchsorted``;
  every match is checked against the stored bytes, so two strings with the same hash are
  told apart. Strings added since the last :meth:`Strings.fold` are in a small dict, folded
  into the sorted arrays in one batch (when it reaches an eighth of them, at the keyword
  merge, before a snapshot).

A number's string never changes; the index marks removed rows dead itself (``valid``).
The bytes and offsets a snapshot brought stay its arrays, mapped from the file (only the
pages lookups touch count in the process); strings added since go to a tail
(:class:`Appendable`), so a write does not copy the vocabulary into the process.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Sequence
from itertools import repeat

import numpy as np

#: Recent strings are folded into the sorted arrays at this many (or an eighth of them).
FOLD_MIN = 16_384


class Growable:
    """An append-only numpy vector with amortised growth."""

    def __init__(self, dtype: type, size: int = 0) -> None:
        self.data: np.ndarray = np.zeros(max(size, 1024), dtype=dtype)
        self.size = size

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            grown = np.zeros(max(need, len(self.data) * 3 // 2), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = values
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]

    def replace(self, values: np.ndarray, copy: bool = True) -> None:
        """Hold ``values`` (a copy; or, with ``copy=False``, this array itself: for
        arrays nothing else writes, as a snapshot's)."""
        self.data = np.array(values, dtype=self.data.dtype, copy=copy or None)
        self.size = len(values)


class Appendable:
    """A read-only ``base`` (a snapshot's array, mapped from its file: only the pages read
    count in the process) followed by a :class:`Growable` tail of what was appended since;
    indexed by position over both. Writes never touch the base, so its pages stay those of
    the file."""

    def __init__(self, dtype: type, base: np.ndarray | None = None) -> None:
        self.base: np.ndarray = np.zeros(0, dtype=dtype) if base is None else base
        self.tail = Growable(dtype)

    @property
    def size(self) -> int:
        return len(self.base) + self.tail.size

    def extend(self, values: np.ndarray) -> None:
        self.tail.extend(values)

    def at(self, index: int) -> int:
        split = len(self.base)
        return int(self.base[index] if index < split else self.tail.data[index - split])

    def take(self, indices: np.ndarray) -> np.ndarray:
        split = len(self.base)
        if not self.tail.size:
            return self.base[indices]
        inside = indices < split
        if inside.all():
            return self.base[indices]
        out = np.empty(len(indices), dtype=self.base.dtype)
        out[inside] = self.base[indices[inside]]
        out[~inside] = self.tail.data[indices[~inside] - split]
        return out

    def bytes_at(self, start: int, end: int) -> memoryview:
        """Elements ``start``..``end`` (within the base or within the tail) as bytes."""
        split = len(self.base)
        if start >= split:
            return memoryview(self.tail.data)[start - split : end - split]
        return memoryview(self.base)[start:end]

    @property
    def view(self) -> np.ndarray:
        if not self.tail.size:
            return self.base
        return np.concatenate((self.base, self.tail.view))

    def replace(self, values: np.ndarray, copy: bool = True) -> None:
        """Hold ``values`` as the base (a copy; or, with ``copy=False``, this array itself:
        for arrays nothing else writes, as a snapshot's) and no tail."""
        self.base = np.array(values, dtype=self.base.dtype, copy=copy or None)
        self.tail = Growable(self.base.dtype.type)

    @property
    def nbytes(self) -> int:
        return int(self.base.nbytes + self.tail.data.nbytes)


#: The hash of a string's bytes: 8 bytes of BLAKE2b (stable: snapshots keep it).
HASH = functools.partial(hashlib.blake2b, digest_size=8)
_DIGEST = operator.methodcaller("digest")


def _key(data: bytes) -> np.uint64:
    return np.uint64(int.from_bytes(HASH(data).digest(), "little"))


def _keys(encoded: Sequence[bytes]) -> np.ndarray:
    """The hashes of many strings' bytes (C calls only: no Python frame per string)."""
    keys = np.frombuffer(b"".join(map(_DIGEST, map(HASH, encoded))), dtype="<u8")
    return keys.astype(np.uint64, copy=False)


class Strings:
    def __init__(self) -> None:
        self._blob = Appendable(np.uint8)
        # starts[i]..starts[i + 1]: string i (a string is within the base or the tail)
        self._starts = Appendable(np.int64, np.zeros(1, dtype=np.int64))
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted hashes
        self._nums = np.zeros(0, dtype=np.int32)  # the number of each
        self._recent: dict[str, int] = {}  # value -> number, since the last fold
        self._new_keys = Growable(np.uint64)  # their hashes and numbers, to fold
        self._new_nums = Growable(np.int32)

    def __len__(self) -> int:
        return self._starts.size - 1

    # -- writes ---------------------------------------------------------------------------

    def add(
        self,
        values: Sequence[str],
        keys: np.ndarray | None = None,
        encoded: Sequence[bytes] | None = None,
    ) -> int:
        """Number ``values`` (in order) after the others; the first one's number. ``keys``,
        ``encoded``: their hashes and bytes, when the caller has them already."""
        first = len(self)
        if not values:
            return first
        if encoded is None:
            encoded = [v.encode() for v in values]
        self._new_keys.extend(_keys(encoded) if keys is None else keys)
        self._new_nums.extend(np.arange(first, first + len(values), dtype=np.int32))
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        end = self._starts.at(first)
        self._blob.extend(np.frombuffer(b"".join(encoded), dtype=np.uint8))
        self._starts.extend(end + np.cumsum(lengths))
        recent = self._recent
        for num, value in enumerate(values, first):
            recent[value] = num
        return first

    def forget(self, value: str) -> None:
        """Drop ``value`` from the recent strings (its row is dead)."""
        self._recent.pop(value, None)

    def maybe_fold(self) -> None:
        if self._new_keys.size >= max(FOLD_MIN, len(self._keys) // 8):
            self.fold()

    def fold(self) -> None:
        """Move the recent strings into the sorted hash arrays."""
        if not self._new_keys.size:
            return
        keys, nums = self._new_keys.view, self._new_nums.view
        order = np.argsort(keys, kind="stable")
        keys, nums = keys[order], nums[order]
        at = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, at, keys)
        self._nums = np.insert(self._nums, at, nums)
        self._recent = {}
        for pending in (self._new_keys, self._new_nums):
            pending.replace(pending.view[:0])

    def keep(self, kept: np.ndarray) -> None:
        """Compaction: keep the strings of the numbers ``kept`` (ascending), renumbered
        0, 1, 2... in that order."""
        self.fold()
        starts = self._starts.view
        lengths = np.diff(starts)
        new_num = np.full(len(self), -1, dtype=np.int64)
        new_num[kept] = np.arange(len(kept))
        self._blob.replace(self._blob.view[np.repeat(new_num >= 0, lengths)])
        self._starts.replace(np.concatenate(([0], np.cumsum(lengths[kept]))))
        renumbered = new_num[self._nums]
        stays = renumbered >= 0
        self._keys, self._nums = self._keys[stays], renumbered[stays].astype(np.int32)

    # -- reads ----------------------------------------------------------------------------

    def value(self, num: int) -> str:
        starts = self._starts
        return str(self._blob.bytes_at(starts.at(num), starts.at(num + 1)), "utf-8")

    def values(self, nums: np.ndarray) -> list[str]:
        nums = np.asarray(nums, dtype=np.int64)
        starts, part = self._starts, self._blob.bytes_at
        return [
            str(part(s, e), "utf-8")
            for s, e in zip(starts.take(nums).tolist(), starts.take(nums + 1).tolist(), strict=True)
        ]

    def _scan(self, at: int, key: np.uint64, data: bytes, valid: np.ndarray | None) -> int:
        """The number of ``data`` among the sorted entries from ``at`` with this key, or -1."""
        keys, nums, starts, part = self._keys, self._nums, self._starts, self._blob.bytes_at
        while at < len(keys) and keys[at] == key:
            num = int(nums[at])
            if (valid is None or valid[num]) and part(starts.at(num), starts.at(num + 1)) == data:
                return num
            at += 1
        return -1

    def find(self, value: str, valid: np.ndarray | None = None) -> int | None:
        """The number of ``value`` (among those ``valid`` marks, if given), or None."""
        num = self._recent.get(value)
        if num is not None and (valid is None or valid[num]):
            return num
        if not len(self._keys):
            return None
        data = value.encode()
        key = _key(data)
        found = self._scan(int(self._keys.searchsorted(key)), key, data, valid)
        return None if found < 0 else found

    def find_many(
        self, values: Sequence[str], valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """:meth:`find` of each value (-1 where absent), the sorted part searched in one
        pass; with the values' hashes and bytes (for :meth:`add`)."""
        encoded = [v.encode() for v in values]
        keys = _keys(encoded)
        out = np.fromiter(
            map(self._recent.get, values, repeat(-1)), dtype=np.int64, count=len(values)
        )
        if valid is not None:
            dead = np.flatnonzero(out >= 0)
            out[dead[~valid[out[dead]]]] = -1
        rest = np.flatnonzero(out < 0)
        if not len(rest) or not len(self._keys):
            return out, keys, encoded
        at = np.minimum(np.searchsorted(self._keys, keys[rest]), len(self._keys) - 1)
        hit = np.flatnonzero(self._keys[at] == keys[rest])
        # the first entry of each hash checked at once; the others (another string with
        # that hash first, or a dead row's) one by one
        found = self._nums[at[hit]].astype(np.int64)
        same = self._same(found, [encoded[i] for i in rest[hit].tolist()])
        if valid is not None:
            same &= valid[found]
        out[rest[hit[same]]] = found[same]
        for j in hit[~same].tolist():
            i = int(rest[j])
            out[i] = self._scan(int(at[j]), keys[i], encoded[i], valid)
        return out, keys, encoded

    def _same(self, nums: np.ndarray, encoded: list[bytes]) -> np.ndarray:
        """Whether string ``nums[i]`` is ``encoded[i]``, for each i (vectorised)."""
        lo, hi = self._starts.take(nums), self._starts.take(nums + 1)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        same = hi - lo == lengths
        check = np.flatnonzero(same)
        size = lengths[check]
        ends = np.cumsum(size)
        wanted = np.frombuffer(b"".join([encoded[i] for i in check.tolist()]), dtype=np.uint8)
        at = np.repeat(lo[check] - (ends - size), size) + np.arange(len(wanted))
        differs = np.concatenate(([0], np.cumsum(self._blob.take(at) != wanted)))
        same[check] = differs[ends] == differs[ends - size]
        return same

    def numbers(self, values: Sequence[str]) -> np.ndarray:
        """The number of each of these distinct values, new ones added after the others."""
        nums, keys, encoded = self.find_many(values)
        missing = np.flatnonzero(nums < 0)
        if len(missing):
            new = missing.tolist()
            first = self.add([values[i] for i in new], keys[missing], [encoded[i] for i in new])
            nums[missing] = np.arange(first, first + len(new))
        return nums

    # -- snapshot -------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (the recent strings folded in first)."""
        self.fold()
        return {
            "blob": self._blob.view,
            "starts": self._starts.view,
            "keys": self._keys,
            "nums": self._nums,
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._blob.replace(arrays["blob"], copy=False)
        self._starts.replace(arrays["starts"], copy=False)
        self._keys = arrays["keys"].astype(np.uint64, copy=False)
        self._nums = arrays["nums"].astype(np.int32, copy=False)
        self._recent = {}
        self._new_keys, self._new_nums = Growable(np.uint64), Growable(np.int32)

    @property
    def nbytes(self) -> int:
        """The arrays' bytes, plus an estimate for the recent strings' dict."""
        arrays = (self._keys, self._nums, self._new_keys.data, self._new_nums.data)
        held = sum(a.nbytes for a in arrays) + self._blob.nbytes + self._starts.nbytes
        return int(held) + len(self._recent) * 160
