"""Dependency injection: every adapter and core service registered by type in ACB's container.

``configure(settings)`` builds each adapter chosen in the settings and registers the instance
under its protocol type (``StorageBase``, ``EmbeddingsBase``, ...) and its own class, through
ACB's ``depends.set`` (the bevy container). ``get(T)`` is a direct dictionary lookup in that
container: no thread, no event loop, safe inside a running loop and from
``asyncio.to_thread``.

``configure`` does no I/O; ``await startup()`` opens storage and starts the background model
load; the ShutdownManager closes everything.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from session_buddy.errors import ConfigurationError
from session_buddy.paths import SessionPaths

if TYPE_CHECKING:
    from bevy import Container

    from session_buddy.settings import SessionBuddySettings

__all__ = [
    "SessionPaths",
    "configure",
    "get",
    "is_configured",
    "ready",
    "reset",
    "shutdown",
    "startup",
]

T = TypeVar("T")

_lock = threading.Lock()
_container: Container | None = None
_registered: list[type] = []
_started = False
_startup_task: asyncio.Task[None] | None = None


def configure(
    settings: SessionBuddySettings | None = None, *, container: Container | None = None
) -> Container:
    """Register every adapter and core service by type. Idempotent: a second call with the
    process already configured returns the same container (call :func:`reset` first to
    reconfigure). ``container`` lets another ACB application register into its own."""
    global _container, _started
    from session_buddy._acb import depends, get_container

    with _lock:
        if _container is not None:
            return _container
        if settings is None:
            from session_buddy.settings import load_settings

            settings = load_settings().settings
        target = container if container is not None else get_container()

        from session_buddy.adapters import adapter_class, base_class
        from session_buddy.core.events import EventBus
        from session_buddy.settings import SessionBuddySettings

        paths = SessionPaths.from_settings(settings.data_dir)
        registered: list[type] = []

        def put(key: type, instance: Any) -> None:
            if container is not None:
                target.add(key, instance)
            else:
                depends.set(key, instance)
            registered.append(key)

        def resolve(key: type[T]) -> T:
            try:
                found: T = target.instances[key]
                return found
            except KeyError:
                raise ConfigurationError(
                    f"{key.__name__} is needed before it was registered"
                ) from None

        put(SessionBuddySettings, settings)
        put(SessionPaths, paths)
        put(EventBus, EventBus())  # before the services that emit or listen
        for category in ("shutdown", "http", "embeddings", "storage", "sync", "health"):
            choice = getattr(settings.adapters, category)
            cls = adapter_class(category, choice)
            # health checks storage once it is open: it is handed the start-up to await
            extra: dict[str, Any] = {"ready": ready} if category == "health" else {}
            instance = (
                cls.from_settings(settings, paths, resolve, **extra)
                if hasattr(cls, "from_settings")
                else cls()
            )
            put(base_class(category), instance)
            if cls is not base_class(category):
                put(cls, instance)
        for service in _services():  # in order: each may look up the ones before it
            put(service, service.from_container(resolve))
        _tracing(settings, resolve)
        _container = target
        _registered[:] = registered
        _started = False
        return target


def _services() -> tuple[Any, ...]:
    """The core services, each built by its ``from_container`` (imported when configured)."""
    from session_buddy.core.analytics import AnalyticsService
    from session_buddy.core.capture import CaptureService
    from session_buddy.core.graph import GraphService
    from session_buddy.core.memory import MemoryService
    from session_buddy.core.permissions import PermissionService
    from session_buddy.core.projects import ProjectService
    from session_buddy.core.recall import RecallService
    from session_buddy.core.sessions import SessionService
    from session_buddy.core.sync import SyncService
    from session_buddy.core.teams import TeamService
    from session_buddy.core.testresults import TestResultService
    from session_buddy.core.webhooks import WebhookService

    return (
        WebhookService,
        MemoryService,
        GraphService,
        TeamService,
        ProjectService,
        CaptureService,
        SessionService,
        SyncService,
        RecallService,
        PermissionService,
        TestResultService,
        AnalyticsService,
    )


def _tracing(settings: SessionBuddySettings, resolve: Any) -> None:
    """OpenTelemetry traces when ``telemetry.traces`` is on (the SDK is imported only then),
    flushed by the ShutdownManager."""
    if not settings.telemetry.traces:
        return
    from session_buddy.adapters.shutdown._base import ShutdownBase
    from session_buddy.core.telemetry import configure_tracing, flush_traces

    configure_tracing(settings.telemetry)
    resolve(ShutdownBase).register("traces", flush_traces, priority=10, timeout_s=6.0)


def is_configured() -> bool:
    return _container is not None


def get[T](key: type[T]) -> T:
    """The instance registered for ``key``: a dict lookup, no event loop involved."""
    container = _container
    if container is None:
        raise ConfigurationError(
            f"session-buddy is not configured: call session_buddy.di.configure() before asking for {key.__name__}"
        )
    try:
        found: T = container.instances[key]
        return found
    except KeyError:
        raise ConfigurationError(
            f"No {key.__name__} is registered; check adapters.* in the settings "
            "(`session-buddy config` shows them)"
        ) from None


def start_background() -> asyncio.Task[None]:
    """Start :func:`startup` as a task (the server does this so the MCP handshake is not
    delayed); :func:`ready` awaits it."""
    global _startup_task
    failed = (
        _startup_task is not None
        and _startup_task.done()
        and not _startup_task.cancelled()
        and _startup_task.exception() is not None
    )
    if (
        failed
        or _startup_task is None
        or _startup_task.get_loop() is not asyncio.get_running_loop()
    ):
        _startup_task = asyncio.get_running_loop().create_task(
            _startup(), name="session-buddy-startup"
        )
    return _startup_task


async def ready() -> None:
    """Wait until startup has finished (starting it if needed); re-raises its error."""
    if _started:
        return
    await asyncio.shield(start_background())


async def startup() -> None:
    """Open what needs I/O (storage), start background loads, register cleanup. Idempotent."""
    await ready()


async def _startup() -> None:
    global _started
    if _started:
        return
    from session_buddy.adapters.embeddings._base import EmbeddingsBase
    from session_buddy.adapters.http._base import HttpBase
    from session_buddy.adapters.shutdown._base import ShutdownBase
    from session_buddy.adapters.shutdown.manager import (
        PRIORITY_EMBEDDINGS,
        PRIORITY_HTTP,
        PRIORITY_STORAGE,
    )
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.settings import SessionBuddySettings

    settings = get(SessionBuddySettings)
    storage = get(StorageBase)
    embeddings = get(EmbeddingsBase)
    manager = get(ShutdownBase)
    manager.register("storage", storage.close, PRIORITY_STORAGE, timeout_s=30.0, critical=False)
    manager.register("embeddings", embeddings.close, PRIORITY_EMBEDDINGS, timeout_s=5.0)
    manager.register("http", get(HttpBase).close, PRIORITY_HTTP, timeout_s=5.0)
    await storage.initialize()
    if settings.embeddings.preload:
        embeddings.start_background_load()
    _started = True


async def start_sync() -> None:
    """Start the background sync loop once storage is open (the server's lifespan does
    this; the CLI does not, so a one-off command never syncs in the background). The
    ShutdownManager stops it before storage closes."""
    from session_buddy.adapters.shutdown._base import ShutdownBase
    from session_buddy.adapters.shutdown.manager import PRIORITY_BACKGROUND
    from session_buddy.core.sync import SyncService

    await ready()
    service = get(SyncService)
    if service.start() is not None:
        get(ShutdownBase).register("sync", service.stop, PRIORITY_BACKGROUND + 1, timeout_s=10.0)


async def shutdown() -> Any:
    """Run the ShutdownManager (idempotent); returns its stats."""
    from session_buddy.adapters.shutdown._base import ShutdownBase

    if _container is None:
        return None
    return await get(ShutdownBase).shutdown()


def reset() -> None:
    """Forget the configuration (tests, or an app that reconfigures). Does not close anything:
    run :func:`shutdown` first."""
    global _container, _started, _startup_task
    with _lock:
        _startup_task = None
        if _container is not None:
            for key in _registered:
                _container.instances.pop(key, None)
        _registered.clear()
        _container = None
        _started = False
