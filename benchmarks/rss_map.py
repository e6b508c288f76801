"""Where a stdio service's resident memory is, by mapping, read from ``/proc/PID/smaps`` (Linux).

Starts ``serve --standalone`` on ``DATA`` (a store grown by ``scale.py --data DATA``; run it
on a copy: the service writes its snapshot on exit), and after the first ``quick_search``
(the model loaded: the figure ``scale.py`` reports as "model loaded"), and again after 2 s
idle (the service's idle heap trim), prints ``health``'s RSS and the resident KiB of each
group of mappings: the heap and anonymous mappings, the index snapshot (mapped arrays),
each shared library (onnxruntime, DuckDB, numpy...), other files. Then ``--queries``
searches and the same breakdown.

    .venv/bin/python benchmarks/rss_map.py DATA [--queries 0] [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rss_phases import child_pid, standalone
from search_latency import QUERIES, make_text

MB = 1_048_576


def groups(pid: int) -> dict[str, list[int]]:
    """Resident and anonymous KiB by mapping group."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(maxsplit=5)
        if first and "-" in first[0] and len(first) >= 5 and not first[0].endswith(":"):
            path = first[5].strip() if len(first) > 5 else ""
            if not path:
                name = "[anon]"
            elif path.startswith("["):
                name = path
            elif ".so" in path:
                base = Path(path).name
                name = "lib " + base.split(".so")[0].split("-")[0]
            else:
                name = "file " + Path(path).name
            continue
        if first and first[0] == "Rss:":
            out[name][0] += int(first[1])
        elif first and first[0] == "Anonymous:":
            out[name][1] += int(first[1])
    return out


def show(pid: int, tag: str, rss: int) -> None:
    found = groups(pid)
    total = sum(v[0] for v in found.values())
    anon = sum(v[1] for v in found.values())
    print(
        f"{tag}: health RSS {rss / MB:.0f} MiB; smaps {total // 1024} MiB "
        f"(anonymous {anon // 1024})",
        flush=True,
    )
    for name, (rss_kb, anon_kb) in sorted(found.items(), key=lambda kv: -kv[1][0])[:16]:
        print(f"    {rss_kb / 1024:7.1f} MiB  (anon {anon_kb / 1024:6.1f})  {name}", flush=True)


async def main(args: argparse.Namespace) -> None:
    from fastmcp import Client

    transport = standalone(args.data, args.env)

    async def rss(client: Client) -> int:  # type: ignore[type-arg]
        result = await client.call_tool("health", {})
        parts = {c["name"]: c for c in result.structured_content["components"]}
        index = parts["storage"]["metadata"].get("index") or {}
        print(
            "  index (health): "
            + ", ".join(f"{k} {v / MB:.1f}" for k, v in index.items() if k.endswith("bytes")),
            flush=True,
        )
        return int(parts["python"]["metadata"]["rss_bytes"])

    async with Client(transport) as client:
        pid = child_pid()
        await client.call_tool("health", {})
        await client.call_tool("quick_search", {"query": "warm up the model"})
        show(pid, "first search", await rss(client))
        await asyncio.sleep(2)
        show(pid, "idle 2 s", await rss(client))
        if args.queries:
            rng = random.Random(1_000_000)
            for n in range(args.queries):
                await client.call_tool("quick_search", {"query": f"{make_text(rng, QUERIES)} {n}"})
            show(pid, f"{args.queries} searches", await rss(client))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--queries", type=int, default=0)
    parser.add_argument("--env", nargs="*", default=[])
    asyncio.run(main(parser.parse_args()))
