"""Settings layers: defaults < package yaml < user yaml < --config < env < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from session_buddy.errors import ConfigurationError
from session_buddy.settings import explain, load_settings, package_settings_dir


def test_package_defaults_do_not_depend_on_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_settings()
    assert package_settings_dir() is not None
    assert loaded.settings.adapters.storage == "duckdb"
    assert loaded.sources["adapters.storage"].startswith("package:")
    assert any(f.name == "session-buddy.yaml" for f in loaded.files)


def test_env_overrides_files_and_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__STORAGE", "memory")
    monkeypatch.setenv("SESSION_BUDDY_SEARCH__RRF_K", "42")
    loaded = load_settings()
    assert loaded.settings.adapters.storage == "memory"
    assert loaded.settings.search.rrf_k == 42
    assert loaded.sources["adapters.storage"] == "env"


def test_user_config_dir_and_explicit_config(tmp_path: Path, isolated_env: Path) -> None:
    user_dir = isolated_env / ".config" / "session-buddy"
    user_dir.mkdir(parents=True)
    (user_dir / "session-buddy.yaml").write_text("search:\n  candidates: 77\n")
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("search:\n  rrf_k: 13\n")
    before = explicit.read_bytes()
    loaded = load_settings(explicit)
    assert loaded.settings.search.candidates == 77
    assert loaded.settings.search.rrf_k == 13
    assert loaded.sources["search.rrf_k"] == f"config:{explicit}"
    assert explicit.read_bytes() == before  # never rewritten


def test_lite_mode_selects_memory_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_BUDDY_MODE", "lite")
    assert load_settings().settings.adapters.storage == "memory"


def test_invalid_values_name_the_setting_and_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__STORAGE", "oracle")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "adapters.storage" in str(info.value)
    assert "env" in str(info.value)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage:\n  pth: /tmp/x\n")
    with pytest.raises(ConfigurationError, match=r"storage\.pth"):
        load_settings(bad)


def test_missing_config_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_the_cli_prints_a_settings_error_with_brackets_as_it_is(tmp_path: Path) -> None:
    """The CLI's error line is printed as text, not as rich markup: a config path with a
    bracketed part (``[/x]``) died with a MarkupError traceback, and ``[b]`` vanished."""
    import subprocess

    from tests.conftest import session_buddy_cmd

    def error_of(*args: str, code: int) -> str:
        """The command's stderr; it exits with ``code``, no MarkupError traceback."""
        done = subprocess.run(
            [*session_buddy_cmd(), *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == code, done.stderr
        assert "MarkupError" not in done.stderr
        return done.stderr

    for folder in ("with-[/x]", "with-[b]"):
        missing = tmp_path / folder / "nope.yaml"
        missing.parent.mkdir(parents=True)
        said = error_of("health", "--config", str(missing), code=2)
        assert str(missing) in said and "does not exist" in said
        # and every other command's error line (one printer): here `key generate`'s
        taken = tmp_path / folder / "storage.key"
        taken.write_text("already here", encoding="utf-8")
        said = error_of("key", "generate", "--file", str(taken), code=1)
        assert str(taken) in said and "never overwritten" in said


def test_explain_masks_secrets(tmp_path: Path) -> None:
    loaded = load_settings(embeddings={"url": "http://user:hunter2@127.0.0.1:1"})
    rows = {r["key"]: r for r in explain(loaded)}
    assert rows["embeddings.url"]["source"] == "override"
    assert rows["adapters.embeddings"]["source"].startswith("package:")
