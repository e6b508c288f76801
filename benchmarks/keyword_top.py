"""One keyword pass in process: exhaustive BM25 (every posting of every query term, then the
best ``k``) against the pruned top-k (``KeywordIndex.top``, MaxScore), on the same index in
the same run, with a check that the two give the same rows in the same order and the same
scores.

The index is built directly (``KeywordIndex.add_many``, no store, no model) from the texts
of ``search_latency.py`` with the ``(note N)`` suffix ``scale.py`` stores them with, so
"note" is in every row and "fix", "error", the module names in large shares of them. The
queries are those of ``scale.py`` (a ``QUERIES`` text and a number), and for each one its
feedback pass: the ten words of its first three hits that ``refine.expansion_words`` picks,
as the hybrid search's second keyword query does.

    .venv/bin/python benchmarks/keyword_top.py [--sizes 100000,1000000] [--queries 100] [--k 100]
        [--repeat 3]

Building 1M rows takes about a minute and ~1 GB.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_latency import QUERIES, TEMPLATES, make_text, percentile

from session_buddy.search.keyword import KeywordIndex
from session_buddy.search.refine import expansion_words
from session_buddy.search.tokens import clear_caches, query_terms, tokenize


def build(size: int, seed: int = 7) -> tuple[KeywordIndex, list[str]]:
    """The index of ``size`` texts (and the texts, for the feedback words)."""
    rng = random.Random(seed)
    index = KeywordIndex()
    index.ensure_capacity(size)
    texts: list[str] = []
    for start in range(0, size, 10_000):
        batch = [
            f"{make_text(rng, TEMPLATES)} (note {start + i})"
            for i in range(min(10_000, size - start))
        ]
        texts.extend(batch)
        index.add_many(start, [tokenize(t) for t in batch])
    clear_caches()
    return index, texts


def exhaustive(
    index: KeywordIndex, terms: list[str], size: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of the full score array: score descending, then row ascending (the
    order ``SearchIndex._top`` gives)."""
    scores = index.scores(terms, size)
    if scores is None:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows = np.flatnonzero(scores > 0)
    if len(rows) > k:
        kth = np.partition(scores[rows], len(rows) - k)[len(rows) - k]
        rows = rows[scores[rows] >= kth]  # every tie of the k-th, then sorted and cut
    best = np.lexsort((rows, -scores[rows]))[:k]
    return rows[best], scores[rows[best]]


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000


def run(size: int, queries: int, k: int, repeat: int) -> None:
    t0 = time.perf_counter()
    index, texts = build(size)
    print(
        f"{size:,} rows: built in {time.perf_counter() - t0:.0f} s, {index.vocabulary:,} terms, "
        f"{len(index._rows) + index._tail_tid.size:,} postings",
        flush=True,
    )
    measure(index, texts, queries, k, repeat)


def measure(index: KeywordIndex, texts: list[str], queries: int, k: int, repeat: int) -> None:
    size = len(texts)
    rng = random.Random(size)
    passes: list[tuple[str, list[str]]] = []
    for n in range(queries):
        query = f"{make_text(rng, QUERIES)} {n}"
        terms = query_terms(query)
        passes.append(("query", terms))
        found = index.top(terms, size, 3)
        if found is not None and len(found[0]):
            scored = [(texts[r], float(s)) for r, s in zip(*found, strict=True)]
            words = expansion_words(query, scored, 3, 10)
            if words:
                passes.append(("feedback", query_terms(" ".join(words))))
    mask = np.ones(size, dtype=bool)
    for _, terms in passes[:5]:  # warm up (page in, caches)
        exhaustive(index, terms, size, k)
        index.top(terms, size, k, mask)
    times: dict[str, dict[str, list[float]]] = {
        kind: {"exhaustive": [], "pruned": []} for kind in ("query", "feedback")
    }
    mismatches, pruned = 0, 0
    for kind, terms in passes:
        gc.collect()
        # each pass timed `repeat` times, interleaved, its best kept: the other processes of
        # a shared machine add noise, not the pass
        ms_a, ms_b = float("inf"), float("inf")
        for _ in range(repeat):
            (rows_a, scores_a), ms = timed(exhaustive, index, terms, size, k)
            ms_a = min(ms_a, ms)
            found, ms = timed(index.top, terms, size, k, mask)
            ms_b = min(ms_b, ms)
        rows_b, scores_b = found if found is not None else (np.zeros(0), np.zeros(0))
        pruned += index.pruned > 0
        if not (np.array_equal(rows_a, rows_b) and np.array_equal(scores_a, scores_b)):
            mismatches += 1
        times[kind]["exhaustive"].append(ms_a)
        times[kind]["pruned"].append(ms_b)
    for kind, by in times.items():
        a, b = by["exhaustive"], by["pruned"]
        if not a:
            continue
        print(
            f"  {kind:8} passes {len(a):3}: exhaustive p50 {statistics.median(a):6.1f} ms "
            f"p95 {percentile(a, 0.95):6.1f} ms | pruned p50 {statistics.median(b):6.1f} ms "
            f"p95 {percentile(b, 0.95):6.1f} ms | ratio p50 "
            f"{statistics.median(a) / statistics.median(b):.2f}x p95 "
            f"{percentile(a, 0.95) / percentile(b, 0.95):.2f}x",
            flush=True,
        )
    verdict = "identical" if not mismatches else f"DIFFERENT in {mismatches} passes"
    print(
        f"  top-{k} rows, order and scores: {verdict} over {len(passes)} passes "
        f"({pruned} pruned some terms)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="timings of each pass (best kept)")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        run(size, args.queries, args.k, args.repeat)
        gc.collect()


if __name__ == "__main__":
    main()
