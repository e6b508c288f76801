"""Throughput and latency of 1, 4 and 8 concurrent stdio sessions on shared services.

Each client is a real `session-buddy serve` bridge process; each does `--ops` operations,
alternating `store_conversation` and `quick_search`. Reported per level: total operations
per second, and p50/p95 latency of writes and of searches.

    .venv/bin/python benchmarks/concurrency.py [--clients 1,4,8] [--ops 100]

With ``--storage postgres --services 2`` the clients are spread over two services (two data
directories, as on two machines) that share one PostgreSQL schema (``--dsn`` or
$SESSION_BUDDY_TEST_PG_DSN; the schema is dropped at the end). After each level, every
service searches for each client's last write: the count of writes it sees is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent / "session-buddy"


class Client:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(BIN), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.next_id += 1
        rid = self.next_id
        self.proc.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
            + b"\n"
        )
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("bridge exited")
            message = json.loads(line)
            if message.get("id") == rid:
                return message  # type: ignore[no-any-return]

    def initialize(self) -> None:
        self.call(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        )

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def level(envs: list[dict[str, str]], clients: int, ops: int) -> None:
    peers = [Client(envs[n % len(envs)]) for n in range(clients)]
    for peer in peers:
        peer.initialize()
        peer.call("tools/call", {"name": "quick_search", "arguments": {"query": "warm up"}})
    writes: list[float] = []
    searches: list[float] = []
    errors = 0
    lock = threading.Lock()

    def work(n: int, peer: Client) -> None:
        nonlocal errors
        for i in range(ops):
            if i % 2 == 0:
                name = "store_conversation"
                args: dict[str, Any] = {
                    "content": f"client {n} op {i}: the retry budget for the {i % 7} queue "
                    f"was raised (mark{clients}x{n}x{i})",
                    "project": "bench",
                }
            else:
                name, args = (
                    "quick_search",
                    {"query": f"retry budget queue {i % 7}", "project": "bench"},
                )
            t0 = time.perf_counter()
            answer = peer.call("tools/call", {"name": name, "arguments": args})
            elapsed = time.perf_counter() - t0
            with lock:
                (writes if name == "store_conversation" else searches).append(elapsed)
                if "error" in answer or answer.get("result", {}).get("isError"):
                    errors += 1

    threads = [threading.Thread(target=work, args=(n, p)) for n, p in enumerate(peers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - start
    last = max(i for i in range(ops) if i % 2 == 0)
    seen = []
    for reader in peers[: len(envs)]:  # one client of each service
        found = 0
        for n in range(clients):
            answer = reader.call(
                "tools/call",
                {"name": "quick_search", "arguments": {"query": f"mark{clients}x{n}x{last}"}},
            )
            hits = answer.get("result", {}).get("structuredContent", {}).get("hits", [])
            found += any(f"(mark{clients}x{n}x{last})" in h["content"] for h in hits)
        seen.append(f"{found}/{clients}")
    for peer in peers:
        peer.close()
    print(
        f"{clients} client(s): {clients * ops / total:6.1f} ops/s; "
        f"write p50 {pct(writes, 0.5):5.1f} ms p95 {pct(writes, 0.95):6.1f} ms; "
        f"search p50 {pct(searches, 0.5):5.1f} ms p95 {pct(searches, 0.95):6.1f} ms; "
        f"errors {errors}; last writes seen by each service: {', '.join(seen)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--ops", type=int, default=100)
    parser.add_argument("--storage", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--services", type=int, default=1, help="postgres: services sharing it")
    parser.add_argument("--dsn", default=None, help="postgres: the database")
    args = parser.parse_args()
    if args.services > 1 and args.storage != "postgres":
        parser.error("several services need --storage postgres (a DuckDB file has one writer)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    schema = f"bench_conc_{os.getpid()}"
    dsn = args.dsn or os.environ.get("SESSION_BUDDY_TEST_PG_DSN", "")
    if args.storage == "postgres":
        if not dsn:
            parser.error("--storage postgres needs --dsn (or $SESSION_BUDDY_TEST_PG_DSN)")
        base.update(
            SESSION_BUDDY_ADAPTERS__STORAGE="postgres",
            SESSION_BUDDY_STORAGE__DSN=dsn,
            SESSION_BUDDY_STORAGE__PG_SCHEMA=schema,
        )
    with tempfile.TemporaryDirectory() as tmp:
        envs = [
            {**base, "SESSION_BUDDY_DATA_DIR": str(Path(tmp) / f"data{k}")}
            for k in range(args.services)
        ]
        print(
            f"{args.services} shared service(s), {args.storage} storage, {os.cpu_count()} cores, "
            f"{args.ops} ops per client"
        )
        try:
            for n in (int(c) for c in args.clients.split(",")):
                level(envs, n, args.ops)
        finally:
            for env in envs:
                try:
                    info = json.loads(
                        (Path(env["SESSION_BUDDY_DATA_DIR"]) / "service.json").read_text()
                    )
                    os.kill(int(info["pid"]), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
            time.sleep(2)
            if args.storage == "postgres":
                import asyncio

                import asyncpg

                async def drop() -> None:
                    con = await asyncpg.connect(dsn)
                    try:
                        await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                    finally:
                        await con.close()

                asyncio.run(drop())


if __name__ == "__main__":
    main()
