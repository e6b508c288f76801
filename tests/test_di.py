"""The container: registration by type, direct lookups, clear errors, library use."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from session_buddy import di
from session_buddy.errors import ConfigurationError


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    tmp_path = tmp_path / "clean"
    tmp_path.mkdir()
    code = (
        "import sys, os, session_buddy, session_buddy.settings, session_buddy.errors;"
        "assert 'acb' not in sys.modules, 'acb imported';"
        "assert 'fastmcp' not in sys.modules, 'fastmcp imported';"
        "from bevy.context_vars import global_container;"
        "print('clean')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "clean\n"
    assert result.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no files created


def test_get_before_configure_names_the_type() -> None:
    from session_buddy.adapters.storage._base import StorageBase

    with pytest.raises(ConfigurationError, match="StorageBase"):
        di.get(StorageBase)


def test_adapters_registered_by_type_and_looked_up_directly(lite_settings) -> None:  # type: ignore[no-untyped-def]
    from bevy import get_container

    from session_buddy.adapters.embeddings._base import EmbeddingsBase
    from session_buddy.adapters.health._base import HealthBase
    from session_buddy.adapters.http._base import HttpBase
    from session_buddy.adapters.shutdown._base import ShutdownBase
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.core.memory import MemoryService

    container = di.configure(lite_settings)
    assert container is get_container()
    for key in (StorageBase, EmbeddingsBase, HttpBase, HealthBase, ShutdownBase, MemoryService):
        assert container.instances[key] is di.get(key)
    assert di.get(StorageBase).name == "memory"
    assert di.get(EmbeddingsBase).name == "onnx"
    assert di.get(EmbeddingsBase).state == "lazy"  # nothing heavy loaded by configure
    assert di.configure(lite_settings) is container  # idempotent


async def test_lookup_is_safe_in_a_running_loop_and_in_threads(lite_settings) -> None:  # type: ignore[no-untyped-def]
    from session_buddy.adapters.storage._base import StorageBase

    di.configure(lite_settings)
    inside = di.get(StorageBase)
    in_thread = await asyncio.to_thread(di.get, StorageBase)
    assert inside is in_thread


def test_swap_storage_by_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.settings import load_settings

    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__STORAGE", "memory")
    di.configure(load_settings().settings)
    assert di.get(StorageBase).name == "memory"
    di.reset()
    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__STORAGE", "duckdb")
    di.configure(load_settings().settings)
    assert di.get(StorageBase).name == "duckdb"


def test_swap_storage_by_settings_file(tmp_path: Path) -> None:
    from session_buddy.adapters.storage._base import StorageBase
    from session_buddy.settings import load_settings

    config = tmp_path / "swap.yaml"
    config.write_text("adapters:\n  storage: memory\n")
    di.configure(load_settings(config).settings)
    assert di.get(StorageBase).name == "memory"
    di.reset()
    config.write_text("adapters:\n  storage: duckdb\n")
    di.configure(load_settings(config).settings)
    assert di.get(StorageBase).name == "duckdb"


async def test_library_use_from_a_tiny_acb_app(tmp_path: Path) -> None:
    from tests.acb_app.app import run

    result = await run(tmp_path / "lib-data")
    assert result["greeting"] == "hello from the host app"
    assert result["found_ids"] and result["found_ids"][0] == result["stored_id"]
    assert (tmp_path / "lib-data" / "memory.duckdb").exists()
