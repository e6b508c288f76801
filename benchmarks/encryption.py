"""The cost of encryption at rest (storage.encryption: aes-gcm), off against on in one run.

For each setting, on a fresh store of the same texts: store ``--items`` memories through the
MCP client (``store_conversations``, batches of 500), restart the service and time its start
(open + key check + decrypting every row into the search index), then time ``quick_search``
for distinct queries (p50/p95) and the size of the store. Printed with the on/off ratios.
The two settings take turns (``--rounds`` rounds of storing a part of the texts, then of
starting and searching), so a change of the machine's load falls on both.
A last line gives the cipher alone (seal and open of one memory, in microseconds).

    .venv/bin/python benchmarks/encryption.py [--items 5000] [--queries 200]
        [--storage duckdb|postgres] [--embeddings onnx|none]

``--embeddings none`` leaves the model out (keyword search only), so the store throughput shows
the storage and cipher work alone. With ``--storage postgres`` each setting gets a fresh schema
(dropped at the end) of the database in ``--dsn`` / $SESSION_BUDDY_TEST_PG_DSN.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

SETTINGS = ("off", "aes-gcm")


def settings_for(encryption: str, data_dir: Path, args: argparse.Namespace, pg: Any) -> Any:
    from session_buddy.settings import load_settings

    extra: dict[str, Any] = {"encryption": encryption}
    if pg:
        extra |= {"dsn": pg["dsn"], "pg_schema": f"{pg['pg_schema']}_{encryption.replace('-', '')}"}
    return load_settings(
        data_dir=data_dir / encryption,
        adapters={"storage": args.storage, "embeddings": args.embeddings},
        storage=extra,
    ).settings


async def store_round(settings: Any, texts: list[str], first: int) -> float:
    """Seconds to store ``texts`` through a fresh service (batches of 500)."""
    from fastmcp import Client

    from session_buddy import di
    from session_buddy.server.app import create_server

    di.reset()
    async with Client(create_server(settings)) as client:
        await client.call_tool("quick_search", {"query": "warm up"})
        t0 = time.perf_counter()
        for i in range(0, len(texts), 500):
            items = [
                {"content": t, "project": f"proj-{(first + i + j) % 7}", "role": "assistant"}
                for j, t in enumerate(texts[i : i + 500])
            ]
            await client.call_tool("store_conversations", {"items": items})
        return time.perf_counter() - t0


async def search_round(settings: Any, queries: list[str]) -> tuple[float, list[float], float]:
    """A fresh service on the stored data: its start (open, key check, index load) in
    seconds, the latency of each query in ms, and the store's size in MB."""
    from fastmcp import Client

    from session_buddy import di
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.server.app import create_server

    di.reset()
    t0 = time.perf_counter()
    async with Client(create_server(settings)) as client:
        await di.ready()
        start_s = time.perf_counter() - t0
        await client.call_tool("quick_search", {"query": "warm up"})
        latencies = []
        for query in queries:
            t1 = time.perf_counter()
            result = await client.call_tool("quick_search", {"query": query})
            latencies.append((time.perf_counter() - t1) * 1000)
            assert result.structured_content["hits"], query
        size = (await di.get(StorageBase).stats()).size_bytes or 0
    return start_s, latencies, size / 1e6


async def measure(
    texts: list[str], queries: list[str], data_dir: Path, args: argparse.Namespace, pg: Any
) -> dict[str, dict[str, float]]:
    """Both settings, their rounds interleaved (off, on, off, on...) so that a change in the
    machine's load falls on both alike."""
    settings = {e: settings_for(e, data_dir, args, pg) for e in SETTINGS}
    store_s = dict.fromkeys(SETTINGS, 0.0)
    part = -(-len(texts) // args.rounds)
    for r in range(args.rounds):
        for e in SETTINGS:
            store_s[e] += await store_round(settings[e], texts[r * part : (r + 1) * part], r * part)
    starts: dict[str, list[float]] = {e: [] for e in SETTINGS}
    latencies: dict[str, list[float]] = {e: [] for e in SETTINGS}
    size = dict.fromkeys(SETTINGS, 0.0)
    for _ in range(args.rounds):
        for e in SETTINGS:
            start_s, lat, size[e] = await search_round(settings[e], queries)
            starts[e].append(start_s)
            latencies[e] += lat
    return {
        e: {
            "store": len(texts) / store_s[e],
            "start": statistics.median(starts[e]),
            "p50": statistics.median(latencies[e]),
            "p95": percentile(latencies[e], 0.95),
            "size": size[e],
        }
        for e in SETTINGS
    }


def cipher_alone(texts: list[str]) -> tuple[float, float]:
    """Microseconds to seal and to open one memory (content + metadata), on these texts."""
    from session_buddy.adapters.storage._cipher import Cipher

    cipher = Cipher(os.urandom(32))
    t0 = time.perf_counter()
    sealed = [
        (cipher.seal(t, f"{i}:content"), cipher.seal_json("{}", f"{i}:metadata"))
        for i, t in enumerate(texts)
    ]
    seal_us = (time.perf_counter() - t0) / len(texts) * 1e6
    t0 = time.perf_counter()
    for i, (content, _) in enumerate(sealed):
        cipher.open(content, f"{i}:content")
    open_us = (time.perf_counter() - t0) / len(texts) * 1e6
    return seal_us, open_us


async def run(args: argparse.Namespace, pg: dict[str, str] | None) -> None:
    rng = random.Random(11)
    texts = [f"{make_text(rng, TEMPLATES)} (note {i})" for i in range(args.items)]
    queries = [make_text(random.Random(args.items), QUERIES) for _ in range(args.queries)]
    os.environ["SESSION_BUDDY_KEY"] = base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory() as tmp:
        results = await measure(texts, queries, Path(tmp), args, pg)
    for encryption, r in results.items():
        print(
            f"{args.items} items ({args.storage}, embeddings {args.embeddings}, encryption "
            f"{encryption:>7}): store {r['store']:7.1f} items/s; start (open + index load) "
            f"{r['start']:5.2f} s; quick_search p50 {r['p50']:6.1f} ms p95 {r['p95']:6.1f} ms; "
            f"size {r['size']:6.1f} MB",
            flush=True,
        )
    off, on = results["off"], results["aes-gcm"]
    print(
        f"ratio on/off: store throughput {on['store'] / off['store']:.2f}x, start "
        f"{on['start'] / off['start']:.2f}x, search p95 {on['p95'] / off['p95']:.2f}x, "
        f"size {on['size'] / max(off['size'], 1e-9):.2f}x"
    )
    seal_us, open_us = cipher_alone(texts)
    print(f"cipher alone: seal {seal_us:.1f} us, open {open_us:.1f} us per memory")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of each setting (store, search)"
    )
    parser.add_argument("--storage", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--embeddings", choices=["onnx", "none"], default="onnx")
    parser.add_argument("--dsn", default=None, help="postgres: the database (see above)")
    args = parser.parse_args()
    from session_buddy.logs import route_logging_to_stderr

    route_logging_to_stderr("WARNING")
    pg = None
    if args.storage == "postgres":
        dsn = args.dsn or os.environ.get("SESSION_BUDDY_TEST_PG_DSN")
        if not dsn:
            parser.error("--storage postgres needs --dsn (or $SESSION_BUDDY_TEST_PG_DSN)")
        pg = {"dsn": dsn, "pg_schema": f"bench_enc_{os.getpid()}"}
    try:
        asyncio.run(run(args, pg))
    finally:
        if pg:
            asyncio.run(_drop_schemas(pg))


async def _drop_schemas(pg: dict[str, str]) -> None:
    import asyncpg

    con = await asyncpg.connect(pg["dsn"])
    try:
        for suffix in ("off", "aesgcm"):
            await con.execute(f'DROP SCHEMA IF EXISTS "{pg["pg_schema"]}_{suffix}" CASCADE')
    finally:
        await con.close()


if __name__ == "__main__":
    main()
