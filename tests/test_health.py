"""The health adapter built from its constructor, without the container: it is handed the
adapters it checks and, optionally, the start-up to await before checking storage."""

from __future__ import annotations

from pathlib import Path

from session_buddy import di
from session_buddy.adapters.embeddings.none import Embeddings
from session_buddy.adapters.health.checks import Health
from session_buddy.adapters.http.httpx import Http
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.paths import SessionPaths
from session_buddy.settings import load_settings


def components(report: dict[str, object]) -> dict[str, dict[str, object]]:
    listed = report["components"]
    assert isinstance(listed, list)
    return {c["name"]: c for c in listed}


async def test_health_checks_what_it_was_given_and_awaits_ready(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", adapters={"storage": "duckdb"}).settings
    paths = SessionPaths.from_settings(settings.data_dir)
    storage = Storage.from_settings(settings, paths)
    http = Http.from_settings(settings, paths, None)
    opened: list[str] = []

    async def ready() -> None:
        if not opened:
            await storage.initialize()
            opened.append("storage")

    health = Health(settings, paths, storage, Embeddings(), http, ready=ready)
    try:
        report = await health.check()
        assert not di.is_configured()  # nothing looked up in the container
        assert opened == ["storage"]
        found = components(report)
        assert found["storage"]["status"] == "healthy", found["storage"]
        assert found["data_dir"]["status"] == "healthy"
        assert found["embeddings"]["status"] == "degraded"  # adapters.embeddings = none
        assert report["status"] == "degraded"
        # without the start-up to await, storage that was never opened is reported as such
        closed = Storage.from_settings(settings, SessionPaths.from_settings(tmp_path / "other"))
        unopened = Health(settings, paths, closed, Embeddings(), http)
        assert components(await unopened.check())["storage"]["status"] == "unhealthy"
    finally:
        await storage.close()
        await http.close()


HEALTH_WITHOUT_THE_PACKAGE = """
import asyncio, json, sys
from pathlib import Path
from session_buddy.adapters.embeddings.none import Embeddings
from session_buddy.adapters.health.checks import Health
from session_buddy.adapters.http.httpx import Http
from session_buddy.adapters.storage.memory import Storage
from session_buddy.paths import SessionPaths
from session_buddy.settings import load_settings

async def main():
    data = Path(sys.argv[1])
    settings = load_settings(data_dir=data, adapters={"storage": "memory"}).settings
    paths = SessionPaths.from_settings(data)
    storage = Storage.from_settings(settings, paths)
    await storage.initialize()
    http = Http.from_settings(settings, paths, None)
    report = await Health(settings, paths, storage, Embeddings(), http).check()
    await http.close()
    light = {m for m in ("mcp_common", "oneiric") if m in sys.modules}
    import mcp_common  # the whole package, afterwards: it takes the module already loaded
    from mcp_common.health import ComponentHealth
    from session_buddy.adapters.health.checks import mcp_health
    same = mcp_common.ComponentHealth is ComponentHealth is mcp_health().ComponentHealth
    print(json.dumps({"report": report, "imported": sorted(light), "same": same}))

asyncio.run(main())
"""


def test_health_loads_only_mcp_commons_health_module(tmp_path: Path) -> None:
    """The check imports ``mcp_common.health`` alone (not the package, which pulls in oneiric,
    ~45 MB), in the same shape; importing the package afterwards reuses that module."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", HEALTH_WITHOUT_THE_PACKAGE, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    assert out["same"] is True
    report = out["report"]
    assert {"status", "timestamp", "version", "uptime_seconds", "components"} <= set(report)
    found = components(report)
    assert set(found) == {"python", "data_dir", "storage", "embeddings", "http", "sync"}
    for component in found.values():
        assert {"name", "status", "message", "metadata"} <= set(component)
    assert found["storage"]["status"] == "healthy", found["storage"]
    assert found["python"]["metadata"]["rss_bytes"] > 0
