"""session-buddy: local memory and session manager for AI coding agents.

Importing this package has no side effects: nothing is logged, no file is created, the
container is untouched, and ACB is not imported until :func:`configure` is called.

Library use from another ACB application::

    import session_buddy
    from session_buddy.settings import load_settings

    session_buddy.configure(load_settings(mode="lite").settings)
    await session_buddy.startup()
    memory = session_buddy.get(session_buddy.MemoryService)
    await memory.store([session_buddy.ItemInput(content="...", kind="reflection")])
    ...
    await session_buddy.shutdown()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from session_buddy.core.memory import ItemInput, MemoryService, SearchResponse
    from session_buddy.di import configure, get, reset, shutdown, startup
    from session_buddy.errors import (
        ConfigurationError,
        NotFound,
        SessionBuddyError,
        StorageError,
        ValidationError,
    )
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import SessionBuddySettings, load_settings

_LAZY = {
    "configure": "session_buddy.di",
    "get": "session_buddy.di",
    "startup": "session_buddy.di",
    "shutdown": "session_buddy.di",
    "reset": "session_buddy.di",
    "SessionPaths": "session_buddy.paths",
    "MemoryService": "session_buddy.core.memory",
    "ItemInput": "session_buddy.core.memory",
    "SearchResponse": "session_buddy.core.memory",
    "SessionBuddySettings": "session_buddy.settings",
    "load_settings": "session_buddy.settings",
    "SessionBuddyError": "session_buddy.errors",
    "ValidationError": "session_buddy.errors",
    "ConfigurationError": "session_buddy.errors",
    "StorageError": "session_buddy.errors",
    "NotFound": "session_buddy.errors",
}

__all__ = [
    "ConfigurationError",
    "ItemInput",
    "MemoryService",
    "NotFound",
    "SearchResponse",
    "SessionBuddyError",
    "SessionBuddySettings",
    "SessionPaths",
    "StorageError",
    "ValidationError",
    "__version__",
    "configure",
    "get",
    "load_settings",
    "reset",
    "shutdown",
    "startup",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'session_buddy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
