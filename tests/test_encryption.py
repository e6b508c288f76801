"""Encryption at rest (storage.encryption: aes-gcm) through a real MCP client, on a real
DuckDB file and a real PostgreSQL: what lands on disk holds no plaintext, search works, a
restart with the key finds everything, and a missing, wrong or exposed key is refused
with a clear error."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from session_buddy.errors import ConfigurationError
from session_buddy.settings import load_settings
from tests.pg_support import drop_schemas, needs_pg, pg_dsn, schema_for

#: words that exist nowhere else: found in a raw file, they are a leak
SECRET = "Zorbulation of the quantumfrobnicator happens before the glimmerwick deploy."
NAME = "session hushwhisperqueen"
TITLE_WORD = "marmaladewyrm"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def settings_for(tmp_path: Path, **storage: Any) -> Any:
    return load_settings(
        data_dir=tmp_path / "data",
        adapters={"storage": storage.pop("backend", "duckdb")},
        storage={"encryption": "aes-gcm", **storage},
    ).settings


def server(settings: Any) -> Any:
    """A new server over ``settings`` (the container is per process: a new one each time,
    as a restarted service would have)."""
    from session_buddy import di
    from session_buddy.server.app import create_server

    di.reset()
    return create_server(settings)


async def call(client: Client[Any], tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def store_and_search(settings: Any) -> str:
    """Store a reflection (with a tagged title in its text), a conversation and a named
    session through an MCP client; search finds the reflection by keyword and by meaning."""
    async with Client(server(settings)) as c:
        stored = await call(c, "store_reflection", content=SECRET, tags=["deploy"])
        await call(
            c,
            "store_conversation",
            content=f"user asked about the {TITLE_WORD} cache",
            role="user",
        )
        session = await call(c, "create_session", name=NAME, metadata={"note": TITLE_WORD})
        hits = await call(c, "search", query="quantumfrobnicator", mode="keyword", fields=["id"])
        assert [h["id"] for h in hits["hits"]] == [stored["id"]]
        hits = await call(
            c, "search", query="when does the deploy happen", mode="semantic", fields=["id"]
        )
        assert stored["id"] in [h["id"] for h in hits["hits"]]
        got = await call(c, "get_session", session_id=session["id"])
        assert got["name"] == NAME
    return str(stored["id"])


async def finds_again(settings: Any, item_id: str) -> None:
    async with Client(server(settings)) as c:
        hits = await call(c, "search", query="glimmerwick", mode="keyword", fields=["id"])
        assert [h["id"] for h in hits["hits"]] == [item_id]
        hits = await call(c, "search", query=TITLE_WORD, mode="keyword")
        assert len(hits["hits"]) == 1
        sessions = await call(c, "list_sessions")
        assert NAME in str(sessions)


async def refused(settings: Any, match: str) -> str:
    """The error a service over ``settings`` gives from its start-up (the key check, a key
    that cannot be used), as the answer of every tool and in health."""
    async with Client(server(settings)) as c:
        with pytest.raises(ToolError) as caught:
            await c.call_tool("search", {"query": "anything"})
        health = await call(c, "health")
    message = str(caught.value)
    assert match in message and message.endswith("[configuration_error]"), message
    storage = next(x for x in health["components"] if x["name"] == "storage")
    assert storage["status"] == "unhealthy" and match in storage["message"], storage
    return message


def raw_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


async def test_duckdb_encrypted_at_rest_through_mcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    monkeypatch.setenv("SESSION_BUDDY_KEY", key)
    settings = settings_for(tmp_path)
    item_id = await store_and_search(settings)
    db = tmp_path / "data" / "memory.duckdb"
    data = raw_bytes(db)
    assert len(data) > 10_000
    for word in (b"quantumfrobnicator", b"glimmerwick", b"hushwhisperqueen", TITLE_WORD.encode()):
        assert word not in data, word
    # a plaintext store of the same writes shows the words: the check above can fail
    plain = load_settings(data_dir=tmp_path / "plain", adapters={"storage": "duckdb"}).settings
    await store_and_search(plain)
    assert b"quantumfrobnicator" in raw_bytes(tmp_path / "plain" / "memory.duckdb")

    await finds_again(settings, item_id)
    # wrong key, no key, and the right key again
    monkeypatch.setenv("SESSION_BUDDY_KEY", new_key())
    message = await refused(settings, "is encrypted with another key")
    assert "SESSION_BUDDY_KEY" in message and "storage.key_file" in message
    monkeypatch.delenv("SESSION_BUDDY_KEY")
    off = load_settings(data_dir=tmp_path / "data", adapters={"storage": "duckdb"}).settings
    await refused(off, "is encrypted (storage.encryption: aes-gcm) but no key is configured")
    await refused(settings, "storage.encryption is aes-gcm but no key is set")
    monkeypatch.setenv("SESSION_BUDDY_KEY", key)
    await finds_again(settings, item_id)


async def test_key_file_modes_and_plaintext_store_refused_then_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from session_buddy.cli.app import app
    from session_buddy.core.migrate import run_migration

    key_file = tmp_path / "keys" / "storage.key"
    result = CliRunner().invoke(app, ["key", "generate", "--file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(app, ["key", "generate", "--file", str(key_file)])
    assert again.exit_code == 1 and "never overwritten" in again.output

    # a plaintext store, then encryption turned on over it: refused, naming the way out
    old = tmp_path / "data" / "memory.duckdb"
    plain = load_settings(data_dir=tmp_path / "data", adapters={"storage": "duckdb"}).settings
    item_id = await store_and_search(plain)
    settings = settings_for(tmp_path, key_file=str(key_file))
    await refused(settings, "holds unencrypted memories")

    key_file.chmod(0o644)
    message = await refused(settings, "is readable by other users (mode 0o644)")
    assert f"chmod 600 {key_file}" in message
    key_file.chmod(0o600)

    # migrate into a new encrypted file: verified, searchable, no plaintext
    new = tmp_path / "enc" / "memory.duckdb"
    report = await run_migration(f"duckdb:{old}", f"duckdb:{new}", settings)
    assert report.verified and report.items == 2 and report.records >= 1
    assert b"quantumfrobnicator" not in raw_bytes(new)
    moved = settings_for(tmp_path, key_file=str(key_file), path=str(new))
    await finds_again(moved, item_id)

    # changing keys: the source read with $SESSION_BUDDY_SOURCE_KEY, the copy with the new key
    monkeypatch.setenv("SESSION_BUDDY_SOURCE_KEY", key_file.read_text())
    monkeypatch.setenv("SESSION_BUDDY_KEY", new_key())
    newer = tmp_path / "rekeyed" / "memory.duckdb"
    report = await run_migration(f"duckdb:{new}", f"duckdb:{newer}", settings)
    assert report.verified and report.items == 2
    monkeypatch.delenv("SESSION_BUDDY_SOURCE_KEY")
    await finds_again(settings_for(tmp_path, path=str(newer)), item_id)
    monkeypatch.delenv("SESSION_BUDDY_KEY")
    old_key = settings_for(tmp_path, key_file=str(key_file), path=str(newer))
    await refused(old_key, "is encrypted with another key")


@needs_pg
async def test_postgres_encrypted_at_rest_through_mcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = schema_for(tmp_path, "enc")
    try:
        monkeypatch.setenv("SESSION_BUDDY_KEY", new_key())
        settings = settings_for(tmp_path, backend="postgres", dsn=pg_dsn(), pg_schema=schema)
        item_id = await store_and_search(settings)
        con = await asyncpg.connect(pg_dsn())
        try:
            rows = await con.fetch(
                f'SELECT i::text FROM "{schema}".items i UNION ALL '
                f'SELECT r::text FROM "{schema}".records r UNION ALL '
                f'SELECT p.lexeme FROM "{schema}".postings p'
            )
        finally:
            await con.close()
        dump = "\n".join(r[0] for r in rows)
        assert "sbx1:" in dump
        for word in ("quantumfrobnicator", "glimmerwick", "hushwhisperqueen", TITLE_WORD):
            assert word not in dump, word
        await finds_again(settings, item_id)
        monkeypatch.setenv("SESSION_BUDDY_KEY", new_key())
        await refused(settings, "is encrypted with another key")
    finally:
        await drop_schemas()


def test_keys_that_cannot_work_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from session_buddy.adapters.storage._cipher import cipher_from_settings

    monkeypatch.setenv("SESSION_BUDDY_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(ConfigurationError, match=r"\$SESSION_BUDDY_KEY does not hold a base64"):
        cipher_from_settings(settings_for(tmp_path))
    monkeypatch.delenv("SESSION_BUDDY_KEY")
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigurationError, match=r"storage.key_file .* cannot be read"):
        cipher_from_settings(settings_for(tmp_path, key_file=str(missing)))
    # a key is never a settings value
    with pytest.raises(ConfigurationError):
        load_settings(storage={"key": new_key()})


async def test_a_value_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    """The row id is the associated data: a sealed content copied into another row (or a
    row altered on disk) is refused when read, not shown as that row's content."""
    import duckdb

    from session_buddy.adapters.storage._base import NewItem
    from session_buddy.adapters.storage._cipher import Cipher, DecryptionError
    from session_buddy.adapters.storage.duckdb import Storage

    key = Cipher(os.urandom(32))
    path = tmp_path / "m.duckdb"
    store = Storage(path, dimension=8, key=key)
    await store.initialize()
    a, b = await store.add_items(
        [
            NewItem(kind="reflection", content="alpha note"),
            NewItem(kind="reflection", content="beta"),
        ]
    )
    assert [x.content for x in await store.get_items([a.id, b.id])] == ["alpha note", "beta"]
    await store.close()
    con = duckdb.connect(str(path))
    con.execute(
        "UPDATE reflections SET content = (SELECT content FROM reflections WHERE id = ?) "
        "WHERE id = ?",
        [a.id, b.id],
    )
    con.close()
    with pytest.raises(DecryptionError, match=f"{b.id}:content"):
        await Storage(path, dimension=8, key=key).initialize()


UNENCRYPTED_SERVICE = """
import asyncio, sys
from fastmcp import Client
from session_buddy.server.app import create_server
from session_buddy.settings import load_settings

async def main():
    settings = load_settings(data_dir=sys.argv[1], adapters={"storage": "duckdb"}).settings
    async with Client(create_server(settings)) as c:
        await c.call_tool("health", {})
        await c.call_tool("store_reflection", {"content": "the deploy runs at noon"})
        await c.call_tool("search", {"query": "deploy", "mode": "keyword"})
    print(sorted(m for m in sys.modules if m.split(".")[0] == "cryptography"))

asyncio.run(main())
"""


def test_a_store_without_encryption_does_not_import_cryptography(tmp_path: Path) -> None:
    """cryptography (~7 MB resident) is imported by the first key only: a service on a
    plain store runs without it (the encrypted tests above load it when they need it)."""
    from tests.mcp_peers import python_last_line

    assert python_last_line(tmp_path, UNENCRYPTED_SERVICE) == "[]"
