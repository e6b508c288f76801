"""get_entity_context(depth=2) on DuckDB, before and after the adjacency kept mentions and
observation counts, in one process alternating query by query (so both see the same load).

"before" is the previous ``details`` of the DuckDB graph: one transaction of two reads, the
observations by an ``IN`` list and the mentions (a scan of ``graph_mentions``); "after" is
what is shipped (mentions from the adjacency, observations read only for entities that
have any). The store is filled as benchmarks/graph.py fills it (100k entities, 500k
relations, 20k memories with 3 mentions each) and kept at ``--path`` for the next run.

    .venv/bin/python benchmarks/graph_details_ab.py [--path /tmp/graph-ab.duckdb] [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph import USER, fill
from search_latency import percentile

from session_buddy.adapters.storage._graph import Details
from session_buddy.adapters.storage._graphsql import _mentions
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.core.graph import GraphService
from session_buddy.settings import load_settings


async def main_async(args: argparse.Namespace) -> None:
    path = Path(args.path)
    new = not path.exists()
    storage = Storage(path)
    await storage.initialize()
    try:
        if new:
            await fill(storage, 100_000, 500_000, 20_000)
        settings = load_settings(adapters={"embeddings": "none"}, user=USER).settings
        service, g = GraphService(storage, settings), storage.graph
        shipped = g.details

        async def before(ids: Sequence[str], mentions: int) -> Details:
            unique = list(dict.fromkeys(ids))
            adjacency = await g._adjacent()
            assert adjacency is not None
            observations, found = await g.host._transaction(
                [g._observations_sql(unique), g._mentions_sql("entity_id", unique, mentions)]
            )
            entities = adjacency.entities(unique)
            by_id = {e.id: e for e in entities}
            for entity_id, content in observations:
                by_id[entity_id].observations.append(content)
            return Details(entities, adjacency.relations_of(unique, among=True), _mentions(found))

        names = [f"entity_{i}" for i in range(100_000)]
        rng = random.Random(5)
        for name in rng.sample(names, 10):  # warm up (reads the adjacency)
            await service.entity_context(name, 2, None, 10)
        times: dict[str, list[float]] = {"before": [], "after": []}
        for k, name in enumerate(rng.sample(names, args.queries)):
            for label in ("before", "after") if k % 2 else ("after", "before"):
                g.details = shipped if label == "after" else before  # type: ignore[method-assign]
                t0 = time.perf_counter()
                await service.entity_context(name, 2, None, 10)
                times[label].append((time.perf_counter() - t0) * 1000)
        for label, v in times.items():
            print(
                f"{label}: get_entity_context(depth=2) p50 {percentile(v, 0.5):.1f} ms, "
                f"p95 {percentile(v, 0.95):.1f} ms ({len(v)} queries)"
            )
    finally:
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/tmp/graph-ab.duckdb")
    parser.add_argument("--queries", type=int, default=300)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
