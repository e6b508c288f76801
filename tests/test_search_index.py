"""The in-process search index: tokenisation, incremental BM25, exact filtered vector top-k,
compaction, hybrid fusion and the confidence rule."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from session_buddy.adapters.storage._base import Hit, ItemFilter
from session_buddy.errors import DimensionMismatch
from session_buddy.search import IndexEntry, SearchIndex, hybrid, query_terms, tokenize, vector
from session_buddy.search import index as index_module
from session_buddy.search.keyword import K1, B

BASE = datetime(2024, 1, 1, tzinfo=UTC)


# -- tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ERR_CONN_4021", ["err_conn_4021", "err", "conn", "4021"]),
        ("snake_case", ["snake_case", "snake", "case"]),
        ("CamelCase", ["camelcase", "camel", "case"]),
        ("HTTPServerError", ["httpservererror", "http", "server", "error"]),
        ("os.path.join", ["os.path.join", "os", "path", "join"]),
        ("src/api/routes.py", ["src/api/routes.py", "routes.py", "src", "api", "rout", "py"]),
        ("The tests were failing", ["test", "fail"]),
        ("café Straße", ["café", "straße"]),
        ("a I x 7", ["7"]),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_query_terms_are_distinct_and_sentence_punctuation_is_ignored() -> None:
    assert query_terms("Error, error. ERROR!") == ["error"]
    assert tokenize("It ended.") == ["end"]


# -- BM25 ------------------------------------------------------------------------------------


def reference_bm25(docs: dict[str, str], query: str) -> dict[str, float]:
    toks = {i: tokenize(t) for i, t in docs.items()}
    n = len(toks)
    avgdl = sum(len(t) for t in toks.values()) / n
    scores: dict[str, float] = {}
    for term in query_terms(query):
        df = sum(1 for t in toks.values() if term in t)
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, t in toks.items():
            tf = t.count(term)
            if tf:
                norm = K1 * (1 - B + B * len(t) / avgdl)
                scores[i] = scores.get(i, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
    return scores


def make_docs(n: int, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "error",
        "cache",
        "redis",
        "deploy",
        "ERR_X_1",
        "parse_config",
    ]
    return {f"d{i}": " ".join(rng.choice(words, size=int(rng.integers(3, 15)))) for i in range(n)}


def entries(docs: dict[str, str], vectors: np.ndarray | None = None) -> list[IndexEntry]:
    return [
        IndexEntry(
            id=i,
            kind="conversation" if k % 2 else "reflection",
            content=t,
            created_at=BASE + timedelta(hours=k),
            project=f"p{k % 3}",
            session_id=f"s{k % 4}",
            role="user" if k % 2 else None,
            tags=("even",) if k % 2 == 0 else ("odd", f"t{k % 5}"),
            vector=None if vectors is None else vectors[k],
        )
        for k, (i, t) in enumerate(docs.items())
    ]


@pytest.mark.parametrize("bulk", [False, True])
def test_bm25_matches_reference_after_adds_and_deletes(bulk: bool) -> None:
    docs = make_docs(300)
    index = SearchIndex(4)
    if bulk:
        index.add(entries(docs))
    else:
        for e in entries(docs):
            index.add([e])
    removed = [f"d{i}" for i in range(0, 300, 7)]
    index.remove(removed)
    live = {i: t for i, t in docs.items() if i not in removed}
    for query in ("error cache", "ERR_X_1", "parse config", "redis deploy alpha", "zzz"):
        expected = reference_bm25(live, query)
        hits = index.keyword_search(query, None, 1000)
        assert {h.id for h in hits} == set(expected)
        for h in hits:
            assert h.score == pytest.approx(expected[h.id], rel=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bulk_and_incremental_adds_give_the_same_scores() -> None:
    docs = make_docs(200, seed=3)
    one, bulk = SearchIndex(4), SearchIndex(4)
    for e in entries(docs):
        one.add([e])
    bulk.add(entries(docs))
    more = make_docs(100, seed=4)
    more = {f"m{k}": v for k, v in more.items()}
    one.add(entries(more))
    for e in entries(more):
        bulk.add([e])
    for query in ("error cache", "ERR_X_1 beta", "gamma"):
        a = {h.id: h.score for h in one.keyword_search(query, None, 1000)}
        b = {h.id: h.score for h in bulk.keyword_search(query, None, 1000)}
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5)


# -- filters and vectors ---------------------------------------------------------------------


def brute(index_docs: list[IndexEntry], flt: ItemFilter, q: np.ndarray, k: int) -> list[str]:
    def ok(e: IndexEntry) -> bool:
        return (
            (flt.projects is None or e.project in flt.projects)
            and (flt.kinds is None or e.kind in flt.kinds)
            and (flt.role is None or e.role == flt.role)
            and (flt.session_id is None or e.session_id == flt.session_id)
            and (flt.after is None or e.created_at >= flt.after)
            and (flt.before is None or e.created_at < flt.before)
            and (not flt.tags or set(flt.tags) <= set(e.tags))
            and (flt.ids is None or e.id in flt.ids)
        )

    scored = [(float(e.vector @ q), e.id) for e in index_docs if ok(e) and e.vector is not None]
    scored.sort(key=lambda s: -s[0])
    return [i for _, i in scored[:k]]


FILTERS = [
    ItemFilter(),
    ItemFilter(projects=["p1"]),
    ItemFilter(projects=["p0", "p2"], kinds=["reflection"]),
    ItemFilter(role="user", session_id="s1"),
    ItemFilter(after=BASE + timedelta(hours=100), before=BASE + timedelta(hours=200)),
    ItemFilter(tags=["odd", "t3"]),
    ItemFilter(ids={"d1", "d2", "d3", "d500"}),
    ItemFilter(projects=["unknown"]),
]


@pytest.fixture
def exhaustive_rescoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every selected row rescored exactly: for tests of filters and compaction on random
    low-dimensional vectors, whose few sign bits rank poorly. The binary first stage itself
    is checked on model vectors (tests/test_index_memory.py) and on clustered vectors below."""
    monkeypatch.setattr(vector, "RESCORE_MIN", 1_000_000)


@pytest.mark.usefixtures("exhaustive_rescoring")
@pytest.mark.parametrize("flt", FILTERS)
def test_filtered_vector_search_is_exact(flt: ItemFilter) -> None:
    rng = np.random.default_rng(5)
    docs = make_docs(600)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = entries(docs, vectors)
    index = SearchIndex(16)
    index.add(items)
    for _ in range(5):
        q = rng.standard_normal(16).astype(np.float32)
        q /= np.linalg.norm(q)
        got = [h.id for h in index.vector_search(q, flt, 10)]
        assert got == brute(items, flt, q, 10)
    kw = {h.id for h in index.keyword_search("error", flt, 1000)}
    allowed = set(brute(items, flt, vectors[0], 10_000))
    assert kw <= allowed
    assert index.count(flt) == len(allowed)


def test_vector_dimension_is_checked() -> None:
    index = SearchIndex(8)
    with pytest.raises(DimensionMismatch, match="8-dimensional"):
        index.add(
            [IndexEntry(id="a", kind="reflection", content="x", created_at=BASE, vector=np.ones(9))]
        )
    with pytest.raises(DimensionMismatch):
        index.vector_search(np.ones(3), None, 5)


@pytest.mark.usefixtures("exhaustive_rescoring")
def test_compaction_keeps_results_identical() -> None:
    rng = np.random.default_rng(9)
    docs = make_docs(5000, seed=9)
    vectors = rng.standard_normal((5000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = entries(docs, vectors)
    index = SearchIndex(8)
    index.add(items)
    gone = {f"d{i}" for i in range(5000) if i % 3}
    index.remove(sorted(gone))
    assert index._dead == 0  # compacted
    live_items = [e for e in items if e.id not in gone]
    fresh = SearchIndex(8)
    fresh.add(live_items)
    q = vectors[1]
    flt = ItemFilter(tags=["odd"], projects=["p0", "p1"])
    assert [h.id for h in index.vector_search(q, flt, 20)] == brute(live_items, flt, q, 20)
    a = index.keyword_search("cache ERR_X_1", flt, 50)
    b = fresh.keyword_search("cache ERR_X_1", flt, 50)
    assert [h.id for h in a] == [h.id for h in b]
    # writes after compaction still work
    index.add([IndexEntry(id="new", kind="insight", content="zanzibar", created_at=BASE, vector=q)])
    assert [h.id for h in index.keyword_search("zanzibar", None, 5)] == ["new"]
    assert index.vector_search(q, ItemFilter(kinds=["insight"]), 1)[0].id == "new"


def test_compaction_with_items_without_terms_keeps_each_rows_terms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Items whose content gives no terms ("!!!") stay live rows without postings: after a
    compaction every other row's term count and offset are at its new row, so removing or
    replacing an item takes back its own terms' document frequencies, not a neighbour's."""
    monkeypatch.setattr(index_module, "COMPACT_MIN", 8)

    def entry(item_id: str, content: str, k: int) -> IndexEntry:
        return IndexEntry(
            id=item_id, kind="conversation", content=content, created_at=BASE + timedelta(k)
        )

    items = [
        entry(f"i{k}", "!!!" if k % 3 == 0 else f"common {'q' + 'abcdefghij'[k % 10] * (k + 1)}", k)
        for k in range(30)
    ]
    index = SearchIndex(4)
    index.add(items)
    index.add([entry(f"f{k}", "filler", 100 + k) for k in range(12)])
    index.remove([f"f{k}" for k in range(12)])
    assert index._dead == 0  # compacted: the rows without terms are among the kept ones
    gone = {"i1", "i5", "i13", "i20"}
    index.remove(sorted(gone))
    replaced = entry("i8", "common zanzibar", 200)
    index.add([replaced])
    live = [e for e in items if e.id not in gone and e.id != "i8"] + [replaced]
    fresh = SearchIndex(4)
    fresh.add(live)
    for e in live:
        for word in tokenize(e.content):
            want = [(h.id, h.score) for h in fresh.keyword_search(word, None, 50)]
            assert [(h.id, h.score) for h in index.keyword_search(word, None, 50)] == want
            assert e.id in [i for i, _ in want]


def test_removing_items_without_terms_scores_as_a_fresh_index() -> None:
    """An item whose content gives no terms counts in BM25's document count while it lives
    (as in a rebuild from the rows) and leaves it when removed."""
    docs = make_docs(60, seed=5)
    for k in range(0, 60, 4):
        docs[f"d{k}"] = "!!! ..."
    index = SearchIndex(4)
    index.add(entries(docs))
    gone = [f"d{k}" for k in range(0, 60, 8)]  # half of those without terms
    index.remove(gone)
    live = {i: t for i, t in docs.items() if i not in gone}
    fresh = SearchIndex(4)
    fresh.add(entries(live))
    assert index.keyword.live == fresh.keyword.live == len(live)
    for query in ("error cache", "ERR_X_1", "redis deploy alpha"):
        want = [(h.id, h.score) for h in fresh.keyword_search(query, None, 100)]
        assert [(h.id, h.score) for h in index.keyword_search(query, None, 100)] == want
        assert {i for i, _ in want} == set(reference_bm25(live, query))


# -- fusion and confidence -------------------------------------------------------------------


def test_rrf_fusion_normalises_to_one() -> None:
    kw = [Hit("a", 9.0), Hit("b", 5.0)]
    sem = [Hit("a", 0.7), Hit("c", 0.6)]
    fused = hybrid.fuse([kw, sem], 60, kinds=["keyword", "semantic"])
    assert [f.id for f in fused] == ["a", "b", "c"] or [f.id for f in fused] == ["a", "c", "b"]
    assert fused[0].score == pytest.approx(1.0)
    assert fused[0].keyword_score == 9.0 and fused[0].semantic_score == 0.7
    assert all(0 < f.score <= 1 for f in fused)
    single = hybrid.fuse([kw], 60, kinds=["keyword"])
    assert single[0].score == pytest.approx(1.0) and single[1].score < 1.0
    assert hybrid.fuse([], 60, kinds=[]) == []


def test_decay() -> None:
    now = BASE
    assert hybrid.decay(now - timedelta(days=30), now, 30) == pytest.approx(0.5)
    assert hybrid.decay(now - timedelta(days=30), now, 0) == 1.0
    assert hybrid.decay(now + timedelta(days=1), now, 30) == 1.0


def test_confidence_rules() -> None:
    assert hybrid.semantic_level(0.6) == "high"
    assert hybrid.semantic_level(0.4) == "medium"
    assert hybrid.semantic_level(0.25) == "low"
    assert hybrid.semantic_level(0.1) == "none"
    assert hybrid.semantic_level(None) == "none"
    groups = hybrid.query_groups("ERR_CONN_4021")
    assert hybrid.keyword_level(groups, "failed with ERR_CONN_4021 today") == "high"
    assert hybrid.keyword_level(groups, "failed with ERR_CONN_4022 today") == "low"
    assert hybrid.keyword_level(groups, "nothing related") == "none"
    two = hybrid.query_groups("redis timeout")
    assert hybrid.keyword_level(two, "Redis timeouts again") == "high"
    assert hybrid.keyword_level(two, "redis is fine") == "low"
    assert hybrid.keyword_level(hybrid.query_groups("redis"), "redis") == "medium"
    assert hybrid.best_level("low", "none", "medium") == "medium"
    assert hybrid.best_level() == "none"


# -- scale -----------------------------------------------------------------------------------


def test_keyword_plus_vector_at_scale_agree_with_exact_search() -> None:
    """At 20k items the index's vector top-k is numpy's exact top-k and keyword hits hold the
    query's terms (speed is measured by benchmarks/search_latency.py, not here). The vectors
    are clustered like real ones (2,000 centres, ten noisy copies of each: the top 10 are a
    centre's copies, close in cosine), not uniform noise, whose sign bits carry no order."""
    n = 20_000
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    p = 1 / np.arange(1, 5001) ** 1.05
    p /= p.sum()
    words = rng.choice(vocab, size=n * 25, p=p)
    centres = rng.standard_normal((2000, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, 384)).astype(np.float32) * 0.03
    vectors = centres[np.arange(n) % 2000] + noise  # ten copies of each centre
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = SearchIndex(384)
    index.add(
        [
            IndexEntry(
                id=f"i{i}",
                kind="conversation",
                content=" ".join(words[i * 25 : i * 25 + 25]),
                created_at=BASE,
                project=f"p{i % 10}",
                vector=vectors[i],
            )
            for i in range(n)
        ]
    )
    for i in range(10):
        exact = np.argsort(-(vectors @ vectors[i]))[:10]
        got = [hit.id for hit in index.vector_search(vectors[i], None, 10)]
        assert got == [f"i{j}" for j in exact]
        query = " ".join(rng.choice(vocab[1000:2000], size=2))
        for hit in index.keyword_search(query, None, 5):
            text = set(words[int(hit.id[1:]) * 25 : int(hit.id[1:]) * 25 + 25])
            assert text & set(query.split())
    # an item added now is found at once, without a rebuild
    index.add([IndexEntry(id="new", kind="reflection", content="zanzibar w1", created_at=BASE)])
    assert index.keyword_search("zanzibar", None, 5)[0].id == "new"
    assert Counter(h.id for h in index.keyword_search("w1", ItemFilter(ids={"new"}), 5)) == {
        "new": 1
    }


def test_membership_is_answered_under_the_lock_during_compactions() -> None:
    """``id in index`` takes the index's lock like every other read: a thread asking about
    ids that are always there, while another thread writes them again (a replacement moves
    an id to a new row) and adds and removes enough rows to compact the index again and
    again, always gets True (without the lock it could see an id between its old row and
    its new one, or the ids of one layout against the rows of the next)."""
    import sys
    import threading

    index = SearchIndex(4)
    rng = np.random.default_rng(0)
    keep = [f"keep{i}" for i in range(50)]
    index.add([IndexEntry(i, "note", f"kept {i}", BASE) for i in keep])
    stop = threading.Event()
    wrong: list[str] = []

    def ask() -> None:
        while not stop.is_set():
            try:
                absent = [i for i in keep if i not in index]
                if absent:
                    wrong.append(f"absent: {absent[:3]}")
            except Exception as exc:  # any failure is the answer
                wrong.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the race shows within the rounds
    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for round_ in range(20):
            batch = [f"r{round_}-{i}" for i in range(2000)]
            vectors = rng.standard_normal((len(batch), 4)).astype(np.float32)
            index.add(
                [
                    IndexEntry(i, "note", f"row {i}", BASE, vector=v)
                    for i, v in zip(batch, vectors, strict=True)
                ]
                + [IndexEntry(i, "note", f"kept {i} again", BASE) for i in keep]  # new rows
            )
            index.remove(batch)  # dead rows past the threshold: compacted
            assert index._dead == 0 and len(index) == len(keep)
            if len(wrong) > 20:
                break
    finally:
        stop.set()
        asker.join()
        sys.setswitchinterval(interval)
    assert wrong == [], wrong[:5]
