"""Cold start over stdio: process start -> `initialize` answer, median of N runs.

Also reports when the server is fully loaded (first `tools/list` answer) and when the first
search is answered (storage open, model loaded), so the front's quick handshake is not the
only figure.

    .venv/bin/python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "session-buddy"


def one_run(data_dir: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env["SESSION_BUDDY_DATA_DIR"] = str(data_dir)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin and proc.stdout

    def send(message: dict[str, object]) -> None:
        proc.stdin.write(json.dumps(message).encode() + b"\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    def wait(request_id: int) -> float:
        while True:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("server exited")
            if json.loads(line).get("id") == request_id:
                return time.perf_counter() - start

    send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        }
    )
    initialize = wait(1)
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
    tools = wait(2)
    send(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "quick_search", "arguments": {"query": "startup benchmark"}},
        }
    )
    search = wait(3)
    proc.stdin.close()
    proc.wait(timeout=60)
    return {"initialize": initialize, "tools_list": tools, "first_search": search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            results.append(one_run(Path(tmp) / f"data{n}"))
    print(f"stdio cold start, {args.runs} runs, {os.cpu_count()} cores")
    for key in ("initialize", "tools_list", "first_search"):
        values = [r[key] for r in results]
        print(
            f"  {key:<13} median {statistics.median(values):.3f} s  (min {min(values):.3f}, max {max(values):.3f})"
        )


if __name__ == "__main__":
    main()
