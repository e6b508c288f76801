"""The resident memory of a stdio service, phase by phase, read from its ``/proc`` (Linux).

Starts ``serve --standalone`` on ``DATA`` (a store grown by ``scale.py --data DATA``) and
prints its RSS (and the anonymous / file-backed parts, from ``/proc/PID/smaps_rollup``)
after the first ``health``, the first ``quick_search`` (the model loaded), ``--queries``
searches (with their p50 / p95), ``--store`` stores (batches of 100), as many searches
again, a last ``health`` and 2 s idle. The service's stores are written to ``DATA``: run it on a copy
to compare two runs on the same store.

    .venv/bin/python benchmarks/rss_phases.py DATA [--queries 50] [--store 100]
        [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_latency import QUERIES, TEMPLATES, make_text, percentile


def child_pid() -> int:
    """The pid of this process's child (the service the stdio transport started)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                return int(entry)
    raise RuntimeError("the service process was not found")


def memory(pid: int) -> str:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, *value = line.split()
        if key in ("Rss:", "Anonymous:"):
            found[key[:-1]] = int(value[0]) // 1024
    rss, anon = found["Rss"], found["Anonymous"]
    return f"RSS {rss:4d} MiB (anonymous {anon:4d}, file-backed {rss - anon:4d})"


async def searches(client: object, rng: random.Random, count: int, tag: str) -> list[float]:
    times = []
    for n in range(count):
        t0 = time.perf_counter()
        await client.call_tool("quick_search", {"query": f"{make_text(rng, QUERIES)} {tag}{n}"})  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return times


def standalone(data: Path, env_pairs: list[str]) -> Any:
    """A stdio transport to ``serve --standalone`` on ``data``, with ``KEY=VALUE`` settings."""
    from fastmcp.client.transports import StdioTransport

    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env["SESSION_BUDDY_DATA_DIR"] = str(data)
    env.update(dict(pair.split("=", 1) for pair in env_pairs))
    return StdioTransport(
        sys.executable,
        ["-m", "session_buddy.cli", "serve", "--standalone"],
        env=env,
        log_file=data / "serve.stderr.log",
        keep_alive=False,
    )


async def main(args: argparse.Namespace) -> None:
    from fastmcp import Client

    transport = standalone(args.data, args.env)
    async with Client(transport) as client:
        pid = child_pid()
        await client.call_tool("health", {})
        print(f"first health        {memory(pid)}", flush=True)
        await client.call_tool("quick_search", {"query": "warm up the model"})
        print(f"first search        {memory(pid)}", flush=True)
        rng = random.Random(100_000)
        times = await searches(client, rng, args.queries, "")
        print(
            f"{args.queries} searches{'':<9}{memory(pid)}; p50 "
            f"{statistics.median(times) * 1000:.1f} ms, p95 {percentile(times, 0.95) * 1000:.1f} ms",
            flush=True,
        )
        texts = [f"{make_text(rng, TEMPLATES)} (new {i})" for i in range(args.store)]
        for i in range(0, len(texts), 100):
            items = [{"content": t, "project": "proj-new"} for t in texts[i : i + 100]]
            await client.call_tool("store_conversations", {"items": items})
        print(f"{args.store} stores{'':<10}{memory(pid)}", flush=True)
        await searches(client, rng, args.queries, "b")
        print(f"{args.queries} more searches    {memory(pid)}", flush=True)
        await client.call_tool("health", {})
        print(f"last health         {memory(pid)}", flush=True)
        await asyncio.sleep(2)
        print(f"idle 2 s            {memory(pid)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--store", type=int, default=100)
    parser.add_argument("--env", nargs="*", default=[])
    asyncio.run(main(parser.parse_args()))
