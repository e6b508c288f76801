"""Throughput and latency of 1, 4 and 8 concurrent stdio sessions on one shared service.

Each client is a real `session-buddy serve` bridge process; each does `--ops` operations,
alternating `store_conversation` and `quick_search`. Reported per level: total operations
per second, and p50/p95 latency of writes and of searches.

    .venv/bin/python benchmarks/concurrency.py [--clients 1,4,8] [--ops 100]
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


def level(env: dict[str, str], clients: int, ops: int) -> None:
    peers = [Client(env) for _ in range(clients)]
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
                    "content": f"client {n} op {i}: the retry budget for the {i % 7} queue was raised",
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
    for peer in peers:
        peer.close()
    print(
        f"{clients} client(s): {clients * ops / total:6.1f} ops/s; "
        f"write p50 {pct(writes, 0.5):5.1f} ms p95 {pct(writes, 0.95):6.1f} ms; "
        f"search p50 {pct(searches, 0.5):5.1f} ms p95 {pct(searches, 0.95):6.1f} ms; errors {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--ops", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env["SESSION_BUDDY_DATA_DIR"] = str(Path(tmp) / "data")
        print(f"shared service, duckdb storage, {os.cpu_count()} cores, {args.ops} ops per client")
        try:
            for n in (int(c) for c in args.clients.split(",")):
                level(env, n, args.ops)
        finally:
            try:
                info = json.loads((Path(tmp) / "data" / "service.json").read_text())
                os.kill(int(info["pid"]), signal.SIGTERM)
                time.sleep(2)
            except (OSError, ValueError):
                pass


if __name__ == "__main__":
    main()
