"""Default health checks: python env, data dir, storage, embeddings, http, sync.

Uses mcp-common's ``ComponentHealth``/``HealthStatus``/``HealthCheckResponse``. The package
``mcp_common`` imports oneiric and most of its own modules on import (~45 MB resident and
seconds), while ``mcp_common/health.py`` needs only the standard library: :func:`mcp_health`
loads that one file as ``mcp_common.health`` without running the package's ``__init__``
(when the package is imported later, it finds the module already loaded and uses it).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from session_buddy import __version__
from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters._memory import rss_bytes
from session_buddy.adapters.embeddings._base import EmbeddingsBase
from session_buddy.adapters.health._base import HealthBase
from session_buddy.adapters.http._base import HttpBase
from session_buddy.adapters.storage._base import StorageBase
from session_buddy.adapters.sync._base import SyncBase
from session_buddy.paths import SessionPaths
from session_buddy.search.index import SearchIndex
from session_buddy.settings import SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="7a9f3c1e-2b4d-4e6f-8a0b-1c2d3e4f5a03",
    name="default",
    category="health",
    provider="session-buddy",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="Component health in mcp-common's HealthStatus/ComponentHealth shape",
    capabilities=[AdapterCapability.HEALTH_CHECKS],
    required_packages=["mcp-common"],
)

STORAGE_SLOW_MS = 500.0


def mcp_health() -> ModuleType:
    """``mcp_common.health``, loaded on its own when the package is not imported yet."""
    name = "mcp_common.health"
    module = sys.modules.get(name)
    if module is not None:
        return module
    package = importlib.util.find_spec("mcp_common")  # a top-level spec: nothing is run
    if package is None or not package.submodule_search_locations:
        return importlib.import_module(name)  # let it fail (or work) as usual
    spec = importlib.util.spec_from_file_location(
        name, Path(next(iter(package.submodule_search_locations))) / "health.py"
    )
    if spec is None or spec.loader is None:
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: its dataclasses look themselves up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _mb(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 1_048_576:.1f} MiB"


@dataclass(eq=False)  # compared and hashed by identity, like the other adapters
class Health(HealthBase):
    """The checks, over the adapters they look at (given at construction). ``ready``, when
    given, is awaited before storage is checked: it opens storage if that has not happened
    yet (the container hands in its start-up, ``di.ready``)."""

    settings: SessionBuddySettings
    paths: SessionPaths
    storage: StorageBase
    embeddings: EmbeddingsBase
    http: HttpBase
    ready: Callable[[], Awaitable[None]] | None = None
    sync: SyncBase | None = None
    started: float = field(default_factory=time.time)
    name = "default"

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths,
        resolve: Callable[[type], Any],
        *,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> Health:
        return cls(
            settings,
            paths,
            resolve(StorageBase),
            resolve(EmbeddingsBase),
            resolve(HttpBase),
            ready=ready,
            sync=resolve(SyncBase),
        )

    async def check(self) -> dict[str, Any]:
        health = mcp_health()
        ComponentHealth, HealthStatus = health.ComponentHealth, health.HealthStatus
        HealthCheckResponse = health.HealthCheckResponse

        settings, paths = self.settings, self.paths
        components = [
            ComponentHealth(
                name="python",
                status=HealthStatus.HEALTHY
                if sys.version_info >= (3, 13)
                else HealthStatus.DEGRADED,
                message=f"Python {sys.version.split()[0]}, {_mb(rss_bytes())} resident",
                metadata={
                    "executable": sys.executable,
                    "rss_bytes": rss_bytes(),
                    "pid": os.getpid(),
                },
            ),
            await asyncio.to_thread(self._data_dir, paths, settings, ComponentHealth, HealthStatus),
            await self._storage(settings, ComponentHealth, HealthStatus),
            self._embeddings(ComponentHealth, HealthStatus),
            self._http(ComponentHealth, HealthStatus),
            self._sync(ComponentHealth, HealthStatus),
        ]
        response = HealthCheckResponse.create(
            components=components,
            version=__version__,
            start_time=self.started,
            metadata={"mode": settings.mode, "adapters": settings.adapters.model_dump()},
        )
        return response.to_dict()

    def _data_dir(
        self, paths: SessionPaths, settings: SessionBuddySettings, CH: Any, HS: Any
    ) -> Any:
        if settings.adapters.storage == "memory":
            return CH(
                name="data_dir",
                status=HS.HEALTHY,
                message="not used (in-memory storage)",
                metadata={"path": str(paths.data)},
            )
        try:
            paths.data.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=paths.data, prefix=".health-", delete=True) as fh:
                fh.write(b"ok")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            return CH(
                name="data_dir",
                status=HS.UNHEALTHY,
                message=f"{paths.data} is not writable: {exc}. Set SESSION_BUDDY_DATA_DIR to a writable folder.",
                metadata={"path": str(paths.data)},
            )
        return CH(
            name="data_dir",
            status=HS.HEALTHY,
            message="writable",
            metadata={"path": str(paths.data)},
        )

    async def _storage(self, settings: SessionBuddySettings, CH: Any, HS: Any) -> Any:
        storage = self.storage
        try:
            if self.ready is not None:
                await self.ready()
            latency = await storage.ping()
            stats = await storage.stats()
        except Exception as exc:
            return CH(
                name="storage",
                status=HS.UNHEALTHY,
                message=f"{storage.name}: {exc}",
                metadata={"backend": storage.name},
            )
        status = HS.HEALTHY if latency < STORAGE_SLOW_MS else HS.DEGRADED
        meta: dict[str, Any] = {
            "backend": storage.name,
            "items": stats.items,
            "by_kind": stats.by_kind,
            "embedded": stats.embedded,
            "vector_search": stats.vector_search,
            "persistent": storage.name != "memory",
            "size_bytes": stats.size_bytes,
        }
        message = f"{storage.name}: {stats.items} items"
        index = getattr(storage, "index", None)  # the in-process index (memory, DuckDB)
        if isinstance(index, SearchIndex):
            meta["index"] = index.memory()
            meta["index_source"] = getattr(storage, "index_source", None)
            meta["index_load_seconds"] = getattr(storage, "index_load_seconds", None)
            message += f", index {_mb(meta['index']['bytes'])} in memory"
        return CH(name="storage", status=status, message=message, latency_ms=latency, metadata=meta)

    def _embeddings(self, CH: Any, HS: Any) -> Any:
        emb = self.embeddings
        state = emb.state
        meta = {
            "adapter": emb.name,
            "state": state,
            "model": emb.model_id,
            "dimension": emb.dimension,
        }
        if state == "ready":
            return CH(
                name="embeddings",
                status=HS.HEALTHY,
                message=f"{emb.model_id} loaded",
                metadata=meta,
            )
        if state in ("lazy", "loading"):
            return CH(
                name="embeddings",
                status=HS.HEALTHY,
                message=f"{emb.model_id} {state} (loads on first use)",
                metadata=meta,
            )
        reason = emb.error or "embeddings are disabled (adapters.embeddings = none)"
        return CH(
            name="embeddings",
            status=HS.DEGRADED,
            message=f"semantic search degraded, keyword search only: {reason}",
            metadata=meta,
        )

    def _sync(self, CH: Any, HS: Any) -> Any:
        """The sync remote's circuit: closed is healthy; open or half-open is degraded (local
        memory works, pushes wait)."""
        sync = self.sync
        if sync is None or not sync.enabled:
            return CH(name="sync", status=HS.HEALTHY, message="off", metadata={"adapter": "none"})
        circuit = sync.circuit_state() if sync.circuit_state else {"state": "closed"}
        healthy = circuit["state"] == "closed"
        message = f"{sync.remote}: circuit {circuit['state']}"
        if not healthy and circuit.get("last_error"):
            message += f" ({circuit['last_error']})"
        return CH(
            name="sync",
            status=HS.HEALTHY if healthy else HS.DEGRADED,
            message=message,
            metadata={"adapter": sync.name, "circuit": circuit},
        )

    def _http(self, CH: Any, HS: Any) -> Any:
        http = self.http
        return CH(
            name="http",
            status=HS.HEALTHY,
            message="shared client open"
            if http.is_open
            else "shared client idle (opens on first use)",
            metadata={"adapter": http.name},
        )
