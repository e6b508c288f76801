"""Memory, start-up, search latency and store throughput at 10k / 100k / 1M items (DuckDB).

For each size the store is grown to that many items, then a fresh service is started over
stdio (``serve --standalone``: the server in the stdio process) on it and measured:

- start-up: process start -> the first ``health`` answer (storage opened, index loaded),
  and -> the first ``quick_search`` answer (the model loaded too);
- RSS and the index's size, as ``health`` reports them, after the first search (model
  loaded) and again after the timed searches and stores;
- ``quick_search`` p50 / p95 over ``--queries`` distinct queries through stdio;
- store throughput: ``store_conversations`` of ``--store`` new texts (batches of 100)
  through stdio, against the model's raw throughput on the same texts in this process,
  measured just before.

Embedding a million texts with the model takes hours on 2 cores, so the store is filled
directly through the storage adapter with realistic texts (the templates of
``search_latency.py``) whose vectors are those of ``--sample`` texts the model embedded,
each with a small random perturbation (renormalised): real texts, realistic vectors, no
model time. Only the stores measured through stdio are embedded by the model.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--queries 100]
        [--store 500] [--sample 2000] [--data DIR] [--recall]

``--data DIR`` keeps the store (filling 1M items takes several minutes); without it a
temporary folder is used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_latency import QUERIES, TEMPLATES, make_text, percentile

MB = 1_048_576


def perturbed(base: Any, start: int, count: int, noise: Any) -> Any:
    """Vectors ``start`` .. ``start + count`` of a fill: the model's vectors of the sample
    texts in turn, each with Gaussian noise (0.02 a component), renormalised."""
    import numpy as np

    vectors = base[np.arange(start, start + count) % len(base)]
    vectors = vectors + noise.standard_normal(vectors.shape).astype(np.float32) * 0.02
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


async def fill(path: Path, target: int, base: Any, seed: int) -> tuple[int, float]:
    """Grow the DuckDB store at ``path`` to ``target`` items; (items added, seconds)."""
    import numpy as np

    from session_buddy.adapters.storage._base import NewItem
    from session_buddy.adapters.storage.duckdb import Storage

    storage = Storage(path)
    await storage.initialize()
    have = (await storage.stats()).items
    if have >= target:  # already that large (e.g. a kept --data store after its runs' stores)
        await storage.close()
        return 0, 0.0
    rng, noise = random.Random(seed + have), np.random.default_rng(seed + have)
    started = time.perf_counter()
    for start in range(have, target, 10_000):
        count = min(10_000, target - start)
        vectors = perturbed(base, start, count, noise)
        await storage.add_items(
            [
                NewItem(
                    kind="conversation",
                    content=f"{make_text(rng, TEMPLATES)} (note {start + i})",
                    project=f"proj-{(start + i) % 7}",
                    role="assistant",
                    embedding=vectors[i],
                )
                for i in range(count)
            ]
        )
    await storage.close()
    return target - have, time.perf_counter() - started


def _components(result: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result.structured_content["components"]}


async def measure(
    data: Path,
    size: int,
    queries: int,
    store: int,
    model: Any,
    settings: dict[str, str] | None = None,
    tool: str = "quick_search",
    tool_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One fresh service over stdio on the store of ``data`` (or of the SESSION_BUDDY_*
    ``settings``): start-up, RSS, ``tool`` latency (``tool_args`` besides the query), store
    throughput (module doc)."""
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env["SESSION_BUDDY_DATA_DIR"] = str(data)
    env.update(settings or {})
    transport = StdioTransport(
        sys.executable,
        ["-m", "session_buddy.cli", "serve", "--standalone"],
        env=env,
        log_file=data / "serve.stderr.log",
        keep_alive=False,
    )
    out: dict[str, Any] = {"size": size}
    started = time.perf_counter()
    async with Client(transport) as client:
        health = _components(await client.call_tool("health", {}))
        out["start_health_s"] = time.perf_counter() - started
        out["loaded_from"] = health["storage"]["metadata"].get("index_source")
        out["load_s"] = health["storage"]["metadata"].get("index_load_seconds")
        out["rss_start"] = health["python"]["metadata"]["rss_bytes"]
        await client.call_tool(tool, {"query": "warm up the model", **(tool_args or {})})
        out["start_search_s"] = time.perf_counter() - started
        health = _components(await client.call_tool("health", {}))
        out["rss_loaded"] = health["python"]["metadata"]["rss_bytes"]
        out["index"] = health["storage"]["metadata"].get("index")
        rng = random.Random(size)
        asked = [f"{make_text(rng, QUERIES)} {n}" for n in range(queries)]
        times = []
        for query in asked:
            t0 = time.perf_counter()
            await client.call_tool(tool, {"query": query, **(tool_args or {})})
            times.append(time.perf_counter() - t0)
        out["p50_ms"] = statistics.median(times) * 1000
        out["p95_ms"] = percentile(times, 0.95) * 1000
        texts = [f"{make_text(rng, TEMPLATES)} (new {size}-{i})" for i in range(store)]
        t0 = time.perf_counter()
        for i in range(0, len(texts), 32):
            model.encode(texts[i : i + 32])
        out["raw_per_s"] = len(texts) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(0, len(texts), 100):
            items = [{"content": t, "project": "proj-new"} for t in texts[i : i + 100]]
            await client.call_tool("store_conversations", {"items": items})
        out["store_per_s"] = len(texts) / (time.perf_counter() - t0)
        health = _components(await client.call_tool("health", {}))
        out["rss_after"] = health["python"]["metadata"]["rss_bytes"]
        pid = int(health["python"]["metadata"]["pid"])
    t0 = time.perf_counter()
    while _alive(pid):  # the service closes its store (and writes its snapshot) on exit
        await asyncio.sleep(0.05)
    out["stop_s"] = time.perf_counter() - t0
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def report(row: dict[str, Any]) -> None:
    index = row["index"] or {}
    print(
        f"{row['size']:>9,} items: start {row['start_health_s']:.2f} s to health, "
        f"{row['start_search_s']:.2f} s to the first search (index from its {row['loaded_from']} "
        f"in {row['load_s'] or 0:.2f} s; stop {row['stop_s']:.1f} s); RSS "
        f"{row['rss_start'] / MB:.0f} MiB at start, {row['rss_loaded'] / MB:.0f} MiB "
        f"(model loaded), {row['rss_after'] / MB:.0f} MiB after; index "
        f"{index.get('bytes', 0) / MB:.0f} MiB (vectors {index.get('vector_bytes', 0) / MB:.0f}, "
        f"keyword {index.get('keyword_bytes', 0) / MB:.0f}; exact vectors file "
        f"{index.get('exact_vector_file_bytes', 0) / MB:.0f} MiB); search p50 "
        f"{row['p50_ms']:.1f} ms p95 {row['p95_ms']:.1f} ms; store {row['store_per_s']:.1f} "
        f"items/s vs raw {row['raw_per_s']:.1f} texts/s ({row['store_per_s'] / row['raw_per_s']:.0%})",
        flush=True,
    )


def model_and_base(count: int) -> tuple[Any, Any]:
    """The ONNX model and its vectors of ``count`` sample texts (the base of a fill),
    printing the machine's load and the model's rate."""
    from session_buddy.adapters.embeddings.onnx import Embeddings
    from session_buddy.settings import SessionBuddySettings

    model = Embeddings.from_settings(SessionBuddySettings(), None, None)
    rng = random.Random(1)
    sample = [make_text(rng, TEMPLATES) for _ in range(count)]
    t0 = time.perf_counter()
    base = model.encode(sample)
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; model: {count} "
        f"sample texts embedded at {count / (time.perf_counter() - t0):.1f} texts/s",
        flush=True,
    )
    return model, base


async def run(args: argparse.Namespace, data: Path) -> None:
    model, base = model_and_base(args.sample)
    for size in args.sizes:
        added, seconds = await fill(data / "memory.duckdb", size, base, seed=7)
        if added:
            print(f"  filled to {size:,} (+{added:,} in {seconds:.0f} s)", flush=True)
        report(await measure(data, size, args.queries, args.store, model))
        print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.recall:  # issue 19's figures in one run: recall on the LoCoMo dev set too
        import retrieval

        print("LoCoMo dev recall, default hybrid search:", flush=True)
        await retrieval.run(retrieval.DEFAULT_DATA, "duckdb", ["hybrid"], {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--store", type=int, default=500)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument(
        "--recall", action="store_true", help="also run benchmarks/retrieval.py --modes hybrid"
    )
    args = parser.parse_args()
    if args.data is not None:
        args.data.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args, args.data))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
