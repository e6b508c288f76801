"""Shared fixtures: an isolated HOME and data dir per test, and a fresh container."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own HOME, config dir and data dir; no SESSION_BUDDY_* leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("SESSION_BUDDY_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SESSION_BUDDY_DATA_DIR", str(tmp_path / "data"))
    yield home


@pytest.fixture(autouse=True)
def no_service_left(tmp_path: Path) -> Iterator[None]:
    """A test whose CLI commands started the shared service of a data dir of its own (import,
    report, migrate, sync go through it) leaves no service behind, failed or not."""
    yield
    from session_buddy.server.discovery import SERVICE_FILE
    from tests.mcp_peers import stop_service

    for found in tmp_path.glob(f"**/{SERVICE_FILE}"):
        stop_service(found.parent)


@pytest.fixture(autouse=True)
def fresh_container() -> Iterator[None]:
    """The container is process-global: forget it after each test."""
    yield
    from session_buddy import di

    di.reset()


@pytest.fixture
def lite_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    from session_buddy.settings import load_settings

    return load_settings(mode="lite", data_dir=tmp_path / "data").settings


@pytest.fixture
def duckdb_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    from session_buddy.settings import load_settings

    return load_settings(data_dir=tmp_path / "data", adapters={"storage": "duckdb"}).settings


@pytest.fixture
async def client(lite_settings) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    """An in-memory MCP client on a lite (in-memory storage) server with the real ONNX model."""
    from fastmcp import Client

    from session_buddy.server.app import create_server

    async with Client(create_server(lite_settings)) as c:
        yield c


def session_buddy_cmd() -> list[str]:
    """How to start the installed CLI from a test (same interpreter as the tests)."""
    return [sys.executable, "-m", "session_buddy.cli"]


@pytest.fixture
async def duckdb_store(tmp_path: Path) -> AsyncIterator[object]:
    """A fresh DuckDB storage (384 dimensions) in the test's folder, closed after."""
    from session_buddy.adapters.storage.duckdb import Storage

    storage = Storage(tmp_path / "memory.duckdb", dimension=384)
    await storage.initialize()
    yield storage
    await storage.close()
