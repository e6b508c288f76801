"""Start-up over stdio: process start -> `initialize` answer, median of N runs, per mode.

- cold: shared mode with no service running (the bridge starts one);
- warm: shared mode with the data directory's service already running;
- standalone: `serve --standalone` (the server loads inside the stdio process).

Besides `initialize`, it reports when the first `tools/list` and the first search are
answered, so the quick handshake is not the only figure.

    .venv/bin/python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "session-buddy"
KEYS = ("initialize", "tools_list", "first_search")


def stop_service(data_dir: Path) -> None:
    try:
        info = json.loads((data_dir / "service.json").read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(int(info["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(600):
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def one_run(data_dir: Path, *args: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env["SESSION_BUDDY_DATA_DIR"] = str(data_dir)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN), "serve", *args],
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


def report(name: str, results: list[dict[str, float]]) -> None:
    print(f"{name}:")
    for key in KEYS:
        values = [r[key] for r in results]
        print(
            f"  {key:<13} median {statistics.median(values):.3f} s"
            f"  (min {min(values):.3f}, max {max(values):.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"stdio start-up, {args.runs} runs per mode, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        cold, warm, standalone = [], [], []
        for n in range(args.runs):
            data = Path(tmp) / f"cold{n}"
            cold.append(one_run(data))  # starts the service
            warm.append(one_run(data))  # the service is running now
            stop_service(data)
            standalone.append(one_run(Path(tmp) / f"standalone{n}", "--standalone"))
        report("shared, cold (no service running)", cold)
        report("shared, warm (service running)", warm)
        report("standalone (server in the stdio process)", standalone)


if __name__ == "__main__":
    main()
