"""Item ids and terms in numpy arrays (``search/ids.py``, ``search/strings.py``): the id ->
row and term -> id lookups stay right through adds, removals, replacements, folds,
compaction, snapshots (of the format before too) and hash collisions."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from session_buddy.adapters.storage._base import ItemFilter, NewItem
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.search import IndexEntry, SearchIndex, index, snapshot, strings
from session_buddy.search import ids as ids_module
from session_buddy.search.ids import Ids
from session_buddy.search.strings import Strings
from tests.test_search_index import BASE

#: ids of several lengths and scripts (a UUID, a short one, a long one, non-ASCII)
ODD_IDS = ["a", "", "0f8fad5b-d9cb-469f-a165-70867728950e", "x" * 300, "café-ü-日本", "a "]


@pytest.fixture(params=["blake2b", "collide"])
def hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Real hashes, or every string the same hash (each lookup must check the bytes)."""
    if request.param == "collide":
        monkeypatch.setattr(strings, "HASH", lambda data: hashlib.blake2b(b"same", digest_size=8))
    monkeypatch.setattr(strings, "FOLD_MIN", 8)  # fold often
    monkeypatch.setattr(index, "COMPACT_MIN", 16)  # compact often
    return str(request.param)


def test_strings_find_across_folds_and_keep(hashing: str) -> None:
    table = Strings()
    values = [*ODD_IDS, *(f"v{i}" for i in range(40))]
    table.add(values[:20])
    table.fold()
    table.add(values[20:])  # recent, not folded
    for num, value in enumerate(values):
        assert table.find(value) == num
        assert table.value(num) == value
    assert table.find("missing") is None and table.find("v") is None
    found, _, _ = table.find_many([*values, "missing"])
    assert found.tolist() == [*range(len(values)), -1]
    valid = np.ones(len(values), dtype=bool)
    valid[3] = False
    assert table.find(values[3], valid) is None and table.find(values[4], valid) == 4
    kept = np.array([1, 3, 5, 30, 45])
    table.keep(kept)
    assert len(table) == 5
    assert table.values(np.arange(5)) == [values[k] for k in kept]
    assert [table.find(values[k]) for k in kept] == list(range(5))
    assert table.find(values[0]) is None and table.find(values[44]) is None


def test_strings_numbers_adds_only_the_new(hashing: str) -> None:
    table = Strings()
    assert table.numbers(["x", "y"]).tolist() == [0, 1]
    table.fold()
    assert table.numbers(["y", "z", "x", "w"]).tolist() == [1, 2, 0, 3]
    assert len(table) == 4


def _entry(item_id: str, content: str, k: int = 0) -> IndexEntry:
    return IndexEntry(
        id=item_id,
        kind="conversation",
        content=content,
        created_at=BASE + timedelta(minutes=k),
        vector=np.eye(4, dtype=np.float32)[k % 4],
    )


def _word(n: int) -> str:
    """A distinct word the tokeniser keeps whole (letters only)."""
    return "q" + "".join("abcdefghij"[int(d)] for d in str(n))


def _churn(
    idx: SearchIndex, pool: list[str], seed: int, steps: int, adds: int, removes: int
) -> Iterator[dict[str, str]]:
    """Random steps of adding up to ``adds`` ids of ``pool`` (some present already:
    replaced), each with a word of its own, and removing up to ``removes``; after each step,
    the live ids and their words (the same dict each time)."""
    rng = random.Random(seed)
    live: dict[str, str] = {}  # id -> its one word
    for step in range(steps):
        batch = rng.sample(pool, rng.randint(1, adds))
        words = {i: _word(step * 100 + n) for n, i in enumerate(batch)}
        idx.add([_entry(i, words[i], k) for k, i in enumerate(batch)])
        live.update(words)
        gone = rng.sample(pool, rng.randint(0, removes))
        assert idx.remove(gone) == sum(1 for g in gone if g in live)
        for g in gone:
            live.pop(g, None)
        yield live


def test_id_lookup_through_add_remove_replace_and_compaction(hashing: str) -> None:
    idx = SearchIndex(4)
    pool = [*ODD_IDS, *(f"id-{i}" * (1 + i % 3) for i in range(120))]
    live: dict[str, str] = {}
    for live in _churn(idx, pool, seed=3, steps=60, adds=30, removes=25):
        assert len(idx) == len(live) == idx.count()
        assert {i for i, _ in idx.filter_ids(None)} == set(live)
    assert idx.memory()["rows"] < 60 * 30  # compacted on the way
    for item_id in pool:
        assert (item_id in idx) == (item_id in live)
        assert idx.has_vector(item_id) == (item_id in live)
    for item_id, word in live.items():
        assert [h.id for h in idx.keyword_search(word, None, 5)] == [item_id]
    some = sorted(live)[:7]
    assert sorted(i for i, _ in idx.filter_ids(ItemFilter(ids=[*some, "nope"]))) == some
    assert set(idx.vectors_of([*some, "nope"])) == set(some)


async def test_a_snapshot_keeps_ids_and_terms_and_takes_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(strings, "FOLD_MIN", 8)
    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    items = [NewItem(kind="conversation", content=f"common {_word(i)} café") for i in range(40)]
    added = await storage.add_items(items)
    await storage.delete_items([added[0].id])
    await storage.close()

    warm = Storage(path)
    await warm.initialize()
    assert warm.index_source == "snapshot"
    assert len(warm.index) == 39 and added[0].id not in warm.index
    assert all(a.id in warm.index for a in added[1:])
    hits = await warm.keyword_search(_word(7), None, 5)
    assert [h.id for h in hits] == [added[7].id]
    # a term and an id added after the load are found, old terms still score
    (new,) = await warm.add_items([NewItem(kind="insight", content="zanzibar common")])
    assert [h.id for h in await warm.keyword_search("zanzibar", None, 5)] == [new.id]
    assert len(await warm.keyword_search("common", None, 50)) == 40
    assert new.id in warm.index
    await warm.delete_items([added[7].id])
    assert await warm.keyword_search(_word(7), None, 5) == []
    await warm.close()

    again = Storage(path)
    await again.initialize()
    assert again.index_source == "snapshot"
    assert [h.id for h in await again.keyword_search("zanzibar", None, 5)] == [new.id]
    assert await again.keyword_search(_word(7), None, 5) == []
    assert len(again.index) == 39
    await again.close()


def _uuids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


@pytest.mark.parametrize("fence", [2, 64])
def test_uuid_ids_take_16_bytes_a_row_and_round_trip(
    hashing: str, fence: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Canonical UUIDs are held as 128 bits (20 bytes a row with the sorted order), any
    other id as text; each comes back as it was given, through folds and compaction (also
    UUIDs that share their first 64 bits, across the lookup's fence entries)."""
    monkeypatch.setattr(ids_module, "FENCE", fence)
    table = Ids()
    same_high = [f"0f8fad5b-d9cb-469f-a165-{n:012x}" for n in range(0, 3000, 13)]
    values = [*_uuids(3000, 1), *same_high, *ODD_IDS, "0F8FAD5B-D9CB-469F-A165-70867728950E"]
    random.Random(7).shuffle(values)
    table.add(values[:1000])
    table.fold()
    table.add(values[1000:])  # recent, not folded
    assert table.values(np.arange(len(values))) == values
    assert [table.find(v) for v in values] == list(range(len(values)))
    assert table.find_many([*values, str(uuid.UUID(int=5))])[0].tolist() == [
        *range(len(values)),
        -1,
    ]
    table.fold()
    assert table.nbytes < 30 * len(values) + 30_000  # was 36 + 20 a UUID as text
    kept = np.array([0, 7, 999, 1000, 2999, 3000, 3002, *range(3100, 3200, 3), len(values) - 1])
    table.keep(kept)
    assert table.values(np.arange(len(kept))) == [values[k] for k in kept]
    assert [table.find(values[k]) for k in kept] == list(range(len(kept)))
    assert table.find(values[1]) is None and table.find(values[3001]) is None
    assert table.find(same_high[0].replace("a165-", "a166-")) is None


def test_a_replaced_uuid_is_found_at_its_live_row(hashing: str) -> None:
    """The same UUID on several rows (the old ones dead): lookups skip the dead rows,
    before and after a fold, whichever row sorts first."""
    table = Ids()
    same = _uuids(1, 2)[0]
    table.add([same, *_uuids(10, 3)])
    valid = np.ones(40, dtype=bool)
    for _ in range(3):
        valid[: len(table)] = False  # every row so far is dead...
        table.forget(same)
        row = table.add([same])  # ...and the id is stored again
        valid[row] = True
        assert table.find(same, valid) == row
        table.fold()
        assert table.find(same, valid) == row
        assert table.find_many([same], valid)[0].tolist() == [row]
        assert table.find(same) is not None  # without ``valid``: some row of it
    assert table.find(_uuids(10, 3)[0], valid) is None


def test_id_lookup_of_uuids_through_replace_and_compaction(hashing: str) -> None:
    idx = SearchIndex(4)
    pool = [*_uuids(150, 5), *ODD_IDS[:3]]
    live: dict[str, str] = {}
    for live in _churn(idx, pool, seed=4, steps=50, adds=40, removes=30):
        assert {i for i, _ in idx.filter_ids(None)} == set(live)
    for item_id in pool:
        assert (item_id in idx) == (item_id in live)
    for item_id, word in live.items():
        assert [h.id for h in idx.keyword_search(word, None, 5)] == [item_id]


async def test_a_snapshot_of_format_4_is_read_with_its_ids(tmp_path: Path) -> None:
    """A snapshot written before the ids were UUIDs (format 4: the ids as UTF-8 strings)
    is still used: the same ids and answers, and the next close writes the new format."""
    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    added = await storage.add_items(
        [NewItem(kind="conversation", content=f"common {_word(i)}") for i in range(30)]
    )
    await storage.delete_items([added[3].id])
    await storage.close()
    ids = [a.id for a in added if a.id != added[3].id]
    snap = path.with_name("memory.duckdb.index")
    arrays = snapshot._read(snap)
    header = json.loads(arrays.pop("strings").tobytes())
    assert header["format"] == snapshot.FORMAT == 5
    new = Ids()
    new.restore({k[4:]: a for k, a in arrays.items() if k.startswith("ids_")})
    old = Strings()  # the ids as format 4 held them
    old.add(new.values(np.arange(len(new))))
    arrays = {k: a for k, a in arrays.items() if not k.startswith("ids_")}
    arrays.update({f"ids_{k}": a for k, a in old.arrays().items()})
    header["format"] = 4
    arrays["strings"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    snapshot._write(snap, arrays)

    warm = Storage(path)
    await warm.initialize()
    assert warm.index_source == "snapshot"
    assert sorted(i for i, _ in warm.index.filter_ids(None)) == sorted(ids)
    assert added[3].id not in warm.index and all(i in warm.index for i in ids)
    hits = await warm.keyword_search(_word(7), None, 5)
    assert [h.id for h in hits] == [added[7].id]
    await warm.close()
    assert json.loads(snapshot._read(snap)["strings"].tobytes())["format"] == 5


def test_the_index_holds_uuid_ids_in_about_20_bytes_a_row() -> None:
    idx = SearchIndex(4)
    ids = _uuids(5000, 6)
    idx.add([_entry(i, f"word{n % 50}", n) for n, i in enumerate(ids)])
    idx._ids.fold()
    # 16 bytes + 4 a row (and ~30 kB of empty tables); as text, offsets, hashes: 56 a row
    assert idx.memory()["id_bytes"] < 24 * len(ids) + 40_000
    assert idx.filter_ids(None)[1234][0] == ids[1234]


def test_ids_that_are_not_uuids_are_folded_as_they_come(hashing: str) -> None:
    """A store of other ids (an import's) keeps them in arrays too: the recent ones are
    folded at FOLD_MIN (or an eighth), not held in a dict until the next snapshot."""
    idx = SearchIndex(4)
    ids = [f"import-{n}" for n in range(400)]
    for start in range(0, len(ids), 20):
        idx.add([_entry(i, _word(n), n) for n, i in enumerate(ids[start : start + 20], start)])
    assert len(idx._ids._other._recent) <= 2 * strings.FOLD_MIN
    assert [i for i, _ in idx.filter_ids(ItemFilter(ids=set(ids[::37])))] == ids[::37]
    assert all(i in idx for i in ids) and "import-400" not in idx


def test_strings_restored_from_a_snapshot_take_new_strings_in_a_tail(hashing: str) -> None:
    """A snapshot's arrays are the base (read-only: mapped from the file), new strings go to
    a tail: lookups, values and compaction see both, and the base is never written."""
    first = Strings()
    values = [*ODD_IDS, *(f"v{i}" for i in range(40))]
    first.add(values[:30])
    saved = {k: a.copy() for k, a in first.arrays().items()}
    for array in saved.values():
        array.flags.writeable = False  # as a mapping: any write would raise
    table = Strings()
    table.restore(saved)
    table.add(values[30:40])
    table.fold()
    table.add(values[40:])  # recent, not folded
    assert [table.find(v) for v in values] == list(range(len(values)))
    assert table.values(np.arange(len(values))) == values
    assert table.find_many([*values, "nope"])[0].tolist() == [*range(len(values)), -1]
    kept = np.array([0, 2, 29, 30, 41, len(values) - 1])
    table.keep(kept)
    assert table.values(np.arange(len(kept))) == [values[k] for k in kept]
    assert [table.find(values[k]) for k in kept] == list(range(len(kept)))
