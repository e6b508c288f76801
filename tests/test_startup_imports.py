"""What a session imports at start, pinned: a real ``session-buddy serve`` (the stdio front,
a thin bridge) and the shared service it starts, both run with ``PYTHONPROFILEIMPORTTIME``
so each process lists every module it imported, in order, on its stderr (the service's goes
to its log). Only what is lazy today is pinned, so a change that makes a start import more
fails here:

- the front imports none of the server's stack (numpy, DuckDB, FastMCP, ACB, the model...):
  it answers ``initialize`` itself and relays to the service;
- the service imports no jinja2 or dashboard pages (loaded by the first dashboard page),
  no PostgreSQL driver on a DuckDB store, and, with ``embeddings.preload`` off, neither
  onnxruntime nor the tokenizer before the first text is embedded (by default the model
  loads in the background after the start, see docs/performance.md).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.mcp_peers import StdioPeer, server_env, stop_service

#: Not imported by the stdio front, ever (its bridge included).
FRONT_NEVER = (
    "numpy",
    "duckdb",
    "fastmcp",
    "mcp",
    "acb",
    "starlette",
    "uvicorn",
    "httpx",
    "onnxruntime",
    "tokenizers",
    "jinja2",
    "typer",
    "rich",
    "prometheus_client",
    "opentelemetry",
    "jwt",  # the front mints its tokens with the standard library (server/auth.py)
    "cryptography",
    "session_buddy.server.app",
    "session_buddy.di",
    "session_buddy.adapters.storage.duckdb",
)
#: Not imported by the service on a DuckDB store before a dashboard page or a postgres store.
SERVICE_NEVER = (
    "jinja2",
    "session_buddy.server.dashboard.routes",
    "session_buddy.server.dashboard.pages",
    "asyncpg",
    "session_buddy.adapters.storage.postgres",
)
#: Imported by the service only when the first text is embedded (embeddings.preload off).
ON_FIRST_EMBED = ("onnxruntime", "tokenizers")

_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$", re.MULTILINE)


def imported(stderr: str) -> set[str]:
    """Every module (and package) ``-X importtime`` lists in this text."""
    return {match.group(2) for match in _IMPORT.finditer(stderr)}


def present(names: tuple[str, ...], modules: set[str]) -> list[str]:
    """Those of ``names`` imported (themselves or one of their submodules)."""
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


def test_a_session_starts_without_the_heavy_modules_it_does_not_use(tmp_path: Path) -> None:
    env = server_env(
        tmp_path,
        PYTHONPATH=str(ROOT),
        PYTHONPROFILEIMPORTTIME="1",  # inherited by the service the bridge starts
        SESSION_BUDDY_EMBEDDINGS__PRELOAD="false",
    )
    log = tmp_path / "data" / "logs" / "service.log"
    peer = StdioPeer(env, tmp_path)
    try:
        peer.initialize()
        tools = peer.wait_for(peer.request("tools/list"))["result"]["tools"]
        assert any(t["name"] == "search" for t in tools)
        health = peer.call("health", {})
        assert not health.get("isError"), health
        time.sleep(0.5)  # anything the start does in the background
        at_start = imported(log.read_text())
        stored = peer.call("store_reflection", {"content": "the deploy runs at noon"})
        assert not stored.get("isError"), stored
        found = peer.call("search", {"query": "when does the deploy run"})
        assert not found.get("isError"), found
        after_search = imported(log.read_text())
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        peer.proc.wait(60)
        stop_service(tmp_path / "data")
    assert peer.proc.stderr is not None
    front = imported(peer.proc.stderr.read().decode(errors="replace"))
    assert "session_buddy.server.bridge" in front and "session_buddy.server.stdio" in front
    assert present(FRONT_NEVER, front) == [], "the stdio front imported these"

    assert "session_buddy.server.app" in at_start and "duckdb" in at_start
    assert present(SERVICE_NEVER, after_search) == [], "the service imported these"
    assert present(ON_FIRST_EMBED, at_start) == [], "the model loaded at start"
    assert present(ON_FIRST_EMBED, after_search) == list(ON_FIRST_EMBED)
