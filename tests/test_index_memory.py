"""The index's compact forms: binary vector codes rescored exactly (in RAM or in the file beside a
DuckDB store), numpy postings with a tail merged into CSR arrays, and what `health` reports
about the process's memory and the index's size."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from session_buddy.adapters._memory import release_free_memory, rss_bytes
from session_buddy.adapters.storage._base import Access, ItemFilter, NewItem
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.search import IndexEntry, SearchIndex, keyword, vector
from session_buddy.search.vector import FileRows, VectorIndex, binary_codes
from tests.test_search_index import (  # noqa: F401 (exhaustive_rescoring: a fixture)
    BASE,
    FILTERS,
    brute,
    entries,
    exhaustive_rescoring,
    make_docs,
    reference_bm25,
)

TOPICS = [
    "the deploy pipeline failed on the staging cluster",
    "flaky integration tests in the payments service",
    "migrating the worker to Python 3.13",
    "memory growth in the ingest worker after the release",
    "slow cold starts of the API gateway",
    "rate limits of the upstream billing API",
    "the nightly backup job timing out",
    "a deadlock between the scheduler and the cache",
]
FIXES = [
    "fixed by adding a retry with exponential backoff",
    "fixed by pinning the dependency version",
    "fixed by moving the call off the event loop",
    "fixed by batching the writes",
    "fixed by closing the connection in a finally block",
    "fixed by streaming the file instead of reading it whole",
]


@pytest.fixture(scope="module")
def model_texts() -> tuple[list[str], np.ndarray]:
    """Realistic texts and their real ONNX vectors: every topic with every fix, phrased
    eight ways (384 texts), so many near neighbours differ by little."""
    from session_buddy.adapters.embeddings.onnx import Embeddings
    from session_buddy.settings import SessionBuddySettings

    texts = [
        f"{form} {topic}; {fix}.{after}"
        for topic in TOPICS
        for fix in FIXES
        for form in ("We looked at", "Session note:", "Incident review of", "Follow-up on")
        for after in ("", " It happened twice this week.")
    ]
    model = Embeddings.from_settings(SessionBuddySettings(), None, None)
    return texts, model.encode(texts)


def _items(texts: list[str], vectors: np.ndarray) -> list[IndexEntry]:
    return [
        IndexEntry(
            id=f"t{i}",
            kind="conversation",
            content=t,
            created_at=BASE,
            project=f"p{i % 3}",
            author="ann" if i % 2 else "bob",
            vector=vectors[i],
        )
        for i, t in enumerate(texts)
    ]


QUERIES = [
    "why did the deploy pipeline fail on staging",
    "memory growth in the worker",
    "how did we fix the deadlock in the scheduler",
    "backup job timeout",
    "the billing API keeps rejecting our calls",
    "tests fail now and then in payments",
]


@pytest.fixture(scope="module")
def model_queries(model_texts: tuple[list[str], np.ndarray]) -> tuple[list[str], np.ndarray]:
    from session_buddy.adapters.embeddings.onnx import Embeddings
    from session_buddy.settings import SessionBuddySettings

    texts = model_texts[0]
    queries = [*QUERIES, *texts[:3], texts[100], texts[-1]]  # a stored text: its row first
    model = Embeddings.from_settings(SessionBuddySettings(), None, None)
    return queries, model.encode(queries)


def _exact_order(vectors: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> list[str]:
    sims = vectors[rows] @ q
    return [f"t{rows[i]}" for i in np.lexsort((rows, -sims))[:k]]


@pytest.mark.parametrize("in_file", [False, True])
def test_binary_codes_give_the_exact_top_hits_on_model_vectors(
    model_texts: tuple[list[str], np.ndarray],
    model_queries: tuple[list[str], np.ndarray],
    tmp_path: Path,
    in_file: bool,
) -> None:
    """Real model vectors of near-duplicate texts, more rows than the ranker rescores: the
    binary first stage keeps every true top-10 hit, unfiltered and filtered (a filter is a
    mask before the Hamming top-k: on the whole scan, or on the rows gathered)."""
    texts, vectors = model_texts
    assert len(texts) > 2 * vector.candidates(10, len(texts))  # the first stage drops rows
    index = SearchIndex(384, tmp_path if in_file else None)
    index.add(_items(texts, vectors))
    everything = np.arange(len(texts))
    in_p1 = everything[everything % 3 == 1]  # a third: the whole scan, then the mask
    few = everything[everything % 7 < 2]  # 110 rows, under GATHER_FRACTION: gathered
    assert len(few) > vector.candidates(10, len(few)) and len(few) < 0.3 * len(texts)
    by_id = ItemFilter(ids={f"t{i}" for i in few})
    for query, q in zip(*model_queries, strict=True):
        hits = index.vector_search(q, None, 10)
        assert [h.id for h in hits] == _exact_order(vectors, q, everything, 10), query
        for h in hits:  # the similarities given are the exact ones
            assert h.score == pytest.approx(float(vectors[int(h.id[1:])] @ q), abs=1e-6)
        got = [h.id for h in index.vector_search(q, ItemFilter(projects=["p1"]), 10)]
        assert got == _exact_order(vectors, q, in_p1, 10), query
        got = [h.id for h in index.vector_search(q, by_id, 10)]
        assert got == _exact_order(vectors, q, few, 10), query
    index.close()


def test_few_candidates_still_find_the_top_hit_on_model_vectors(
    model_texts: tuple[list[str], np.ndarray],
    model_queries: tuple[list[str], np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With only 20 candidates of 384 rows rescored, the Hamming order alone has to hold
    the top hit: it does on these texts, and most of the top 10."""
    monkeypatch.setattr(vector, "RESCORE_FACTOR", 2)
    monkeypatch.setattr(vector, "RESCORE_MIN", 20)
    texts, vectors = model_texts
    index = SearchIndex(384)
    index.add(_items(texts, vectors))
    found = 0
    for query, q in zip(*model_queries, strict=True):
        order = _exact_order(vectors, q, np.arange(len(texts)), 10)
        hits = [h.id for h in index.vector_search(q, None, 10)]
        assert hits[0] == order[0], query
        found += len(set(hits) & set(order))
    assert found >= 0.8 * 10 * len(model_queries[0])
    index.close()


@pytest.mark.parametrize("dimension", [384, 100, 8])
def test_binary_codes_count_the_signs_that_differ(dimension: int) -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((1000, dimension)).astype(np.float32)
    codes = binary_codes(v)
    assert codes.dtype == np.uint64 and codes.shape == (-(-dimension // 64), 1000)
    index = VectorIndex(dimension)
    index.ensure_capacity(1000)
    index.set_many(np.arange(1000), v)
    assert index.nbytes == 1000 * (8 * codes.shape[0] + 1) + v.nbytes  # codes, flags, RAM rows
    q = rng.standard_normal(dimension).astype(np.float32)
    differ = ((v > 0) != (q > 0)).sum(axis=1)
    np.testing.assert_array_equal(index.hamming(q, None, 1000), differ)
    rows = np.arange(3, 1000, 7)
    np.testing.assert_array_equal(index.hamming(q, rows, 1000), differ[rows])
    assert not binary_codes(np.zeros((1, dimension), np.float32)).any()
    np.testing.assert_array_equal(vector.nearest(np.array([3, 1, 2, 1, 0, 1]), 3), [1, 3, 4])


@pytest.mark.usefixtures("exhaustive_rescoring")
@pytest.mark.parametrize("flt", FILTERS)
def test_filters_and_access_apply_with_the_vector_file(flt: ItemFilter, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    docs = make_docs(600)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = entries(docs, vectors)
    for k, e in enumerate(items):
        e.author = "ann" if k % 3 else None
    index = SearchIndex(16, tmp_path)
    index.add(items)
    access = Access(authors=frozenset({None}), shared=frozenset({"d1", "d4"}))
    visible = [e for e in items if e.author is None or e.id in {"d1", "d4"}]
    for _ in range(5):
        q = rng.standard_normal(16).astype(np.float32)
        q /= np.linalg.norm(q)
        assert [h.id for h in index.vector_search(q, flt, 10)] == brute(items, flt, q, 10)
        got = [h.id for h in index.vector_search(q, flt, 10, access)]
        assert got == brute(visible, flt, q, 10)
    index.close()


@pytest.mark.usefixtures("exhaustive_rescoring")
def test_the_vector_file_is_unlinked_and_holds_the_exact_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((3000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = make_docs(3000, seed=2)
    items = entries(docs, vectors)
    folder = tmp_path / "vectors"
    folder.mkdir()
    index = SearchIndex(8, folder)
    index.add(items[:1500])
    for e in items[1500:1600]:  # single writes: one row at a time
        index.add([e])
    index.add(items[1600:])
    assert list(folder.iterdir()) == []  # nothing left behind, even after a crash
    got = index.vectors_of(["d0", "d1550", "d2999", "missing"])
    assert set(got) == {"d0", "d1550", "d2999"}
    for key, vec in got.items():
        np.testing.assert_array_equal(vec, vectors[int(key[1:])])
    gone = [f"d{i}" for i in range(3000) if i % 2]
    index.remove(gone)
    assert index._dead == 0  # compacted: the file was rewritten row by row
    live = [e for e in items if e.id not in set(gone)]
    q = vectors[10]
    assert [h.id for h in index.vector_search(q, None, 20)] == brute(live, ItemFilter(), q, 20)
    np.testing.assert_array_equal(index.vectors_of(["d2998"])["d2998"], vectors[2998])
    exact = index.vectors.exact
    assert isinstance(exact, FileRows)
    memory = index.memory()
    assert memory["exact_vector_file_bytes"] == 1500 * 8 * 4
    assert memory["vector_bytes"] < 1500 * 8 * 4  # codes and scales, not floats
    fd = exact.fd
    os.fstat(fd)
    index.close()
    assert exact.fd == -1


@pytest.mark.parametrize("bulk", [False, True])
def test_postings_merged_into_csr_keep_bm25_exact(
    bulk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tiny merge size the tail is folded into the CSR arrays many times, between
    adds, deletes and a compaction; scores stay those of the reference BM25."""
    monkeypatch.setattr(keyword, "MERGE_MIN", 40)
    docs = make_docs(3000, seed=4)
    index = SearchIndex(4)
    items = entries(docs)
    if bulk:
        for start in range(0, 3000, 500):
            index.add(items[start : start + 500])
    else:
        for e in items[:400]:
            index.add([e])
        index.add(items[400:])
    removed = {f"d{i}" for i in range(0, 3000, 7)}
    index.remove(sorted(removed))
    live = {i: t for i, t in docs.items() if i not in removed}

    def check() -> None:
        for query in ("error cache", "ERR_X_1", "parse config", "redis deploy alpha"):
            expected = reference_bm25(live, query)
            hits = index.keyword_search(query, None, 5000)
            assert {h.id for h in hits} == set(expected), query
            for h in hits:
                assert h.score == pytest.approx(expected[h.id], rel=1e-4)

    check()
    more_gone = {f"d{i}" for i in range(3000) if i % 3 and f"d{i}" not in removed}
    index.remove(sorted(more_gone))
    assert index._dead == 0  # compacted
    live = {i: t for i, t in live.items() if i not in more_gone}
    check()
    index.add([IndexEntry(id="new", kind="insight", content="zanzibar cache", created_at=BASE)])
    live["new"] = "zanzibar cache"
    check()
    assert [h.id for h in index.keyword_search("zanzibar", None, 5)] == ["new"]


def test_memory_helpers() -> None:
    rss = rss_bytes()
    assert rss is not None and rss > 10 * 1_048_576
    with open("/proc/self/statm", encoding="ascii") as statm:  # the kernel's other view
        resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(rss - resident) < 0.1 * resident
    assert release_free_memory() is True  # glibc here


async def test_health_reports_the_resident_memory_and_the_index_size(tmp_path: Path) -> None:
    from fastmcp import Client

    from session_buddy.server.app import create_server
    from session_buddy.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data", adapters={"storage": "duckdb", "embeddings": "none"}
    ).settings
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((200, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    storage = Storage(tmp_path / "data" / "memory.duckdb")
    await storage.initialize()
    await storage.add_items(
        [
            NewItem(kind="conversation", content=f"note {i} about the cache", embedding=v)
            for i, v in enumerate(vectors)
        ]
    )
    await storage.close()
    async with Client(create_server(settings)) as mcp:
        report = (await mcp.call_tool("health", {})).structured_content
    assert report is not None
    found = {c["name"]: c for c in report["components"]}
    python = found["python"]["metadata"]
    assert python["rss_bytes"] > 10 * 1_048_576
    assert "resident" in found["python"]["message"]
    index = found["storage"]["metadata"]["index"]
    assert index["items"] == 200 and index["vectors"] == 200
    assert index["exact_vector_file_bytes"] == 200 * 384 * 4
    assert 200 * 48 <= index["vector_bytes"] < 200 * 384  # 48 bytes of sign bits a row
    assert index["bytes"] >= index["vector_bytes"] + index["keyword_bytes"] + index["id_bytes"] > 0
    assert found["storage"]["metadata"]["size_bytes"] > 0


# -- snapshot ----------------------------------------------------------------------------


def _random_items(n: int, seed: int) -> list[NewItem]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = make_docs(n, seed=seed)
    return [
        NewItem(
            kind="conversation" if i % 3 else "reflection",
            content=f"{text} item{i}",
            project=f"p{i % 4}",
            role="user" if i % 2 else None,
            tags=["odd"] if i % 2 else [],
            author="ann" if i % 5 else None,
            embedding=vectors[i] if i % 7 else None,
        )
        for i, text in enumerate(docs.values())
    ]


async def _answers(storage: Storage, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    out = []
    flts = [None, ItemFilter(projects=["p1"], tags=["odd"]), ItemFilter(kinds=["reflection"])]
    access = Access(authors=frozenset({None}))
    for flt in flts:
        for q in queries:
            out.append([(h.id, round(h.score, 6)) for h in await storage.vector_search(q, flt, 10)])
            hits = storage.index.vector_search(q, flt, 10, access)
            out.append([(h.id, round(h.score, 6)) for h in hits])
        for text in ("error cache", "ERR_X_1 item7", "parse config deploy"):
            hits = await storage.keyword_search(text, flt, 20)
            out.append([(h.id, round(h.score, 4)) for h in hits])
    return out


async def test_a_snapshot_loads_the_same_index_as_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    assert storage.index_source == "rows"
    added = await storage.add_items(_random_items(1500, seed=1))
    await storage.delete_items([added[i].id for i in range(0, 1500, 9)])
    await storage.close()
    snap, vectors = (
        path.with_name("memory.duckdb.index"),
        path.with_name("memory.duckdb.vectors"),
    )
    assert snap.is_file() and vectors.is_file()
    queries = np.random.default_rng(2).standard_normal((4, 384)).astype(np.float32)

    warm = Storage(path)
    await warm.initialize()
    assert warm.index_source == "snapshot"
    from_snapshot = await _answers(warm, queries)
    memory = warm.index.memory()
    # writes after a snapshot load go on as usual (and the next close snapshots them)
    more = await warm.add_items(_random_items(50, seed=3))
    await warm.close()

    snap.unlink()  # force a rebuild from the rows
    cold = Storage(path)
    await cold.initialize()
    assert cold.index_source == "rows"
    assert len(cold.index) == 1500 - 167 + 50
    await cold.delete_items([m.id for m in more])
    rebuilt = await _answers(cold, queries)
    assert cold.index.memory()["items"] == memory["items"]
    await cold.close()
    assert from_snapshot == rebuilt
    assert any(from_snapshot) and all(len(a) <= 20 for a in from_snapshot)


def _mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)


async def test_mapped_postings_take_writes_after_a_snapshot_load(tmp_path: Path) -> None:
    """The postings and rows' term ids come mapped from the snapshot; deletes of rows it
    brought and of rows added after it, and the next snapshot, give the same index as a
    rebuild of the rows."""
    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    added = await storage.add_items(_random_items(1200, seed=4))
    await storage.close()
    queries = np.random.default_rng(5).standard_normal((3, 384)).astype(np.float32)

    warm = Storage(path)
    await warm.initialize()
    kw = warm.index.keyword
    assert warm.index_source == "snapshot"
    assert _mapped(kw._rows) and _mapped(kw._tfs) and _mapped(kw._row_tids_frozen)
    assert not _mapped(kw._df) and not _mapped(warm.index.alive)
    terms = kw._terms  # the vocabulary too: its bytes, offsets and sorted hashes
    assert _mapped(terms._blob.base) and _mapped(terms._starts.base)
    assert _mapped(terms._keys) and _mapped(terms._nums) and _mapped(kw._starts)
    assert _mapped(warm.index._ids._sorted)
    more = await warm.add_items(_random_items(60, seed=6))
    (fresh,) = await warm.add_items([NewItem(kind="conversation", content="zanzibarite café")])
    assert terms._blob.tail.size and _mapped(terms._blob.base)  # new terms in the tail
    assert [h.id for h in await warm.keyword_search("zanzibarite", None, 5)] == [fresh.id]
    assert len(await warm.keyword_search("café", None, 5)) == 1
    await warm.delete_items([fresh.id])
    await warm.delete_items([added[i].id for i in range(0, 300, 10)] + [m.id for m in more[:10]])
    live = await _answers(warm, queries)
    await warm.close()

    again = Storage(path)
    await again.initialize()
    assert again.index_source == "snapshot"
    reloaded = await _answers(again, queries)
    await again.close()
    path.with_name("memory.duckdb.index").unlink()
    cold = Storage(path)
    await cold.initialize()
    assert cold.index_source == "rows"
    rebuilt = await _answers(cold, queries)
    await cold.close()
    assert live == reloaded == rebuilt
    assert any(rebuilt)


async def test_a_stale_snapshot_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    await storage.add_items(_random_items(200, seed=4))
    await storage.close()
    # opened and written without a clean close (a crash): the token is gone
    crashed = Storage(path)
    await crashed.initialize()
    assert crashed.index_source == "snapshot"
    await crashed.add_items(_random_items(10, seed=5))
    crashed.con.execute("CHECKPOINT")
    crashed._con = None  # dropped without close(): no new snapshot, no token
    import gc

    gc.collect()
    again = Storage(path)
    await again.initialize()
    assert again.index_source == "rows"
    assert len(again.index) == 210
    await again.close()


async def test_a_snapshot_of_items_without_vectors(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    for round_ in range(3):  # rows, then the snapshot twice (the second after more writes)
        storage = Storage(path)
        await storage.initialize()
        assert storage.index_source == ("rows" if round_ == 0 else "snapshot")
        items = _random_items(10, seed=round_)
        for item in items:
            item.embedding = None
        await storage.add_items(items)
        assert len(storage.index) == 10 * (round_ + 1)
        assert [h.id for h in await storage.keyword_search("item3", None, 5)]
        await storage.close()


async def test_a_snapshot_of_another_tokeniser_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from session_buddy.search import snapshot

    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    await storage.add_items(_random_items(20, seed=6))
    await storage.close()
    monkeypatch.setattr(snapshot, "tokenize", lambda text: text.lower().split())
    again = Storage(path)
    await again.initialize()
    assert again.index_source == "rows"
    await again.close()


async def test_fetching_hits_does_not_cache_the_embedding_column(tmp_path: Path) -> None:
    """``get_items`` (what a search fetches for its hits) takes ``has_embedding`` from the
    index, not from ``embedding IS NOT NULL``, which made DuckDB read and cache the hits'
    embedding blocks (1.5 KB a row; most of the column over a few searches)."""
    storage = Storage(tmp_path / "memory.duckdb")
    await storage.initialize()
    try:
        added = await storage.add_items(_random_items(6000, seed=3))
        await storage.close()  # checkpointed: the rows are read from the file's blocks
        await storage.initialize()
        ids = [a.id for a in added]
        spread = ids[::60]  # 100 hits over the whole table
        items = await storage.get_items(spread)
        assert [i.id for i in items] == spread
        for i, item in zip(range(0, 6000, 60), items, strict=True):
            assert item.has_embedding is bool(i % 7), (i, item)  # _random_items: None if i % 7 == 0
        cached = storage.con.execute(
            "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
        ).fetchone()
        # the embedding column of 6,000 rows is 9.2 MB; the other columns ~1 MB
        assert cached is not None and int(cached[0] or 0) < 4_000_000, cached
    finally:
        await storage.close()


async def test_idle_trim_runs_once_after_a_burst_of_calls(client: Any) -> None:
    """The heap is trimmed once calls stop for ``delay``, not during a burst; every tool call
    through the server re-arms it."""
    import asyncio

    from session_buddy.adapters._memory import IdleTrim
    from session_buddy.server import app

    trim = IdleTrim(0.2)
    for _ in range(5):
        trim.touch()
        await asyncio.sleep(0.05)
    assert trim.runs == 0
    await asyncio.sleep(0.35)
    assert trim.runs == 1
    await asyncio.sleep(0.3)
    assert trim.runs == 1  # nothing new to trim after

    before = app.IDLE_TRIM.runs
    app.IDLE_TRIM.delay = 0.1
    try:
        await client.call_tool("health", {})
        await asyncio.sleep(0.3)
        assert app.IDLE_TRIM.runs == before + 1
    finally:
        app.IDLE_TRIM.delay = 1.0


async def test_the_snapshot_count_check_reads_no_table_blocks(tmp_path: Path) -> None:
    """The snapshot's item-count check counts each table from its metadata: ``count(*)``
    over the ``items`` view (a UNION ALL) scans a column of every row into DuckDB's buffer
    pool (~21 MB at 1M items, held after the open)."""
    import duckdb

    from session_buddy.adapters.storage import _snapshot

    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    await storage.add_items(_random_items(3000, seed=8))
    await storage.close()
    con = duckdb.connect(str(path))
    held = "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    before = con.execute(held).fetchone()
    assert con.execute(_snapshot.COUNT).fetchone() == (3000,)
    assert con.execute(held).fetchone() == before  # nothing read
    assert con.execute("SELECT count(*) FROM items").fetchone() == (3000,)
    assert con.execute(held).fetchone() > before  # the view's count scans
    con.close()


async def test_duckdb_stats_come_from_the_index_as_sql_counts_them(tmp_path: Path) -> None:
    """``stats`` (every ``health``) counts from the index, not with ``GROUP BY`` over the
    ``items`` view (which read the kind, project and embedding columns of every row into
    DuckDB's buffer pool): the same counts, after deletes and replacements too."""
    from session_buddy.adapters.storage import _sql

    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    added = await storage.add_items(_random_items(700, seed=9))
    await storage.delete_items([added[i].id for i in range(0, 700, 6)])
    await storage.add_items(
        [NewItem(kind="insight", content="an insight", project=None)]
        + [NewItem(kind="reflection", content=f"r {i}", project="") for i in range(3)]
    )
    await storage.close()
    for round_ in ("snapshot", "rows"):
        warm = Storage(path)
        await warm.initialize()
        assert warm.index_source == round_
        con = warm.con
        held = "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
        before = con.execute(held).fetchone()
        stats = await warm.stats()
        assert con.execute(held).fetchone() == before  # no table block read
        by_kind: dict[str, int] = {}
        by_project: dict[str, int] = {}
        embedded = 0
        for kind, project, n, with_vector in con.execute(_sql.COUNTS).fetchall():
            by_kind[kind] = by_kind.get(kind, 0) + n
            by_project[project or ""] = by_project.get(project or "", 0) + n
            embedded += with_vector
        await warm.close()
        assert stats.by_kind == by_kind and stats.by_project == by_project
        assert stats.embedded == embedded and stats.items == 700 - 117 + 4
        assert set(by_kind) == {"conversation", "reflection", "insight"}
        path.with_name("memory.duckdb.index").unlink()  # the next round rebuilds


_FULL_DISK = """
import os, resource, signal, sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from session_buddy.search import IndexEntry, SearchIndex, snapshot

folder = Path(sys.argv[1])
rng = np.random.default_rng(7)
index = SearchIndex(384)
index.add([
    IndexEntry(f"i{i}", "note", f"note number {i} about topic {i % 17}", datetime.now(UTC),
               vector=rng.standard_normal(384).astype(np.float32))
    for i in range(600)
])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
try:
    snapshot.save(index, folder / "memory.duckdb.index", "token")
except OSError as exc:
    print("failed:", exc.strerror)
print(sorted(p.name for p in folder.iterdir()))
"""


def test_a_snapshot_that_fails_mid_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A write that fails part way (here the file-size limit, as a full disk would) raises
    and removes its ``.tmp`` file: nothing is left beside the store."""
    import subprocess
    import sys

    folder = tmp_path / "store"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "failed: File too large", done.stdout + done.stderr
    assert lines[1] == "[]", lines


_OPEN_DAMAGED = """
import asyncio, json, sys
from pathlib import Path

from session_buddy.adapters._memory import rss_bytes
from session_buddy.adapters.storage.duckdb import Storage

path, damage = Path(sys.argv[1]), sys.argv[2]
snap = path.with_name(path.name + ".index")
raw = snap.read_bytes()
end = raw.index(b"\\n", 16) + 1
base, layout = int(raw[8:16]), json.loads(raw[16:end])
data = raw[base:]
if damage == "huge":  # a size no file holds: 8 TB of bools
    layout["alive"][1] = [8 * 10**12]
elif damage == "big":  # 4 GB: an allocation that would succeed, of bytes the file lacks
    layout["created"][1] = [512 * 2**20]
elif damage == "object":  # pickled objects' pointers, read from the file's bytes
    layout["evil"] = ["|O", [64], layout["created"][2]]
elif damage == "structured":
    layout["evil"] = [[["a", "|O"]], [8], 0]
elif damage == "negative":
    layout["alive"][1] = [-5]
elif damage == "not-a-layout":
    layout = [1, 2, 3]
elif damage == "truncated":
    data = data[: len(data) // 2]
elif damage == "strings":
    layout["strings"][1] = [4]  # the strings array is now '{"fo': not JSON
header = (json.dumps(layout) + "\\n").encode()
base = -(-(len(header) + 16) // 64) * 64
body = b"SBINDEX\\x00" + f"{base:08d}".encode() + header
snap.write_bytes(body + bytes(base - len(body)) + data)

async def main() -> None:
    before = rss_bytes()
    storage = Storage(path)
    await storage.initialize()
    grew = (rss_bytes() - before) >> 20
    hits = await storage.keyword_search("item3", None, 5)
    print(storage.index_source, len(storage.index), bool(hits), grew < 1024)
    await storage.close()
    again = Storage(path)
    await again.initialize()
    print(again.index_source, len(again.index))
    await again.close()

asyncio.run(main())
"""


@pytest.mark.parametrize(
    "damage",
    ["huge", "big", "object", "structured", "negative", "not-a-layout", "truncated", "strings"],
)
async def test_a_damaged_snapshot_is_rebuilt_from_the_rows(tmp_path: Path, damage: str) -> None:
    """A snapshot whose header is damaged (sizes beyond the file, object or structured
    dtypes, a header that is not a layout, a cut file) is checked before anything is
    allocated or read into: the store opens with the index rebuilt from its rows, and the
    next close writes a good snapshot again. A fresh process each time: the old reader
    died of some of these (MemoryError, pointers read from the file)."""
    import subprocess
    import sys

    path = tmp_path / "memory.duckdb"
    storage = Storage(path)
    await storage.initialize()
    await storage.add_items(_random_items(300, seed=8))
    await storage.close()
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_DAMAGED, str(path), damage],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["rows 300 True True", "snapshot 300"], done.stdout


def test_bulk_writes_set_the_binary_codes_of_every_row(tmp_path: Path) -> None:
    """Every row given to ``set_many`` gets its sign bits, whatever the path: bulk adds
    (>= BULK entries) with rows without a vector among them, replacements, ``set_vector``,
    a compaction and a snapshot load followed by more writes. The Hamming distances of the
    present rows are those computed from the vectors the test gave."""
    from session_buddy.search import snapshot

    rng = np.random.default_rng(11)
    dimension = 100  # not a multiple of 64: the last word is partly padding
    given: dict[str, np.ndarray] = {}

    def batch(ids: list[str], with_vector: float = 0.7) -> list[IndexEntry]:
        out = []
        for item_id in ids:
            vec = rng.standard_normal(dimension).astype(np.float32)
            keep = rng.random() < with_vector
            given.pop(item_id, None)
            if keep:
                given[item_id] = vec
            out.append(
                IndexEntry(item_id, "note", f"text {item_id}", BASE, vector=vec if keep else None)
            )
        return out

    def check(index: SearchIndex) -> None:
        q = rng.standard_normal(dimension).astype(np.float32)
        rows = np.asarray([index._row(i) for i in given])
        assert index.vectors.count == len(given)
        assert bool(index.vectors.present[rows].all())
        want = np.stack([((v > 0) != (q > 0)).sum() for v in given.values()])
        np.testing.assert_array_equal(index.vectors.hamming(q, rows, index._size), want)
        np.testing.assert_array_equal(
            index.vectors.codes[:, rows], binary_codes(np.stack(list(given.values())))
        )

    vectors = FileRows(dimension, tmp_path, tmp_path / "v", keep=True)
    index = SearchIndex(dimension, exact=vectors)
    index.add(batch([f"a{i}" for i in range(3000)]))  # bulk, 30% without a vector
    index.add(batch([f"a{i}" for i in range(0, 3000, 3)]))  # replaced, in bulk
    check(index)
    for i in range(5, 3000, 97):
        vec = rng.standard_normal(dimension).astype(np.float32)
        index.set_vector(f"a{i}", vec)
        given[f"a{i}"] = vec
    check(index)
    gone = [f"a{i}" for i in range(0, 3000, 2)]
    index.remove(gone)  # half the rows dead: compacted
    for item_id in gone:
        given.pop(item_id, None)
    assert index._dead == 0
    check(index)
    vectors.sync()
    snapshot.save(index, tmp_path / "s", "t")
    vectors.close()
    vectors = FileRows(dimension, tmp_path, tmp_path / "v", keep=True)
    loaded = snapshot.load(tmp_path / "s", "t", dimension, vectors)
    assert loaded is not None
    check(loaded)
    loaded.add(batch([f"b{i}" for i in range(5000)], with_vector=0.5))  # grows every array
    loaded.add(batch([f"a{i}" for i in range(1, 3000, 4)] + [f"b{i}" for i in range(0, 5000, 5)]))
    check(loaded)
    loaded.close()
