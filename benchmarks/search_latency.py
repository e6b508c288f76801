"""Search latency and store throughput through the MCP client, with the raw embedding
throughput of the same texts as the reference, measured in the same run.

For each size (default 10k then 100k stored items): store synthetic but realistic coding
memories with `store_conversations` (batches of 1,000), then time `quick_search` for distinct
queries (p50/p95). Store throughput is compared with the ONNX model's own throughput on the
same texts (the `encode` call, batched), the ceiling any store could reach.

    .venv/bin/python benchmarks/search_latency.py [--sizes 10000,100000] [--queries 200] [--storage duckdb]

With ``--storage postgres`` the store is a fresh schema (dropped at the end) of the database
given by ``--dsn`` or $SESSION_BUDDY_STORAGE__DSN or $SESSION_BUDDY_TEST_PG_DSN (e.g. the test
server: ``export SESSION_BUDDY_TEST_PG_DSN=$(scripts/postgres.sh start)``);
``--vector-index ivfflat`` measures pgvector's approximate index instead of exact search,
``--vector-index both`` measures the two on the same data (a server restart between them, as
the index is built at a start).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

MODULES = [
    "auth",
    "billing",
    "scheduler",
    "ingest",
    "search",
    "storage",
    "api",
    "cli",
    "cache",
    "worker",
    "payments",
    "notifications",
    "reports",
    "sync",
    "gateway",
    "metrics",
    "config",
    "session",
]
ERRORS = [
    "ConnectionResetError",
    "TimeoutError",
    "KeyError",
    "ValueError",
    "IntegrityError",
    "PermissionError",
    "deadlock detected",
    "OOM kill",
    "segfault",
    "429 Too Many Requests",
    "SSL handshake failure",
    "lock timeout",
    "stale cache entry",
    "race condition",
]
ACTIONS = [
    "adding a retry with exponential backoff",
    "pinning the dependency version",
    "moving the call off the event loop",
    "batching the writes",
    "adding an index on project",
    "closing the connection in a finally block",
    "raising the pool size",
    "normalising timestamps to UTC",
    "validating the input before parsing",
    "caching the token for its lifetime",
    "using a lock around the counter",
    "streaming the file instead of reading it whole",
    "switching to parameterised SQL",
]
TOPICS = [
    "the deploy pipeline",
    "flaky integration tests",
    "the migration to Python 3.13",
    "memory growth in the worker",
    "slow cold starts",
    "the new onboarding flow",
    "rate limits of the upstream API",
    "log noise in production",
    "the nightly backup job",
]
TEMPLATES = [
    "Fixed {error} in {module}/{file}.py by {action}.",
    "Decision: for {topic} we keep {module} stateless and rely on {action}.",
    "The {error} in {module} came back after the release; root cause was {topic}, fixed by {action}.",
    "TODO next session: revisit {topic} in {module}; consider {action}.",
    "User asked about {topic}. Explained that {module} handles it and that {error} means {action} is missing.",
    "Learned: {module}.{file}() raises {error} when the input is empty; guard it by {action}.",
    "Benchmark of {module}: p95 went from {n} ms to {m} ms after {action}.",
    "Code review note on {module}/{file}.py: {action} would avoid the {error} seen in {topic}.",
]
QUERIES = [
    "how did we fix {error} in {module}",
    "what was decided about {topic}",
    "why does {module} fail with {error}",
    "performance of {module} after the change",
    "what should I look at next for {topic}",
    "{file} raises an error on empty input",
]


def make_text(rng: random.Random, template_list: list[str]) -> str:
    return rng.choice(template_list).format(
        error=rng.choice(ERRORS),
        module=rng.choice(MODULES),
        file=f"{rng.choice(MODULES)}_{rng.randint(1, 400)}",
        action=rng.choice(ACTIONS),
        topic=rng.choice(TOPICS),
        n=rng.randint(20, 900),
        m=rng.randint(5, 300),
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run(
    sizes: list[int],
    queries: int,
    storage: str,
    batch: int,
    pg: dict[str, str] | None = None,
    vector_indexes: tuple[str, ...] = ("none",),
) -> None:
    from fastmcp import Client

    from session_buddy import di
    from session_buddy.adapters.embeddings._base import EmbeddingsBase
    from session_buddy.server.app import create_server
    from session_buddy.settings import SessionBuddySettings, load_settings

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:

        def settings_for(index: str) -> SessionBuddySettings:
            overrides: dict[str, object] = {"storage": {**pg, "vector_index": index}} if pg else {}
            return load_settings(
                data_dir=Path(tmp), adapters={"storage": storage}, **overrides
            ).settings

        stored = 0
        for size in sizes:
            settings = settings_for(vector_indexes[0])
            async with Client(create_server(settings)) as client:
                embeddings = di.get(EmbeddingsBase)
                texts = [
                    f"{make_text(rng, TEMPLATES)} (note {stored + i})" for i in range(size - stored)
                ]
                # reference: the model alone on the same texts (first 2,000), batched
                sample = texts[: min(2000, len(texts))]
                encode = getattr(embeddings, "encode")  # noqa: B009 - the onnx adapter's sync API
                encode(sample[:64])  # warm up
                t0 = time.perf_counter()
                batch_size = settings.embeddings.batch_size
                for i in range(0, len(sample), batch_size):
                    encode(sample[i : i + batch_size])
                raw_rate = len(sample) / (time.perf_counter() - t0)
                t0 = time.perf_counter()
                for i in range(0, len(texts), batch):
                    chunk = texts[i : i + batch]
                    await client.call_tool(
                        "store_conversations",
                        {
                            "items": [
                                {
                                    "content": t,
                                    "project": f"proj-{(stored + i + j) % 7}",
                                    "role": "assistant",
                                }
                                for j, t in enumerate(chunk)
                            ]
                        },
                    )
                store_rate = len(texts) / (time.perf_counter() - t0)
                stored = size
            di.reset()  # the server closed its adapters; the next one configures afresh
            print(
                f"{size:>7} items ({storage}): store {store_rate:7.1f} items/s via "
                f"store_conversations; raw embedding {raw_rate:7.1f} texts/s; "
                f"ratio {store_rate / raw_rate:.0%}",
                flush=True,
            )
            if pg:  # what autovacuum does soon after a bulk load (visibility map, statistics)
                await _vacuum(pg["dsn"], pg["pg_schema"])
            asked = [make_text(random.Random(size), QUERIES) for _ in range(queries)]
            for index in vector_indexes:
                async with Client(create_server(settings_for(index))) as client:
                    await client.call_tool("quick_search", {"query": "warm up"})
                    latencies = []
                    for query in asked:
                        t1 = time.perf_counter()
                        result = await client.call_tool("quick_search", {"query": query})
                        latencies.append((time.perf_counter() - t1) * 1000)
                        assert result.structured_content["hits"], query
                di.reset()
                label = f", vector_index {index}" if pg else ""
                print(
                    f"{size:>7} items ({storage}{label}): quick_search "
                    f"p50 {statistics.median(latencies):6.1f} ms  "
                    f"p95 {percentile(latencies, 0.95):6.1f} ms  ({queries} distinct queries)",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--storage", choices=["duckdb", "memory", "postgres"], default="duckdb")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--dsn", default=None, help="postgres: the database (see above)")
    parser.add_argument(
        "--vector-index",
        choices=["none", "ivfflat", "both"],
        default="none",
        help="postgres: exact search, pgvector's ivfflat index, or both on the same data",
    )
    args = parser.parse_args()
    from session_buddy.logs import route_logging_to_stderr

    route_logging_to_stderr("WARNING")
    pg = None
    if args.storage == "postgres":
        dsn = (
            args.dsn
            or os.environ.get("SESSION_BUDDY_STORAGE__DSN")
            or os.environ.get("SESSION_BUDDY_TEST_PG_DSN")
        )
        if not dsn:
            parser.error("--storage postgres needs --dsn (or $SESSION_BUDDY_TEST_PG_DSN)")
        pg = {"dsn": dsn, "pg_schema": f"bench_{os.getpid()}"}
    indexes = ("none", "ivfflat") if args.vector_index == "both" else (args.vector_index,)
    try:
        asyncio.run(
            run(
                [int(s) for s in args.sizes.split(",")],
                args.queries,
                args.storage,
                args.batch,
                pg,
                indexes,
            )
        )
    finally:
        if pg:
            asyncio.run(_drop_schema(pg["dsn"], pg["pg_schema"]))


async def _vacuum(dsn: str, schema: str) -> None:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        for table in ("items", "postings"):
            await con.execute(f'VACUUM ANALYZE "{schema}".{table}')
    finally:
        await con.close()


async def _drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await con.close()


if __name__ == "__main__":
    main()
