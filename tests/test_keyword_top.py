"""The pruned keyword top-k (``KeywordIndex.top``, MaxScore) against the exhaustive one
(every posting scored, ``KeywordIndex.scores``, then sorted): the same rows in the same order
with the same float32 scores, on a corpus with a skewed vocabulary (a few terms in over half
the rows, a long tail of rare ones, repeated terms, short and long documents, duplicate
documents for ties), for queries mixing rare and common terms, k 1 / 10 / 100, filters,
deleted rows, postings still in the tail, and postings mapped from a snapshot."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from session_buddy.adapters.storage._base import ItemFilter
from session_buddy.search import IndexEntry, SearchIndex, keyword, query_terms, snapshot, tokenize
from session_buddy.search.keyword import KeywordIndex
from session_buddy.search.vector import FileRows

MODULES = ["auth", "billing", "scheduler", "ingest", "search", "storage", "api", "cache"]
ERRORS = [f"{w}error" for w in ("timeout", "key", "value", "permission", "integrity")] + [
    "deadlock",
    "segfault",
    "overflow",
    "handshake",
    "ratelimit",
]
FILLER = "retry backoff pool index lock queue batch stream token parser config worker".split()  # noqa: SIM905
QUERIES = [
    "note",  # nearly every row
    "note fixed error tests",  # only terms in over half the rows
    "fixed timeouterror in auth",
    "fixed error tests lock",
    "segfault fixed error tests queue",
    "why does billing fail with deadlock",
    "auth_17 raises error",
    "tests fixed note segfault storage_3 retry",
    "error 4242",
    "ingest ratelimit backoff note tests",
    "search_5 search_6 search_7 note",
    "handshake overflow keyerror lock queue fixed",
    "zzz nothing here",  # no term in the index
    "cache",
    # cases a bound too low gets wrong (see test_an_unsafe_bound_is_caught)
    "fixed 43 16",
    "note 39 38 35",
    "7 39 19 6 fixed 24",
    "deadlock handshake",
    "ratelimit overflow",
    "6 fixed auth_17 auth_10 storage ratelimit",
    "37 fixed auth_19",
    "handshake error",
]
KS = (1, 10, 100)


def random_queries(count: int, seed: int = 1) -> list[str]:
    """2-6 words of the corpus' vocabulary, common, mid and rare mixed."""
    rng = random.Random(seed)
    vocab = ["note", "fixed", "error", "tests", *FILLER, *MODULES, *ERRORS]
    vocab += [f"auth_{i}" for i in range(1, 20)] + [str(i) for i in range(1, 50)]
    return [" ".join(rng.sample(vocab, rng.randint(2, 6))) for _ in range(count)]


def make_texts(n: int, seed: int = 11) -> list[str]:
    """Coding-memory-like texts: "note" in almost every one, "fixed" in ~70%, "error" ~60%,
    "tests" ~55%, a module (skewed), an error kind, a rare file id, numbers, filler words
    (some repeated: tf > 1) to vary the length; one in twenty is a short text of common
    words only, one in ten repeats an earlier text (ties)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.1:
            texts.append(rng.choice(texts))
            continue
        if rng.random() < 0.05:  # a short one of common words, repeated: near their bounds
            common = ["fixed", "error", "tests", rng.choice(FILLER)]
            texts.append(" ".join(w for w in common for _ in range(rng.randint(1, 4))))
            continue
        words = ["note"]
        if rng.random() < 0.7:
            words.append("fixed")
        if rng.random() < 0.6:
            words.append("error")
        if rng.random() < 0.55:
            words.append("tests")
        module = MODULES[min(int(rng.expovariate(0.5)), len(MODULES) - 1)]
        words += [module, rng.choice(ERRORS), f"{module}_{rng.randint(1, 60)}"]
        words += [str(rng.randint(1, 5000)) for _ in range(rng.randint(0, 2))]
        words += rng.choices(FILLER, k=rng.choice((0, 1, 3, 8, 20)))
        if rng.random() < 0.2:
            words += [rng.choice(words)] * rng.randint(1, 4)
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


def exhaustive(
    kw: KeywordIndex, terms: list[str], size: int, k: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The best k of every row's score: score descending, then row ascending."""
    scores = kw.scores(terms, size)
    if scores is None:
        return None
    if mask is not None:
        scores = scores * mask[:size]
    rows = np.flatnonzero(scores > 0)
    best = np.lexsort((rows, -scores[rows]))[:k]
    return rows[best], scores[rows[best]]


def same(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # bit for bit


def build(texts: list[str]) -> KeywordIndex:
    """Most rows in bulk (merged into the frozen arrays), the last 300 one by one: their
    postings stay in the tail."""
    kw = KeywordIndex()
    kw.ensure_capacity(len(texts))
    bulk = len(texts) - 300
    for start in range(0, bulk, 1000):
        kw.add_many(start, [tokenize(t) for t in texts[start : min(start + 1000, bulk)]])
    kw._merge()
    for row in range(bulk, len(texts)):
        kw.add(row, tokenize(texts[row]))
    return kw


@pytest.fixture(scope="module")
def corpus() -> tuple[KeywordIndex, list[str]]:
    texts = make_texts(6000)
    return build(texts), texts


def masks(size: int) -> list[np.ndarray | None]:
    rng = np.random.default_rng(5)
    few = np.zeros(size, dtype=bool)
    few[rng.choice(size, 40, replace=False)] = True  # fewer rows than k: no floor
    return [None, rng.random(size) < 0.3, few]


def mismatches(kw: KeywordIndex, size: int) -> tuple[list[tuple[str, int, int]], int]:
    """The (query, k, mask) cases where pruned and exhaustive differ, and how many cases
    pruned some term."""
    bad, pruned = [], 0
    cases = [(q, m) for q in QUERIES for m in range(3)] + [(q, 0) for q in random_queries(300)]
    all_masks = masks(size)
    for query, m in cases:
        terms = query_terms(query)
        for k in KS:
            got = kw.top(terms, size, k, all_masks[m])
            pruned += kw.pruned > 0
            if not same(got, exhaustive(kw, terms, size, k, all_masks[m])):
                bad.append((query, k, m))
    return bad, pruned


def test_the_corpus_is_skewed_and_partly_in_the_tail(
    corpus: tuple[KeywordIndex, list[str]],
) -> None:
    kw, texts = corpus
    share = {
        t: int(kw._df[kw._terms.find(t)]) / len(texts) for t in ("note", "fix", "error", "test")
    }
    assert share["note"] > 0.9 and all(v > 0.5 for v in share.values()), share
    assert kw._tail_tid.size > 0 and len(kw._rows) > 0
    # the pruning relies on the rows of a term ascending in its postings
    for tid in range(0, kw.vocabulary, 97):
        rows, _ = kw.postings(tid)
        assert np.all(np.diff(rows) > 0)


def test_pruned_top_k_is_the_exhaustive_top_k(corpus: tuple[KeywordIndex, list[str]]) -> None:
    kw, texts = corpus
    bad, pruned = mismatches(kw, len(texts))
    assert not bad
    assert pruned >= len(QUERIES) * len(KS)  # the pruning is exercised, not bypassed
    # the rows above ``size`` are left out as by the exhaustive scoring
    for query in QUERIES[:4]:
        terms = query_terms(query)
        assert same(kw.top(terms, 5000, 10), exhaustive(kw, terms, 5000, 10))


def test_ties_are_broken_by_row(corpus: tuple[KeywordIndex, list[str]]) -> None:
    kw, texts = corpus
    got = kw.top(query_terms("note"), len(texts), 100)
    assert got is not None
    rows, scores = got
    assert len(set(scores.tolist())) < len(scores)  # duplicate texts: tied scores
    for r, s in zip(rows.tolist(), scores.tolist(), strict=True):
        tied = rows[scores == s]
        assert list(tied) == sorted(tied), r


@pytest.mark.parametrize("broken", ["length", "saturation"])
def test_an_unsafe_bound_is_caught(
    corpus: tuple[KeywordIndex, list[str]], monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    """The cases above tell when the pruning is unsafe: with a bound that forgets short
    documents (the average length's norm instead of the shortest's), or half the
    saturation bound of the terms in over half the rows, the pruning loses true hits."""
    kw, texts = corpus
    real = keyword._bound

    def bound(idf: float, max_tf: float, k1: float, b: float) -> float:
        if max_tf == float("inf"):
            return real(idf, max_tf, k1, b) * (0.5 if broken == "saturation" else 1.0)
        if broken == "length":
            return idf * (k1 + 1.0) * max_tf / (max_tf + k1)
        return real(idf, max_tf, k1, b)

    monkeypatch.setattr(keyword, "_bound", bound)
    bad, _ = mismatches(kw, len(texts))
    assert bad


def test_after_deletes_and_with_filters_through_the_search_index(tmp_path: Path) -> None:
    """``SearchIndex.keyword_search`` (the pruned top-k) against the exhaustive scores with
    the same filter mask, after deletes, and again on the index loaded from a snapshot
    (postings mapped from the file)."""
    texts = make_texts(4000, seed=3)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    index = SearchIndex(4)
    entries = [
        IndexEntry(
            id=f"i{n}",
            kind="conversation" if n % 3 else "reflection",
            content=text,
            created_at=start + timedelta(minutes=n),
            project=f"p{n % 4}",
        )
        for n, text in enumerate(texts)
    ]
    index.add(entries[:3500])
    for entry in entries[3500:]:
        index.add([entry])
    index.remove([f"i{n}" for n in range(0, 4000, 9)])  # dead rows: postings stay
    flts = [None, ItemFilter(projects=["p1"]), ItemFilter(kinds=["reflection"], projects=["p2"])]

    def check(idx: SearchIndex) -> int:
        pruned = 0
        for query in QUERIES:
            terms = query_terms(query)
            for k in KS:
                for flt in flts:
                    hits = idx.keyword_search(query, flt, k)
                    pruned += idx.keyword.pruned > 0
                    want = exhaustive(idx.keyword, terms, idx._size, k, idx._mask(flt))
                    rows, scores = want if want is not None else (np.zeros(0, int), [])
                    assert [h.id for h in hits] == idx._ids.values(rows), (query, k, flt)
                    assert [h.score for h in hits] == list(scores), (query, k, flt)
        return pruned

    assert check(index) >= len(QUERIES)
    path = tmp_path / "index.snapshot"
    snapshot.save(index, path, "token")
    loaded = snapshot.load(path, "token", 4, FileRows(4, tmp_path))
    assert loaded is not None
    assert not loaded.keyword._rows.flags.owndata  # mapped from the file, not copied
    assert check(loaded) >= len(QUERIES)


def test_writes_between_searches_renew_the_length_norms() -> None:
    """The rows' length norms are kept between searches: a search after adds and removes
    scores as an index that never searched before them (and as the exhaustive scoring)."""
    texts = make_texts(3000, seed=8)
    used, fresh = KeywordIndex(), KeywordIndex()
    terms = query_terms("fixed timeouterror tests auth note")
    for kw in (used, fresh):
        kw.ensure_capacity(len(texts))
        kw.add_many(0, [tokenize(t) for t in texts[:2500]])
    assert used.top(terms, 3000, 10) is not None  # norms kept: rows 2,500.. still empty
    for kw in (used, fresh):
        for row in range(2500, 3000):
            kw.add(row, tokenize(texts[row]))
        for row in range(0, 3000, 5):
            kw.remove(row)
    alive = used._row_n[:3000] > 0
    for k in KS:
        got = used.top(terms, 3000, k, alive)
        assert same(got, fresh.top(terms, 3000, k, alive))
        assert same(got, exhaustive(fresh, terms, 3000, k, alive))
