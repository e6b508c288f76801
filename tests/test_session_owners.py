"""Sessions have an owner: on a shared store a caller sees, reads and changes only their own.

A real DuckDB store (and PostgreSQL when the test server runs), the MCP server acting as
``mallory`` (``settings.user``) through an in-memory client; ``alice`` acts through the core
service inside ``acting_as``, the hook the HTTP service binds an authenticated token's
subject with (as in tests/test_teams.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from mcp.shared.exceptions import McpError

from session_buddy import di
from session_buddy.adapters.storage._base import ItemFilter, StorageBase
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.sessions.service import SessionService
from session_buddy.core.sessions.state import SessionState
from session_buddy.core.users import acting_as
from session_buddy.errors import NotFound
from session_buddy.settings import load_settings
from tests.pg_support import drop_schemas, pg_dsn, schema_for
from tests.test_storage import _params
from tests.test_teams import call, tool_error

BACKENDS = _params(["duckdb", "postgres"])
ALICE_SECRET = "Alice: the Falcon ledger migration goes live on March 3rd."


def settings_for(backend: str, tmp_path: Path, user: str = "mallory") -> Any:
    storage: dict[str, Any] = {}
    if backend == "postgres":
        storage = {"dsn": pg_dsn(), "pg_schema": schema_for(tmp_path), "pool_max_size": 4}
    return load_settings(
        data_dir=tmp_path / "data",
        adapters={"storage": backend, "embeddings": "none"},
        storage=storage,
        user=user,
    ).settings


@pytest.fixture
async def mallory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Client[Any]]:
    from session_buddy.server.app import create_server

    async with Client(create_server(settings_for(request.param, tmp_path))) as c:
        await di.ready()  # storage open: alice acts through the service, not a tool call
        yield c
    await di.shutdown()
    di.reset()
    await drop_schemas()


async def alice_session(name: str = "Alice's ledger plan") -> str:
    """A session alice creates through the service, with two messages of hers."""
    service = di.get(SessionService)
    with acting_as("alice"):
        state = await service.create_session(name, {"project": "payments"})
        await service.add_message(state.id, "user", ALICE_SECRET)
        await service.add_message(state.id, "assistant", "Noted: Falcon ledger on March 3rd.")
    return state.id


def same(message: str, session_id: str) -> str:
    return message.replace(session_id, "<ID>")


@pytest.mark.parametrize("mallory", BACKENDS, indirect=True)
async def test_another_users_session_answers_like_an_unknown_id(mallory: Client[Any]) -> None:
    theirs = await alice_session()
    own = await call(mallory, "create_session", name="Mallory's webhooks")
    listed = await call(mallory, "list_sessions")
    assert [s["id"] for s in listed["sessions"]] == [own["id"]]
    assert listed["next_cursor"] is None

    unknown = uuid.uuid4().hex
    for tool, args in [
        ("get_session", {}),
        ("get_messages", {}),
        ("export_session", {}),
        ("export_session", {"format": "markdown"}),
        ("update_session", {"name": "renamed by mallory"}),
        ("add_message", {"role": "user", "content": "mallory was here"}),
        ("checkpoint", {}),
        ("end", {}),
        ("delete_session", {}),
    ]:
        real = await tool_error(mallory, tool, session_id=theirs, **args)
        fake = await tool_error(mallory, tool, session_id=unknown, **args)
        assert same(real, theirs) == same(fake, unknown), tool
        assert "No session with id" in real and "Falcon" not in real, tool
    with pytest.raises(McpError) as real_read:
        await mallory.read_resource(f"session-buddy://sessions/{theirs}/handoff")
    with pytest.raises(McpError) as fake_read:
        await mallory.read_resource(f"session-buddy://sessions/{unknown}/handoff")
    assert same(str(real_read.value), theirs) == same(str(fake_read.value), unknown)

    # nothing she tried changed alice's session; alice still sees it, and only hers
    service = di.get(SessionService)
    with acting_as("alice"):
        got = await service.get_session(theirs)
        assert got.name == "Alice's ledger plan" and got.status == "active"
        assert got.message_count == 2 and got.owner == "alice"
        messages = await service.get_messages(theirs)
        assert messages.messages[0].content == ALICE_SECRET
        assert [s.id for s in (await service.list_sessions()).sessions] == [theirs]
        with pytest.raises(NotFound):
            await service.get_session(own["id"])


@pytest.mark.parametrize("mallory", BACKENDS, indirect=True)
async def test_the_dashboard_shows_only_its_users_sessions(mallory: Client[Any]) -> None:
    """The dashboard (it acts as the install's own user) lists and opens mallory's sessions,
    not alice's on the same store: hers is not found, like an unknown id."""
    from session_buddy.server.dashboard.views import session_page, sessions_page

    theirs = await alice_session()
    own = (await call(mallory, "create_session", name="Mallory's webhooks"))["id"]
    page = await sessions_page("", 1)
    assert [row["id"] for row in page["sessions"]] == [own] and page["has_more"] is False
    assert (await session_page(own))["session"]["id"] == own
    with pytest.raises(NotFound) as real:
        await session_page(theirs)
    with pytest.raises(NotFound) as fake:
        await session_page(uuid.uuid4().hex)
    assert same(str(real.value), theirs).startswith("no session with id")
    assert str(fake.value).startswith("no session with id")


@pytest.mark.parametrize("mallory", BACKENDS, indirect=True)
async def test_listing_pages_through_other_users_sessions(mallory: Client[Any]) -> None:
    """A page holds the caller's own sessions even when a teammate's newer ones outnumber
    them; the cursor goes on after the last one shown."""
    mine = [(await call(mallory, "create_session", name=f"mine {n}"))["id"] for n in range(3)]
    service = di.get(SessionService)
    with acting_as("alice"):
        for n in range(5):
            await service.create_session(f"alice {n}")
    first = await call(mallory, "list_sessions", limit=2)
    assert [s["id"] for s in first["sessions"]] == mine[::-1][:2]
    rest = await call(mallory, "list_sessions", limit=2, cursor=first["next_cursor"])
    assert [s["id"] for s in rest["sessions"]] == [mine[0]]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("mallory", BACKENDS, indirect=True)
async def test_a_sessions_messages_obey_the_access_rule(mallory: Client[Any]) -> None:
    """The messages a session lists, exports, counts and deletes are those the caller may
    see (owns): not a teammate's message stored under the caller's session id."""
    own = (await call(mallory, "create_session", name="Mallory's webhooks"))["id"]
    await call(mallory, "add_message", session_id=own, role="user", content="Mallory's question")
    memory = di.get(MemoryService)
    with acting_as("alice"):
        await memory.store(
            [ItemInput(content=ALICE_SECRET, kind="conversation", role="user", session_id=own)]
        )
    listed = await call(mallory, "get_messages", session_id=own)
    assert [m["content"] for m in listed["messages"]] == ["Mallory's question"]
    assert (await call(mallory, "get_session", session_id=own))["message_count"] == 1
    for fmt in ("json", "markdown"):
        exported = await call(mallory, "export_session", session_id=own, format=fmt)
        assert exported["messages"] == 1 and "Falcon" not in exported["content"], fmt
    deleted = await call(mallory, "delete_session", session_id=own)
    assert deleted["messages_deleted"] == 1
    left = await di.get(StorageBase).list_items(ItemFilter(session_id=own))
    assert [i.content for i in left] == [ALICE_SECRET]  # alice's stays hers


@pytest.mark.parametrize("mallory", BACKENDS, indirect=True)
async def test_start_neither_resumes_nor_adopts_another_users_session(
    mallory: Client[Any], tmp_path: Path
) -> None:
    """``start`` in a folder where alice has an active session (her current one for this
    client key, or a hook-opened one not yet adopted) opens mallory's own."""
    folder = tmp_path / "payments"
    folder.mkdir()
    service = di.get(SessionService)
    with acting_as("alice"):
        hers = (await service.start(str(folder))).session
    hook = SessionState.new(
        project=hers.project,
        project_path=hers.project_path,
        working_directory=str(folder),
        origin="hook",
        claimed=False,
        owner="alice",
    )
    await service.store.add(hook)
    brief = await call(mallory, "start", working_directory=str(folder), detail=True)
    assert brief["how"] == "created"
    assert brief["session"]["id"] not in (hers.id, hook.id)
    status = await call(mallory, "status")
    assert status["session"]["id"] == brief["session"]["id"]
    assert (await service.store.get(hook.id)).claimed is False


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_owner_is_stored_and_old_sessions_are_the_installs(
    backend: str, tmp_path: Path
) -> None:
    """The owner survives the store (read back after a restart); a session stored before
    sessions had an owner belongs to the install's own user (mallory here), as an item
    without an author does."""
    from session_buddy.server.app import create_server

    try:
        async with Client(create_server(settings_for(backend, tmp_path))) as mallory:
            await di.ready()
            theirs = await alice_session()
            storage = di.get(StorageBase)
            old = SessionState.new(name="before owners", project="payments").to_record()
            old.data.pop("owner")
            await storage.put_record(old)
            stored = await storage.get_record("sessions", old.id)
            assert stored is not None and "owner" not in stored.data
            listed = await call(mallory, "list_sessions")
            assert [s["id"] for s in listed["sessions"]] == [old.id]
            with acting_as("alice"), pytest.raises(NotFound):
                await di.get(SessionService).get_session(old.id)
        await di.shutdown()
        di.reset()

        async with Client(create_server(settings_for(backend, tmp_path))) as again:
            await di.ready()
            assert (await di.get(SessionService).store.get(theirs)).owner == "alice"
            listed = await call(again, "list_sessions")
            assert [s["id"] for s in listed["sessions"]] == [old.id]
            error = await tool_error(again, "get_messages", session_id=theirs)
            assert "No session with id" in error
            with acting_as("alice"):
                got = await di.get(SessionService).get_session(theirs)
                assert got.message_count == 2
    finally:
        await di.shutdown()
        di.reset()
        await drop_schemas()
