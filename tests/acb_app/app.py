"""A tiny ACB application that embeds session-buddy as a library (no MCP server).

It registers its own service in ACB's container, registers session-buddy's adapters and
core services into the same container, and uses the memory service directly.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

with contextlib.redirect_stdout(sys.stderr):  # ACB logs "Application started" to stdout
    from acb.depends import depends

import session_buddy
from session_buddy.settings import load_settings


class Greeter:
    """The host application's own component."""

    def hello(self) -> str:
        return "hello from the host app"


async def run(data_dir: Path) -> dict[str, object]:
    depends.set(Greeter, Greeter())
    settings = load_settings(data_dir=data_dir, adapters={"storage": "duckdb"}).settings
    session_buddy.configure(settings)
    await session_buddy.startup()
    try:
        memory = depends.get_sync(session_buddy.MemoryService)  # ACB's own lookup works too
        stored = await memory.store(
            [
                session_buddy.ItemInput(
                    content="Host apps can embed session-buddy.", kind="reflection", project="host"
                )
            ]
        )
        found = await session_buddy.get(session_buddy.MemoryService).search(
            "embed session-buddy", projects=["host"]
        )
        return {
            "greeting": depends.get_sync(Greeter).hello(),
            "stored_id": stored[0].id,
            "found_ids": [h.id for h in found.hits],
        }
    finally:
        await session_buddy.shutdown()
