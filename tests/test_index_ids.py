"""Item ids and terms in numpy arrays (``search/strings.py``): the id -> row and term -> id
lookups stay right through adds, removals, replacements, folds, compaction, snapshots and
hash collisions."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from session_buddy.adapters.storage._base import ItemFilter, NewItem
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.search import IndexEntry, SearchIndex, index, strings
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


def test_id_lookup_through_add_remove_replace_and_compaction(hashing: str) -> None:
    rng = random.Random(3)
    idx = SearchIndex(4)
    live: dict[str, str] = {}  # id -> its one word
    pool = [*ODD_IDS, *(f"id-{i}" * (1 + i % 3) for i in range(120))]
    for step in range(60):
        batch = rng.sample(pool, rng.randint(1, 30))  # some present already: replaced
        words = {i: _word(step * 100 + n) for n, i in enumerate(batch)}
        idx.add([_entry(i, words[i], k) for k, i in enumerate(batch)])
        live.update(words)
        gone = rng.sample(pool, rng.randint(0, 25))
        assert idx.remove(gone) == sum(1 for g in gone if g in live)
        for g in gone:
            live.pop(g, None)
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
