"""The DuckDB store's index load in process: where it came from, how long it took, the RSS
after it and ``SearchIndex.memory()``, a few keyword searches and term lookups, then the
close (which writes the snapshot).

    .venv/bin/python benchmarks/index_load.py STORE/memory.duckdb [rows|snapshot]

``rows`` deletes the snapshot first (a rebuild from the rows); ``snapshot`` uses it if the
last close wrote one. Run it on a copy of a store (``scale.py --data DIR`` fills one).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

MB = 1_048_576


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


async def main(path: Path, mode: str) -> None:
    import duckdb  # noqa: F401  (imported before the baseline RSS)
    import numpy  # noqa: F401

    from session_buddy.adapters.storage.duckdb import Storage
    from session_buddy.search.tokens import query_terms

    if mode == "rows":
        path.with_name(path.name + ".index").unlink(missing_ok=True)
    base = rss()
    storage = Storage(path)
    await storage.initialize()
    m = storage.index.memory()
    print(
        f"{mode}: from its {storage.index_source} in {storage.index_load_seconds:.2f} s; RSS "
        f"{rss() / MB:.0f} MiB ({base / MB:.0f} before the open); index {m['bytes'] / MB:.0f} "
        f"MiB (keyword {m['keyword_bytes'] / MB:.0f}, vectors {m['vector_bytes'] / MB:.0f}, "
        f"ids {m.get('id_bytes', 0) / MB:.0f}); {m['items']} items, {m['vocabulary']} terms",
        flush=True,
    )
    index = storage.index
    queries = ["database connection timeout", "ERR_CONN_4021 retry", "note 4242", "pytest"]
    for query in queries:
        index.keyword_search(query, None, 10)
    t0 = time.perf_counter()
    for _ in range(5):
        for query in queries:
            index.keyword_search(query, None, 10)
    print(f"  keyword search {1000 * (time.perf_counter() - t0) / 20:.1f} ms on average")
    terms = query_terms("database connection timeout retry 4242")
    t0 = time.perf_counter()
    for _ in range(1000):
        index.keyword._ids(terms)
    print(f"  lookup of {len(terms)} terms {(time.perf_counter() - t0) * 1000:.1f} us")
    t0 = time.perf_counter()
    await storage.close()
    print(f"  close {time.perf_counter() - t0:.2f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "snapshot"))
