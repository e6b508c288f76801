"""Dashboard page latency (p50/p95 per page) on a store of ``--items`` memories (default
100k), through the real shared service over HTTP, logged in as a person is.

A DuckDB store is filled directly (memories with random unit vectors under the packaged
model's name, so hybrid search runs both rankers; ``--sessions`` sessions over 10 projects,
three checkpoints each, one handoff), then ``session-buddy dashboard --no-browser`` starts
the service and prints the login link, and every page is asked ``--runs`` times after a
warm-up (searches with distinct queries: the query's embedding is part of the time).

    .venv/bin/python benchmarks/dashboard.py [--items 100000] [--sessions 300] [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from session_buddy.adapters.storage._base import KINDS, NewItem
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.core.sessions.state import CheckpointEntry, SessionState

PROJECTS = [f"proj{n}" for n in range(10)]
WORDS = [
    "auth",
    "token",
    "cache",
    "retry",
    "timeout",
    "deploy",
    "schema",
    "migration",
    "index",
    "query",
    "worker",
    "queue",
    "billing",
    "invoice",
    "webhook",
    "parser",
    "config",
    "flaky",
    "test",
    "fixture",
    "lint",
    "coverage",
    "release",
]
MODEL = "all-MiniLM-L6-v2-onnx-int8"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fill(data_dir: Path, items: int, sessions: int) -> tuple[str, str]:
    """The store; returns one memory id and one session id (with a handoff)."""
    rng, nrng = random.Random(5), np.random.default_rng(5)
    storage = Storage(data_dir / "memory.duckdb", dimension=384)
    await storage.initialize()
    await storage.set_meta("embedding_model", MODEL)
    await storage.set_meta("embedding_dimension", "384")
    start = datetime.now(UTC) - timedelta(days=120)
    first_id = ""
    for base in range(0, items, 5000):
        vectors = nrng.normal(size=(min(5000, items - base), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = [
            NewItem(
                kind=KINDS[n % 3],
                content=f"memory {base + n}: " + " ".join(rng.choices(WORDS, k=24)),
                project=PROJECTS[(base + n) % len(PROJECTS)],
                tags=[rng.choice(WORDS)],
                created_at=start + timedelta(seconds=100 * (base + n)),
                embedding=vector,
            )
            for n, vector in enumerate(vectors)
        ]
        added = await storage.add_items(batch)
        first_id = first_id or added[0].id
    session_id = await _sessions(storage, data_dir, sessions, start)
    await storage.close()
    return first_id, session_id


async def _sessions(storage: Storage, data_dir: Path, count: int, start: datetime) -> str:
    last = ""
    for n in range(count):
        at = start + timedelta(hours=6 * n)
        project = PROJECTS[n % len(PROJECTS)]
        state = SessionState.new(project=project, started_at=at, status="ended")
        state.ended_at, state.checkpoints, state.last_score = at + timedelta(hours=1), 3, 70
        for c in range(3):
            await storage.put_record(
                CheckpointEntry(
                    id=f"{state.id}-{c}",
                    session_id=state.id,
                    project=project,
                    at=at + timedelta(minutes=20 * c),
                    score=60 + (n + c) % 30,
                ).to_record()
            )
        last = state.id
        if n == count - 1:
            handoff = data_dir / "handoff.md"
            handoff.write_text("# Session handoff\n\n## Summary\n\nBenchmarked.\n")
            state.handoff_path = str(handoff)
        await storage.put_record(state.to_record())
    return last


def login(data_dir: Path, env: dict[str, str]) -> httpx.Client:
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy.cli", "dashboard", "--no-browser"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    link = done.stdout.strip()
    base = link.split("/dashboard/")[0]
    client = httpx.Client(base_url=base, timeout=60)
    assert client.get(link.removeprefix(base)).status_code == 303
    return client


def pages(memory_id: str, session_id: str) -> dict[str, list[str]]:
    queries = [f"{a} {b} failure" for a in WORDS for b in WORDS[:4]]
    return {
        "search (hybrid)": [f"/dashboard/search?q={q}" for q in queries],
        "search (project+kind)": [
            f"/dashboard/search?q={q}&project=proj3&kind=reflection" for q in queries
        ],
        "memories": ["/dashboard/memories"],
        "memories (project, kind, page 40)": [
            "/dashboard/memories?project=proj2&kind=insight&page=40"
        ],
        "memory": [f"/dashboard/memories/{memory_id}"],
        "sessions": ["/dashboard/sessions"],
        "session (timeline, handoff)": [f"/dashboard/sessions/{session_id}"],
        "quality (project)": ["/dashboard/quality?project=proj1"],
        "quality (all)": ["/dashboard/quality"],
        "projects": ["/dashboard/projects"],
        "health": ["/dashboard/health"],
        "live": ["/dashboard/live"],
    }


def measure(client: httpx.Client, urls: list[str], runs: int) -> tuple[float, float]:
    for url in urls[:3]:
        assert client.get(url).status_code == 200, url
    times = []
    for n in range(runs):
        url = urls[(n + 3) % len(urls)]
        t0 = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200, (url, answer.text[:300])
    return statistics.median(times), percentile(times, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="fill this folder once and reuse it")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        root = args.keep or Path(folder)
        data_dir, home = root / "data", root / "home"
        home.mkdir(parents=True, exist_ok=True)
        ids = root / "ids.txt"
        if not ids.exists():
            data_dir.mkdir(parents=True)
            t0 = time.perf_counter()
            ids.write_text(" ".join(asyncio.run(fill(data_dir, args.items, args.sessions))))
            print(f"filled {args.items} memories, {args.sessions} sessions in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        memory_id, session_id = ids.read_text().split()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
        env.update(HOME=str(home), SESSION_BUDDY_DATA_DIR=str(data_dir))
        client = login(data_dir, env)
        try:
            print(f"{'page':38} {'p50 ms':>8} {'p95 ms':>8}")
            for name, urls in pages(memory_id, session_id).items():
                p50, p95 = measure(client, urls, args.runs)
                print(f"{name:38} {p50:8.1f} {p95:8.1f}", flush=True)
        finally:
            client.close()
            stop(data_dir)


def stop(data_dir: Path) -> None:
    """Stop the service of the benchmark's data directory."""
    import signal

    from session_buddy.server.discovery import pid_alive, read_service

    info = read_service(data_dir)
    if info is not None:
        os.kill(int(info["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(int(info["pid"])) and time.monotonic() < deadline:
            time.sleep(0.1)


if __name__ == "__main__":
    main()
