"""The knowledge graph's costs, measured in one run.

1. **Store throughput with and without automatic extraction** (DuckDB file): the same
   realistic memories (benchmarks/search_latency.py's templates, with files, identifiers and
   error names) stored through ``MemoryService.store`` in batches of 50, once with the graph
   service attached and once without, alternating, each into a fresh file; the ratio is the
   cost of extraction. Run with the ONNX model (what a real store does) and without vectors
   (the worst case for the ratio: nothing else takes time).
2. **get_entity_context(depth=2) latency** with ``--entities`` entities (default 100k) and
   ``--relations`` random relations (default 500k) and 3 mentions per stored item, on DuckDB
   and on PostgreSQL (a fresh schema of ``--dsn`` / $SESSION_BUDDY_TEST_PG_DSN, dropped at
   the end; after the bulk load, ``VACUUM ANALYZE`` as autovacuum would run it): p50/p95
   over ``--queries`` random entities.

    .venv/bin/python benchmarks/graph.py [--items 1000] [--entities 100000] [--relations 500000]
        [--queries 200] [--skip-store] [--skip-duckdb] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_latency import TEMPLATES, make_text, percentile

from session_buddy.adapters.storage._base import utcnow
from session_buddy.adapters.storage._graph import entity_id
from session_buddy.core.graph import GraphService
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.settings import load_settings

USER = "bench"
CODE = [
    "`{m}_{n}.verify()` raised {e} in {m}/{f}.py; fixed by ERR_{M}_{n} handling.",
    "```python\nimport httpx\nfrom {m} import client\ndef handle_{m}_{n}(req):\n    ...\n```",
]


def texts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 3 == 0:
            m = rng.choice(["auth", "billing", "cache", "worker"])
            out.append(
                rng.choice(CODE).format(
                    m=m, M=m.upper(), n=rng.randint(1, 500), e="KeyError", f=f"{m}_{i}"
                )
            )
        else:
            out.append(make_text(rng, TEMPLATES) + f" (#{i})")
    return out


def _services(path: Path, vectors: bool) -> tuple[Any, MemoryService, GraphService]:
    from session_buddy.adapters import adapter_class
    from session_buddy.adapters.storage.duckdb import Storage

    adapters = {"storage": "duckdb", "embeddings": "onnx" if vectors else "none"}
    settings = load_settings(
        data_dir=path.parent, adapters=adapters, storage={"path": str(path)}, user=USER
    ).settings
    storage = Storage(path, dimension=settings.embeddings.dimension)
    embeddings = adapter_class("embeddings", adapters["embeddings"]).from_settings(settings)
    memory = MemoryService(storage, embeddings, settings)
    return storage, memory, GraphService(storage, settings, memory)


async def store_once(folder: Path, items: list[str], vectors: bool, graph_on: bool) -> float:
    path = folder / f"{uuid.uuid4().hex}.duckdb"
    storage, memory, graph = _services(path, vectors)
    await storage.initialize()
    memory.graph = graph if graph_on else None
    if vectors:
        await memory.store([ItemInput(content="warm the model up", kind="reflection")])
    started = time.perf_counter()
    for start in range(0, len(items), 50):
        chunk = items[start : start + 50]
        await memory.store(
            [ItemInput(content=t, kind="reflection", project="bench") for t in chunk]
        )
    seconds = time.perf_counter() - started
    await storage.close()
    await memory.embeddings.close()
    return len(items) / seconds


async def store_benchmark(count: int, rounds: int) -> None:
    items = texts(count)
    with tempfile.TemporaryDirectory() as folder:
        for vectors in (False, True):
            rates: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(rounds):
                for graph_on in (False, True):
                    rates[graph_on].append(await store_once(Path(folder), items, vectors, graph_on))
            off, on = max(rates[False]), max(rates[True])
            label = "ONNX vectors" if vectors else "no vectors"
            print(
                f"store ({label}, {count} items, best of {rounds}): without graph "
                f"{off:,.0f} items/s, with graph {on:,.0f} items/s, cost {100 * (1 - on / off):.1f}%"
            )


async def fill(storage: Any, entities: int, relations: int, items: int) -> list[str]:
    """Entities, relations, items and their mentions, written in bulk."""
    rng = random.Random(11)
    now = utcnow()
    names = [f"entity_{i}" for i in range(entities)]
    ids = [entity_id("bench", USER, n) for n in names]
    g = storage.graph
    for start in range(0, entities, 20_000):
        rows = [
            (ids[i], names[i], "symbol", "bench", USER, now, now)
            for i in range(start, min(entities, start + 20_000))
        ]
        await g.import_rows("graph_entities", rows)
    seen: set[tuple[str, str]] = set()
    batch: list[tuple[Any, ...]] = []
    while len(seen) < relations:
        a, b = rng.randrange(entities), rng.randrange(entities)
        if a == b or (ids[a], ids[b]) in seen:
            continue
        seen.add((ids[a], ids[b]))
        batch.append((ids[a], ids[b], "uses", now))
        if len(batch) == 50_000:
            await g.import_rows("graph_relations", batch)
            batch = []
    await g.import_rows("graph_relations", batch)
    from session_buddy.adapters.storage._base import NewItem

    stored = []
    for start in range(0, items, 1000):
        added = await storage.add_items(
            [
                NewItem(kind="reflection", content=f"note {i} about entity_{i}", author=USER)
                for i in range(start, min(items, start + 1000))
            ]
        )
        stored += [a.id for a in added]
    mentions = [
        (item, ids[rng.randrange(entities)], k * 10, k * 10 + 8)
        for item in stored
        for k in range(3)
    ]
    for start in range(0, len(mentions), 50_000):
        await g.import_rows("graph_mentions", mentions[start : start + 50_000])
    return names


async def context_benchmark(
    storage: Any, label: str, args: argparse.Namespace, settle: Any = None
) -> None:
    settings = load_settings(adapters={"embeddings": "none"}, user=USER).settings
    await storage.initialize()
    try:
        started = time.perf_counter()
        names = await fill(storage, args.entities, args.relations, args.mention_items)
        print(f"{label}: filled in {time.perf_counter() - started:.0f} s")
        if settle is not None:
            await settle()
        graph = GraphService(storage, settings)
        rng = random.Random(5)
        for name in rng.sample(names, 10):  # warm up
            await graph.entity_context(name, 2, None, 10)
        times, sizes = [], []
        for name in rng.sample(names, args.queries):
            t0 = time.perf_counter()
            answer = await graph.entity_context(name, 2, None, 10)
            times.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(answer["neighbours"]))
        print(
            f"{label}: get_entity_context(depth=2) with {args.entities:,} entities, "
            f"{args.relations:,} relations: p50 {percentile(times, 0.5):.1f} ms, "
            f"p95 {percentile(times, 0.95):.1f} ms (neighbours shown: median "
            f"{sorted(sizes)[len(sizes) // 2]})"
        )
    finally:
        await storage.close()


async def main_async(args: argparse.Namespace) -> None:
    if not args.skip_store:
        await store_benchmark(args.items, args.rounds)
    from session_buddy.adapters.storage.duckdb import Storage as DuckStorage

    if not args.skip_duckdb:
        with tempfile.TemporaryDirectory() as folder:
            await context_benchmark(DuckStorage(Path(folder) / "g.duckdb"), "DuckDB", args)
    dsn = args.dsn or os.environ.get("SESSION_BUDDY_TEST_PG_DSN")
    if dsn and not args.skip_postgres:
        import asyncpg

        from session_buddy.adapters.storage.postgres import Storage as PgStorage

        schema = f"bench_graph_{uuid.uuid4().hex[:8]}"

        async def settle() -> None:
            """What autovacuum does soon after a bulk load: statistics and the visibility
            map (so the walks' index-only scans need no heap fetches)."""
            con = await asyncpg.connect(dsn)
            tables = ("graph_entities", "graph_relations", "graph_mentions", "items")
            await con.execute("VACUUM ANALYZE " + ", ".join(f'"{schema}".{t}' for t in tables))
            await con.close()

        try:
            await context_benchmark(PgStorage(dsn, schema=schema), "PostgreSQL", args, settle)
        finally:
            con = await asyncpg.connect(dsn)
            await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--relations", type=int, default=500_000)
    parser.add_argument("--mention-items", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--skip-duckdb", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
