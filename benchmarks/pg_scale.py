"""PostgreSQL at scale (1M items): the rankers, the whole `search`, store throughput,
start-up and RSS of a service on a store filled fast.

**Fill.** Realistic texts (the templates of ``search_latency.py``, each with a unique note
number) with the vectors of ``--sample`` such texts embedded by the model, perturbed as
``scale.py`` does. The rows are made by the adapter's own code (``ItemRow``, the keyword
terms of ``term_counts``) and written with binary ``COPY`` into ``items`` while the postings
trigger and the secondary indexes are off; then the postings come from one set-based
``INSERT ... SELECT`` (``postgres.POSTINGS_OF_ITEMS``, the migration's own fill), the
indexes are rebuilt from their definitions, the trigger is enabled and ``VACUUM ANALYZE``
runs. A check compares, for a sample of the bulk rows, the stored terms with the adapter's
tsvector and the set-based postings with the rows the trigger builds for them (fired by an
update, rolled back), and the BM25 statistics row with a full count. The server's processes
run at nice 19 during the fill and index builds, at nice 0 while measuring.

**Measured**, on the same data: the keyword and vector rankers in process (``Storage``,
depth 100 as `search` asks), exact and with ivfflat (``--lists``, built by the adapter at a
start, each ``--probes`` count with its recall@10 against exact); then a fresh service over
stdio (``serve --standalone``, ``scale.measure``) with ivfflat: start -> first answer, RSS,
``search`` p50/p95 over ``--queries`` distinct queries, store throughput against the model's
raw rate in the same run.

    .venv/bin/python benchmarks/pg_scale.py --dsn URL [--size 1000000] [--queries 100]
        [--exact-queries 30] [--lists 1000] [--probes 10,20,40] [--schema bench_scale]

The schema is kept (``--drop`` removes it at the end); a second run on it skips the fill.
``--dsn`` defaults to $SESSION_BUDDY_STORAGE__DSN; use a server of your own (e.g.
``SESSION_BUDDY_PG_DIR=/tmp/pgbench scripts/postgres.sh start``), not the test server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import MB, measure, model_and_base, perturbed
from search_latency import QUERIES, TEMPLATES, make_text, percentile

COLUMNS = [
    "id",
    "kind",
    "content",
    "content_hash",
    "project",
    "session_id",
    "role",
    "tags",
    "author",
    "metadata",
    "created_at",
    "updated_at",
    "embedding",
    "terms",
    "doc_len",
]
CHUNK = 10_000


def encode_tsvector(pairs: list[tuple[str, int]]) -> bytes:
    """tsvector's binary form (tsvectorrecv): lexeme count, then each lexeme NUL-ended,
    its position count and positions 1..n (weight D), as ``terms_tsvector``'s literal."""
    out = [struct.pack(">i", len(pairs))]
    for lexeme, n in pairs:
        out.append(lexeme.encode("utf-8") + b"\0" + struct.pack(f">H{n}H", n, *range(1, n + 1)))
    return b"".join(out)


def renice_server(backend_pid: int, nice: int) -> None:
    """Set the niceness of the server's postmaster and all its processes (new backends
    inherit the postmaster's)."""

    def parent(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    postmaster = parent(backend_pid)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(name) == postmaster or parent(int(name)) == postmaster:
                    os.setpriority(os.PRIO_PROCESS, int(name), nice)
            except (OSError, ValueError):
                pass


def make_rows(storage: Any, base: Any, start: int, count: int, noise: Any) -> list[tuple[Any, ...]]:
    """The COPY rows of items ``start`` .. ``start + count``, made as ``add_items`` makes them."""
    from session_buddy.adapters.storage._base import NewItem, utcnow
    from session_buddy.adapters.storage._sql import ItemRow
    from session_buddy.adapters.storage.postgres import term_counts

    rng = random.Random(start)
    vectors = perturbed(base, start, count, noise)
    now = utcnow()
    rows = []
    for i in range(count):
        x = NewItem(
            kind="conversation",
            content=f"{make_text(rng, TEMPLATES)} (note {start + i})",
            project=f"proj-{(start + i) % 7}",
            role="assistant",
            embedding=vectors[i],
        )
        sealed = storage._seal_row(ItemRow.of(str(uuid.uuid4()), x, now, vectors[i]))
        rows.append((*sealed, *term_counts(x.content, storage._term)))
    return rows


async def fill(dsn: str, schema: str, target: int, base: Any) -> None:
    """Grow the store to ``target`` items by COPY in one transaction (module doc), then check
    it."""
    from session_buddy.adapters.storage.postgres import Storage

    storage = Storage(dsn, schema=schema, pool_max_size=2)
    await storage.initialize()
    async with storage.pool.acquire() as con:
        have = int(await con.fetchval("SELECT count(*) FROM items"))
        if have >= target:
            print(f"store holds {have:,} items: no fill", flush=True)
            await storage.close()
            return
        renice_server(await con.fetchval("SELECT pg_backend_pid()"), 19)
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        await con.set_type_codec(
            "tsvector", schema="pg_catalog", encoder=encode_tsvector, decoder=bytes, format="binary"
        )
        await con.execute(
            "SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 0;"
            "DROP INDEX IF EXISTS items_vector"
        )
        top = int(await con.fetchval("SELECT coalesce(max(seq), 0) FROM items"))
        started = time.perf_counter()
        async with con.transaction():
            steps = await bulk_load(con, storage, schema, have, target, base)
        for table in ("items", "postings"):
            await con.execute(f"VACUUM ANALYZE {table}")
        steps.append(("vacuum", time.perf_counter() - started - sum(t for _, t in steps)))
        print(
            f"filled {have:,} -> {target:,} in {time.perf_counter() - started:.0f} s ("
            + ", ".join(f"{name} {t:.0f} s" for name, t in steps)
            + f"); load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        await check(con, top)
        renice_server(await con.fetchval("SELECT pg_backend_pid()"), 0)
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    await storage.close()


async def bulk_load(
    con: Any, storage: Any, schema: str, have: int, target: int, base: Any
) -> list[tuple[str, float]]:
    """Trigger and secondary indexes off, COPY, the BM25 statistics, the postings set-based,
    the indexes rebuilt from their definitions, the trigger on; (step, seconds) each."""
    import numpy as np

    from session_buddy.adapters.storage.postgres import POSTINGS_OF_ITEMS

    indexes = await con.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename "
        "IN ('items', 'postings') AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        schema,
    )
    t0 = time.perf_counter()
    steps = []
    for name, _ in indexes:
        await con.execute(f'DROP INDEX "{name}"')
    await con.execute("ALTER TABLE items DISABLE TRIGGER items_postings")
    top = int(await con.fetchval("SELECT coalesce(max(seq), 0) FROM items"))
    noise, total_len = np.random.default_rng(7 + have), 0
    for start in range(have, target, CHUNK):
        rows = make_rows(storage, base, start, min(CHUNK, target - start), noise)
        total_len += sum(r[-1] for r in rows)
        await con.copy_records_to_table("items", records=rows, columns=COLUMNS, schema_name=schema)
        if (start - have) % 100_000 == 0:
            print(f"  copied {start + len(rows):,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    await con.execute(
        "UPDATE item_stats SET n = n + $1, total_len = total_len + $2", target - have, total_len
    )
    steps.append(("COPY", time.perf_counter() - t0))
    t0 = time.perf_counter()
    await con.execute(POSTINGS_OF_ITEMS + " WHERE i.seq > $1", top)
    steps.append(("postings", time.perf_counter() - t0))
    t0 = time.perf_counter()
    for _, definition in indexes:
        await con.execute(definition)
    steps.append((f"{len(indexes)} indexes", time.perf_counter() - t0))
    await con.execute("ALTER TABLE items ENABLE TRIGGER items_postings")
    return steps


async def check(con: Any, top: int, sample: int = 1000) -> None:
    """The bulk rows are what the adapter and its trigger would have written (module doc)."""
    from session_buddy.adapters.storage.postgres import terms_tsvector

    rows = await con.fetch(
        "SELECT seq, id, content FROM items WHERE seq > $1 ORDER BY random() LIMIT $2", top, sample
    )
    literals = [terms_tsvector(r[2]) for r in rows]
    same = await con.fetchval(
        "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::int[]) x(id, lit, dl) "
        "JOIN items i USING (id) WHERE i.terms = x.lit::tsvector AND i.doc_len = x.dl",
        [r[1] for r in rows],
        [lit for lit, _ in literals],
        [n for _, n in literals],
    )
    seqs = [r[0] for r in rows]
    tr = con.transaction()
    await tr.start()
    try:
        await con.execute(
            "CREATE TEMP TABLE bulk ON COMMIT DROP AS SELECT * FROM postings WHERE seq = ANY($1)",
            seqs,
        )
        # fires the trigger: it deletes these items' postings and inserts its own
        await con.execute("UPDATE items SET doc_len = doc_len WHERE seq = ANY($1)", seqs)
        diff = await con.fetchval(
            "SELECT (SELECT count(*) FROM (SELECT * FROM bulk EXCEPT ALL SELECT * FROM postings"
            " WHERE seq = ANY($1)) a) + (SELECT count(*) FROM (SELECT * FROM postings WHERE"
            " seq = ANY($1) EXCEPT ALL SELECT * FROM bulk) b)",
            seqs,
        )
        count = await con.fetchval("SELECT count(*) FROM bulk")
    finally:
        await tr.rollback()
    stats = await con.fetchrow(
        "SELECT s.n = c.n AND s.total_len = c.len FROM item_stats s, "
        "(SELECT count(*) AS n, sum(doc_len) AS len FROM items) c"
    )
    print(
        f"check: {same}/{len(rows)} sampled rows' terms as the adapter makes them; their "
        f"{count:,} postings vs the trigger's: {diff} differ; item_stats "
        f"{'matches' if stats[0] else 'DIFFERS from'} a full count",
        flush=True,
    )
    assert same == len(rows) and diff == 0 and count > 0 and stats[0]


def _ms(times: list[float]) -> str:
    return f"p50 {statistics.median(times) * 1000:6.1f} ms  p95 {percentile(times, 0.95) * 1000:6.1f} ms"


async def rankers(
    storage: Any, queries: list[str], vectors: Any, exact: dict[int, list[str]] | None
) -> dict[int, list[str]]:
    """Time each ranker of an open ``storage`` (depth 100, no filter); the vector ranker's
    top-10 ids by query number (recall@10 against ``exact`` when given)."""
    from session_buddy.adapters.storage._base import ItemFilter

    flt = ItemFilter()
    if exact is None:
        times = []
        for q in queries:
            t0 = time.perf_counter()
            await storage.keyword_search(q, flt, 100)
            times.append(time.perf_counter() - t0)
        one = ItemFilter(projects=["proj-3"])
        filtered = []
        for q in queries[:50]:
            t0 = time.perf_counter()
            await storage.keyword_search(q, one, 100)
            filtered.append(time.perf_counter() - t0)
        print(f"  keyword ranker: {_ms(times)}; one project (50): {_ms(filtered)}", flush=True)
    times, tops = [], {}
    if not len(vectors):
        return tops
    await storage.vector_search(vectors[-1], flt, 100)  # warm up
    for n in range(len(vectors)):
        t0 = time.perf_counter()
        hits = await storage.vector_search(vectors[n], flt, 100)
        times.append(time.perf_counter() - t0)
        tops[n] = [h.id for h in hits[:10]]
    recall = ""
    if exact:
        got = [len(set(tops[n]) & set(ids)) / max(1, len(ids)) for n, ids in exact.items()]
        recall = f"; recall@10 vs exact {statistics.mean(got):.3f} ({len(got)} queries)"
    print(f"  vector ranker ({storage.vector_plan}): {_ms(times)}{recall}", flush=True)
    return tops


async def run(args: argparse.Namespace) -> None:
    from session_buddy.adapters.storage.postgres import Storage

    model, base = model_and_base(args.sample)
    await fill(args.dsn, args.schema, args.size, base)
    rng = random.Random(args.size)
    queries = [f"{make_text(rng, QUERIES)} {n}" for n in range(args.queries)]
    vectors = model.encode(queries)
    exact = None
    if "exact" in args.phases:
        storage = Storage(args.dsn, schema=args.schema, vector_index="none")
        await storage.initialize()  # (drops an ivfflat index left by an earlier run)
        print(f"rankers in process, load average {os.getloadavg()[0]:.1f}:", flush=True)
        exact = await rankers(storage, queries, vectors[: args.exact_queries], None)
        await storage.close()
    for probes in args.probes if "ivfflat" in args.phases else []:
        storage = Storage(
            args.dsn,
            schema=args.schema,
            vector_index="ivfflat",
            ivfflat_lists=args.lists,
            ivfflat_probes=probes,
        )
        t0 = time.perf_counter()
        await storage.initialize()  # builds the index at the first start
        print(f"  start with ivfflat: {time.perf_counter() - t0:.1f} s", flush=True)
        await rankers(storage, queries, vectors, exact or {})
        await storage.close()
    if "service" in args.phases:
        await service(args, model)


async def service(args: argparse.Namespace, model: Any) -> None:
    settings = {
        "SESSION_BUDDY_ADAPTERS__STORAGE": "postgres",
        "SESSION_BUDDY_STORAGE__DSN": args.dsn,
        "SESSION_BUDDY_STORAGE__PG_SCHEMA": args.schema,
        "SESSION_BUDDY_STORAGE__VECTOR_INDEX": args.service_index,
        "SESSION_BUDDY_STORAGE__IVFFLAT_LISTS": str(args.lists),
        "SESSION_BUDDY_STORAGE__IVFFLAT_PROBES": str(args.probes[0]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        row = await measure(
            Path(tmp),
            args.size,
            args.queries,
            args.store,
            model,
            settings,
            tool="search",
            tool_args={"mode": args.search_mode},
        )
    index = f"ivfflat {args.lists} lists, {args.probes[0]} probes"
    print(
        f"service over stdio ({index if args.service_index == 'ivfflat' else 'exact'}, search "
        f"mode {args.search_mode}), load average "
        f"{os.getloadavg()[0]:.1f}: start {row['start_health_s']:.2f} s to health, "
        f"{row['start_search_s']:.2f} s to the first search; RSS {row['rss_start'] / MB:.0f} "
        f"MiB at start, {row['rss_loaded'] / MB:.0f} MiB (model loaded), "
        f"{row['rss_after'] / MB:.0f} MiB after; search p50 {row['p50_ms']:.1f} ms p95 "
        f"{row['p95_ms']:.1f} ms; store {row['store_per_s']:.1f} items/s vs raw "
        f"{row['raw_per_s']:.1f} texts/s ({row['store_per_s'] / row['raw_per_s']:.0%})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=os.environ.get("SESSION_BUDDY_STORAGE__DSN"))
    parser.add_argument("--schema", default="bench_scale")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--exact-queries", type=int, default=30)
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument(
        "--probes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 20, 40]
    )
    parser.add_argument("--store", type=int, default=300)
    parser.add_argument("--service-index", choices=["none", "ivfflat"], default="ivfflat")
    parser.add_argument("--search-mode", choices=["hybrid", "keyword"], default="hybrid")
    parser.add_argument(
        "--phases",
        default="exact,ivfflat,service",
        help="after the fill: exact (keyword and exact vector rankers), ivfflat, service",
    )
    parser.add_argument("--drop", action="store_true", help="drop the schema at the end")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("--dsn (or $SESSION_BUDDY_STORAGE__DSN) is required")
    from session_buddy.logs import route_logging_to_stderr

    route_logging_to_stderr("WARNING")
    try:
        asyncio.run(run(args))
    finally:
        if args.drop:
            from search_latency import _drop_schema

            asyncio.run(_drop_schema(args.dsn, args.schema))


if __name__ == "__main__":
    main()
