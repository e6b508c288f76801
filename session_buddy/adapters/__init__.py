"""Adapters: one folder per capability, ``_base.py`` holds the protocol, one module per backend.

Which module runs is a setting (``adapters.<category>``); :data:`ADAPTERS` maps each
setting value to its class. Modules are imported only when selected.
"""

from __future__ import annotations

import importlib
from typing import Any

#: category -> setting value -> "module:Class"
ADAPTERS: dict[str, dict[str, str]] = {
    "storage": {
        "memory": "session_buddy.adapters.storage.memory:Storage",
        "duckdb": "session_buddy.adapters.storage.duckdb:Storage",
        "postgres": "session_buddy.adapters.storage.postgres:Storage",
    },
    "embeddings": {
        "onnx": "session_buddy.adapters.embeddings.onnx:Embeddings",
        "http": "session_buddy.adapters.embeddings.http:Embeddings",
        "none": "session_buddy.adapters.embeddings.none:Embeddings",
    },
    "http": {"httpx": "session_buddy.adapters.http.httpx:Http"},
    "health": {"default": "session_buddy.adapters.health.checks:Health"},
    "shutdown": {"default": "session_buddy.adapters.shutdown.manager:ShutdownManager"},
    "sync": {
        "none": "session_buddy.adapters.sync.none:Sync",
        "akosha": "session_buddy.adapters.sync.akosha:Sync",
    },
}

#: category -> "module:BaseClass" (the type each adapter is registered under)
BASES: dict[str, str] = {
    "storage": "session_buddy.adapters.storage._base:StorageBase",
    "embeddings": "session_buddy.adapters.embeddings._base:EmbeddingsBase",
    "http": "session_buddy.adapters.http._base:HttpBase",
    "health": "session_buddy.adapters.health._base:HealthBase",
    "shutdown": "session_buddy.adapters.shutdown._base:ShutdownBase",
    "sync": "session_buddy.adapters.sync._base:SyncBase",
}


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def adapter_class(category: str, name: str) -> type:
    from session_buddy.errors import ConfigurationError

    choices = ADAPTERS.get(category)
    if choices is None:
        raise ConfigurationError(
            f"Unknown adapter category {category!r}; known: {sorted(ADAPTERS)}"
        )
    ref = choices.get(name)
    if ref is None:
        raise ConfigurationError(
            f"Unknown {category} adapter {name!r}; choose one of {sorted(choices)} "
            f"(setting adapters.{category} or SESSION_BUDDY_ADAPTERS__{category.upper()})"
        )
    cls: type = _load(ref)
    return cls


def base_class(category: str) -> type:
    cls: type = _load(BASES[category])
    return cls
