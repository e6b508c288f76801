"""Recall and speed of the vector ranker's binary first stage (``search/vector.py``).

The ranker scores every selected row by the Hamming distance of its sign bits to the
query's, keeps the ``max(limit * FACTOR, MIN)`` nearest and rescores those on the exact
float32 vectors. This measures, against exact float search:

- recall@1 (the exact top hit comes first) and recall@10 (share of the exact top 10
  returned) for several candidate counts, unfiltered and with a filter that keeps one
  project in seven;
- the ranker's time (``VectorIndex.scores``, limit 10) p50 / p95 with the exact rows in
  RAM (memory backend) and in a file read with ``pread`` (DuckDB), and the bytes a row.

Vectors are real: the ONNX model embeds the LoCoMo turns of ``../shared/data`` and template
texts of ``search_latency.py`` (10k texts), the queries are the LoCoMo questions and
template queries. Larger sizes repeat those vectors with a small random perturbation
(renormalised), as ``scale.py`` fills its stores.

    .venv/bin/python benchmarks/vector_recall.py [--sizes 10000,100000,1000000]
        [--cache /tmp/vectors.npz] [--keeps 40,64,100,200,400] [--timed 100]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_latency import QUERIES, TEMPLATES, make_text, percentile

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo-dev.json"


def real_vectors(cache: Path | None, count: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """(text vectors, query vectors) from the model, or from ``cache`` when it holds them."""
    if cache is not None and cache.is_file():
        saved = np.load(cache)
        return saved["texts"], saved["queries"]
    from session_buddy.adapters.embeddings.onnx import Embeddings
    from session_buddy.settings import SessionBuddySettings

    turns: list[str] = []
    questions: list[str] = []
    if LOCOMO.is_file():
        for sample in json.loads(LOCOMO.read_text(encoding="utf-8")):
            for key, session in sample["conversation"].items():
                if key.startswith("session_") and isinstance(session, list):
                    turns += [turn["text"] for turn in session]
            questions += [qa["question"] for qa in sample["qa"]]
    rng = random.Random(7)
    texts = turns + [f"{make_text(rng, TEMPLATES)} (note {i})" for i in range(count - len(turns))]
    queries = questions + [make_text(rng, QUERIES) for _ in range(200)]
    model = Embeddings.from_settings(SessionBuddySettings(), None, None)

    def encode(items: list[str]) -> np.ndarray:
        parts = [model.encode(items[i : i + 64]) for i in range(0, len(items), 64)]
        return np.vstack(parts).astype(np.float32)

    found = encode(texts), encode(queries)
    if cache is not None:
        np.savez(cache, texts=found[0], queries=found[1])
    return found


def perturbed(base: np.ndarray, start: int, count: int) -> np.ndarray:
    """Rows ``start..start+count`` of the filled set: the base vectors in turn, each with
    noise (sigma 0.02 a dimension, as ``scale.py``), renormalised; the first ``len(base)``
    rows are the base vectors themselves."""
    rows = np.arange(start, start + count)
    vectors = base[rows % len(base)].copy()
    noisy = rows >= len(base)
    noise = np.random.default_rng(start).standard_normal(vectors.shape).astype(np.float32)
    vectors[noisy] += noise[noisy] * 0.02
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build(base: np.ndarray, size: int, exact: Any) -> Any:
    from session_buddy.search.vector import VectorIndex

    index = VectorIndex(base.shape[1], exact)
    index.ensure_capacity(size)
    for start in range(0, size, 50_000):
        count = min(50_000, size - start)
        index.set_many(np.arange(start, start + count), perturbed(base, start, count))
    return index


def recall(index: Any, queries: np.ndarray, size: int, keeps: list[int]) -> dict[str, Any]:
    """recall@1 / @10 against exact search for each candidate count, without and with a
    filter (one project in seven: rows ``r % 7 == 3``)."""
    from session_buddy.search.vector import candidates, nearest

    masks = {"all": np.ones(size, dtype=bool), "1/7": np.arange(size) % 7 == 3}
    out: dict[str, Any] = {}
    for name, mask in masks.items():
        rows = np.flatnonzero(mask)
        truth = exact_top(index, rows, queries, 10)
        found = {keep: [0.0, 0.0] for keep in keeps}
        for q, best in zip(queries, truth, strict=True):
            distances = index.hamming(q, rows, size)
            for keep in keeps:  # 0: the ranker's own count for a top 10
                chosen = rows[nearest(distances, keep or candidates(10, len(rows)))]
                sims = index.exact.read(chosen) @ q
                top = chosen[np.lexsort((chosen, -sims))[:10]]
                found[keep][0] += float(top[0] == best[0])
                found[keep][1] += len(set(top.tolist()) & set(best.tolist())) / 10
        out[name] = {
            keep: (round(a / len(queries), 4), round(b / len(queries), 4))
            for keep, (a, b) in found.items()
        }
    return out


def exact_top(index: Any, rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The exact top ``k`` rows of each query (by cosine, then row), in blocks of rows."""
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    best_sims = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(rows), 65536):
        chunk = rows[start : start + 65536]
        sims = queries @ index.exact.read(chunk).T
        all_rows = np.hstack([best_rows, np.broadcast_to(chunk, sims.shape)])
        all_sims = np.hstack([best_sims, sims])
        part = np.argpartition(-all_sims, k - 1, axis=1)[:, :k]
        best_rows = np.take_along_axis(all_rows, part, axis=1)
        best_sims = np.take_along_axis(all_sims, part, axis=1)
    order = np.lexsort((best_rows, -best_sims), axis=1)
    return np.take_along_axis(best_rows, order, axis=1)


def timed(index: Any, queries: np.ndarray, size: int) -> dict[str, float]:
    """The ranker's time (``scores``, limit 10), unfiltered and filtered, p50 / p95 ms."""
    out: dict[str, float] = {}
    for name, mask in (("all", np.ones(size, bool)), ("1/7", np.arange(size) % 7 == 3)):
        index.scores(queries[0], mask, 10)  # warm
        times = []
        for q in queries:
            t0 = time.perf_counter()
            index.scores(q, mask, 10)
            times.append(time.perf_counter() - t0)
        out[f"{name} p50 ms"] = round(statistics.median(times) * 1000, 1)
        out[f"{name} p95 ms"] = round(percentile(times, 0.95) * 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--keeps", default="0,100,200,400,1000,2000", help="0: the ranker's")
    parser.add_argument("--timed", type=int, default=100, help="queries timed per size")
    parser.add_argument("--recall-queries", type=int, default=504)
    parser.add_argument("--no-recall", action="store_true", help="time only")
    args = parser.parse_args()
    from session_buddy.search.vector import FileRows, RamRows

    base, queries = real_vectors(args.cache)
    keeps = [int(k) for k in args.keeps.split(",")]
    print(f"{len(base)} real text vectors, {len(queries)} real queries")
    for size in (int(s) for s in args.sizes.split(",")):
        ram = build(base, size, RamRows(base.shape[1]))
        print(f"\n{size:,} rows: {ram.codes.nbytes / size:.0f} code bytes a row")
        if not args.no_recall:
            from session_buddy.search.vector import candidates

            for name, by_keep in recall(ram, queries[: args.recall_queries], size, keeps).items():
                for keep, (r1, r10) in by_keep.items():
                    shown = keep or f"{candidates(10, size if name == 'all' else size // 7)}*"
                    print(f"  recall {name:>3} keep {shown:>5}: @1 {r1:.3f}  @10 {r10:.3f}")
        print(f"  ranker, rows in RAM:  {timed(ram, queries[: args.timed], size)}")
        ram.close()
        with tempfile.TemporaryDirectory() as folder:
            in_file = build(base, size, FileRows(base.shape[1], Path(folder)))
            print(f"  ranker, rows in file: {timed(in_file, queries[: args.timed], size)}")
            in_file.close()


if __name__ == "__main__":
    main()
