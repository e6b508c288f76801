"""What hybrid search's refinement (feedback, session smoothing, temporal boost) costs.

One DuckDB store of N synthetic coding memories (the texts of benchmarks/search_latency.py,
40 items a session, random unit vectors: the model's time to store is not what is measured)
is searched by two memory services that differ only in `search.prf_terms` /
`search.session_smoothing` / `search.temporal_boost` (defaults against 0). The two alternate query by query, each
query's vector already cached, so both see the same machine load; p50 / p95 of
`MemoryService.search` (in process, no MCP transport) are printed per size.

    PYTHONPATH=. .venv/bin/python benchmarks/refine_latency.py [--sizes 10000,100000] [--queries 200]
        [--when] [--only SETTING] [--questions]

`--only reply_lift` compares the defaults with the defaults less that one step (its setting
0); `--questions` ends every other stored text with a question, so the reply lift has work.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_latency import QUERIES, TEMPLATES, make_text, percentile

BATCH = 5000
SESSION_ITEMS = 40


async def run(size: int, queries: int, prefix: str, only: str | None, questions: bool) -> None:
    from session_buddy.adapters.embeddings.onnx import Embeddings
    from session_buddy.adapters.storage._base import NewItem
    from session_buddy.adapters.storage.duckdb import Storage
    from session_buddy.core.memory import MemoryService
    from session_buddy.settings import SearchSettings, SessionBuddySettings

    rng = random.Random(7)
    vectors = np.random.default_rng(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "memory.duckdb", dimension=384)
        await storage.initialize()
        for first in range(0, size, BATCH):
            count = min(BATCH, size - first)
            v = vectors.standard_normal((count, 384)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            await storage.add_items(
                [
                    NewItem(
                        kind="conversation",
                        content=make_text(rng, TEMPLATES)
                        + (" Why?" if questions and i % 2 else ""),
                        project="p",
                        session_id=f"s{(first + i) // SESSION_ITEMS}",
                        created_at=start + timedelta(seconds=first + i),
                        embedding=v[i],
                    )
                    for i in range(count)
                ]
            )
        model = Embeddings.from_settings(SessionBuddySettings(), None, None)
        plain = SearchSettings(
            prf_terms=0, session_smoothing=0.0, reply_lift=0.0, temporal_boost=0.0
        )
        if only is not None:  # the defaults less one step
            plain = SearchSettings(**{only: 0})
        services = {
            "on": MemoryService(storage, model, SessionBuddySettings()),
            "off": MemoryService(storage, model, SessionBuddySettings(search=plain)),
        }
        texts = [prefix + make_text(rng, QUERIES) for _ in range(queries)]
        for text in texts[:5]:  # warm-up
            for service in services.values():
                await service.search(text, projects=["p"])
        latency: dict[str, list[float]] = {name: [] for name in services}
        for i, text in enumerate(texts):
            await model.embed_query(text)
            order = ["on", "off"] if i % 2 else ["off", "on"]
            for name in order:
                t0 = time.perf_counter()
                await services[name].search(text, projects=["p"])
                latency[name].append(time.perf_counter() - t0)
        for name, values in latency.items():
            print(
                f"{size:>7} items, refinement {name:>3}: p50 {percentile(values, 0.5) * 1000:6.1f} ms"
                f"  p95 {percentile(values, 0.95) * 1000:6.1f} ms",
                flush=True,
            )
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--when",
        action="store_true",
        help="ask each query as 'When ...' (the temporal boost reads the hits' contents too)",
    )
    parser.add_argument("--only", help="turn off only this search setting, e.g. reply_lift")
    parser.add_argument("--questions", action="store_true", help="every other text asks")
    args = parser.parse_args()
    from session_buddy.logs import route_logging_to_stderr

    route_logging_to_stderr("WARNING")
    for size in (int(s) for s in args.sizes.split(",")):
        prefix = "When " if args.when else ""
        asyncio.run(run(size, args.queries, prefix, args.only, args.questions))


if __name__ == "__main__":
    main()
