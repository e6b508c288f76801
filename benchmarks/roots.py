"""MCP roots: what asking the client for its roots costs an in-process tool call.

The ``--standalone`` server and an in-memory ``Client(server)`` ask the client for its roots
before a session's first tool call and after each ``roots/list_changed``
(``server/client_roots.py``); the stdio bridge asks after ``initialized`` and after each
``roots/list_changed``, so a call through either pays nothing more once it is known. Reported: milliseconds per ``reflection_stats`` call (memory store, no model) from an
in-memory client without roots and with one root, in alternating rounds.

    .venv/bin/python benchmarks/roots.py [--calls 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def per_call_ms(with_roots: bool, calls: int) -> float:
    from fastmcp import Client
    from mcp.types import Root

    from session_buddy import di
    from session_buddy.server.app import create_server
    from session_buddy.settings import load_settings

    data = Path(tempfile.mkdtemp(prefix="sb-roots-"))
    os.environ["HOME"] = str(data / "home")
    settings = load_settings(
        mode="lite", data_dir=data / "data", adapters={"embeddings": "none", "storage": "memory"}
    ).settings
    extra: dict[str, Any] = {"roots": [Root(uri=ROOT.as_uri())]} if with_roots else {}  # type: ignore[arg-type]
    try:
        async with Client(create_server(settings), **extra) as client:
            for _ in range(20):  # warm up
                await client.call_tool("reflection_stats", {})
            began = time.perf_counter()
            for _ in range(calls):
                await client.call_tool("reflection_stats", {})
            return (time.perf_counter() - began) / calls * 1000
    finally:
        di.reset()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for n in range(args.rounds):
        plain = await per_call_ms(False, args.calls)
        rooted = await per_call_ms(True, args.calls)
        print(f"round {n + 1}: no roots {plain:.3f} ms/call, one root {rooted:.3f} ms/call")


if __name__ == "__main__":
    asyncio.run(main())
