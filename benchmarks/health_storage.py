"""The SQL of ``health``'s storage component on a DuckDB store, before and after it was
made one scan: the stats' three counting queries against the one grouped query, and the
ping's ``count(*)`` against a one-row read. Opens the file read-only (run it on a copy of
a store: ``scale.py --data DIR`` fills one) and prints the median and best of each.

    .venv/bin/python benchmarks/health_storage.py STORE/memory.duckdb [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb

OLD_STATS = [
    "SELECT kind, count(*) FROM items GROUP BY kind",
    "SELECT project, count(*) FROM items GROUP BY project",
    "SELECT count(*) FROM items WHERE embedding IS NOT NULL",
]
OLD_PING = ["SELECT count(*) FROM items"]


def main() -> None:
    from session_buddy.adapters.storage._sql import COUNTS, PING

    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    con = duckdb.connect(args.store, read_only=True)
    (items,) = con.execute("SELECT count(*) FROM items").fetchone() or (0,)
    print(f"{items:,} items")
    cases = {
        "stats, before (3 queries)": OLD_STATS,
        "stats, one scan": [COUNTS],
        "ping, before (count)": OLD_PING,
        "ping, one row": [PING],
        "health's storage SQL, before": OLD_PING + OLD_STATS,
        "health's storage SQL, after": [PING, COUNTS],
    }
    for name, statements in cases.items():
        for sql in statements:  # warm
            con.execute(sql).fetchall()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            for sql in statements:
                con.execute(sql).fetchall()
            times.append((time.perf_counter() - start) * 1000)
        print(f"{name:32} median {statistics.median(times):6.1f} ms, best {min(times):6.1f} ms")


if __name__ == "__main__":
    main()
