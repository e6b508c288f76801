"""The knowledge graph through a real MCP client on DuckDB and PostgreSQL: the reference
memory server's semantics point by point, automatic extraction from stored items, search
expansion, neighbourhoods and paths, access rules, and migrate copying the graph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from session_buddy import di
from session_buddy.core.graph import GraphService
from session_buddy.core.graph_extract import extract
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.users import acting_as
from session_buddy.errors import NotFound
from session_buddy.settings import load_settings
from tests.pg_support import drop_schemas, pg_dsn, schema_for
from tests.test_storage import _params
from tests.test_teams import call
from tests.test_teams import tool_error as error

BACKENDS = _params(["duckdb", "postgres"])


def settings_for(backend: str, tmp_path: Path, *, vectors: bool = True, **extra: Any) -> Any:
    storage: dict[str, Any] = {}
    adapters = {"storage": backend, **({} if vectors else {"embeddings": "none"})}
    if backend == "postgres":
        storage = {"dsn": pg_dsn(), "pg_schema": schema_for(tmp_path), "pool_max_size": 4}
    return load_settings(
        data_dir=tmp_path / "data", adapters=adapters, storage=storage, **extra
    ).settings


@pytest.fixture
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Client[Any]]:
    from session_buddy.server.app import create_server

    async with Client(create_server(settings_for(request.param, tmp_path))) as c:
        yield c
    await drop_schemas()


def names(answer: dict[str, Any]) -> list[str]:
    return [e["name"] for e in answer["entities"]]


@pytest.mark.parametrize("client", BACKENDS, indirect=True)
async def test_reference_semantics_point_by_point(client: Client[Any]) -> None:
    first = [
        {"name": "verify_token", "entity_type": "function", "observations": ["checks the HMAC"]},
        {"name": "auth/jwt.py", "entityType": "file"},  # the reference's spelling works too
    ]
    made = await call(client, "create_entities", entities=first, project="p")
    assert [e["name"] for e in made["created"]] == ["verify_token", "auth/jwt.py"]
    # create is idempotent on names: an existing entity is left unchanged
    again = [{"name": "verify_token", "entity_type": "class", "observations": ["other"]}]
    assert (await call(client, "create_entities", entities=again, project="p"))["created"] == []
    (vt,) = (await call(client, "open_nodes", names=["verify_token"]))["entities"]
    assert vt == {
        "name": "verify_token",
        "entity_type": "function",
        "observations": ["checks the HMAC"],
        "project": "p",
    }

    rel = {"from": "verify_token", "to": "auth/jwt.py", "relation_type": "defined_in"}
    assert (await call(client, "create_relations", relations=[rel], project="p"))["created"] == [
        rel
    ]
    assert (await call(client, "create_relations", relations=[rel], project="p"))["created"] == []
    opened = await call(client, "open_nodes", names=["verify_token", "auth/jwt.py"])
    assert opened["relations"] == [rel]  # stored as given: active voice, this direction
    missing = {"from": "verify_token", "to": "nowhere.py", "relation_type": "uses"}
    assert "nowhere.py" in await error(client, "create_relations", relations=[missing])

    obs = [{"entity_name": "verify_token", "contents": ["checks the HMAC", "rejects exp"]}]
    added = await call(client, "add_observations", observations=obs, project="p")
    assert added["added"] == [
        {"entity_name": "verify_token", "added_observations": ["rejects exp"]}
    ]
    lost = [{"entity_name": "ghost", "contents": ["x"]}]
    assert "no entity named 'ghost'" in await error(client, "add_observations", observations=lost)

    # deleting what is missing is a no-op
    assert (await call(client, "delete_observations", deletions=lost))["deleted"] == 0
    assert (await call(client, "delete_relations", relations=[missing]))["deleted"] == 0
    assert (await call(client, "delete_entities", entity_names=["ghost"]))["deleted"] == 0
    gone = [{"entity_name": "verify_token", "contents": ["rejects exp"]}]
    assert (await call(client, "delete_observations", deletions=gone, project="p"))["deleted"] == 1

    # read_graph is paged, never the whole graph at once
    extra = [{"name": f"n{i}", "entity_type": "thing"} for i in range(5)]
    await call(client, "create_entities", entities=extra, project="p")
    page1 = await call(client, "read_graph", project="p", limit=4)
    assert page1["total"] == 7 and len(page1["entities"]) == 4 and page1["next_offset"] == 4
    page2 = await call(client, "read_graph", project="p", limit=4, offset=4)
    assert page2["next_offset"] is None
    assert sorted(names(page1) + names(page2)) == sorted(
        ["auth/jwt.py", "verify_token", "n0", "n1", "n2", "n3", "n4"]
    )
    assert rel in page1["relations"] + page2["relations"]

    # deleting an entity deletes its relations and observations
    deleted = await call(client, "delete_entities", entity_names=["verify_token"], project="p")
    assert deleted["deleted"] == 1
    assert (await call(client, "open_nodes", names=["auth/jwt.py"]))["relations"] == []
    await call(
        client, "create_entities", entities=[{"name": "verify_token", "entity_type": "function"}]
    )
    assert (await call(client, "open_nodes", names=["verify_token"]))["entities"][0][
        "observations"
    ] == []

    found = await call(client, "search_nodes", query="thing")
    assert set(names(found)) >= {"n0", "n1"}


@pytest.mark.parametrize("client", BACKENDS, indirect=True)
async def test_neighbourhood_and_path(client: Client[Any]) -> None:
    chain = ["a.py", "b.py", "c.py", "d.py", "island.py"]
    await call(
        client, "create_entities", entities=[{"name": n, "entity_type": "file"} for n in chain]
    )
    links = [
        {"from": "a.py", "to": "b.py", "relation_type": "imports"},
        {"from": "c.py", "to": "b.py", "relation_type": "imports"},  # against the walk
        {"from": "c.py", "to": "d.py", "relation_type": "imports"},
        {"from": "d.py", "to": "a.py", "relation_type": "imports"},  # a cycle
    ]
    await call(client, "create_relations", relations=links)
    near = await call(client, "get_entity_context", name="b.py", depth=1)
    assert {(n["name"], n["distance"]) for n in near["neighbours"]} == {("a.py", 1), ("c.py", 1)}
    two = await call(client, "get_entity_context", name="b.py", depth=2)
    assert {(n["name"], n["distance"]) for n in two["neighbours"]} == {
        ("a.py", 1),
        ("c.py", 1),
        ("d.py", 2),
    }
    path = await call(client, "find_path", source="b.py", target="d.py")
    assert path["found"] and path["length"] == 2
    assert path["path"][0]["from"] in ("a.py", "c.py") and path["path"][-1]["to"] in (
        "d.py",
        "a.py",
    )
    assert not (await call(client, "find_path", source="a.py", target="island.py"))["found"]
    assert "no entity named" in await error(client, "find_path", source="a.py", target="zz")
    assert "depth" in await error(client, "get_entity_context", name="a.py", depth=9)


FIX = "Fixed the expiry check in auth/jwt.py: signatures past their exp were still accepted."
DEFINITION = "```python\n# auth/jwt.py\ndef verify_token(token: str) -> Claims:\n    ...\n```"
LATER = "`verify_token` now rejects tokens without a kid header."


@pytest.mark.parametrize("client", BACKENDS, indirect=True)
async def test_stored_items_build_the_graph_and_search_expands_through_it(
    client: Client[Any],
) -> None:
    ids = {}
    for key, text in (("fix", FIX), ("def", DEFINITION), ("later", LATER)):
        ids[key] = (await call(client, "store_reflection", content=text, project="auth"))["id"]
    await call(
        client,
        "store_reflection",
        content="ImportError: no module httpx\n\nimport httpx",
        project="auth",
    )
    await call(
        client,
        "store_reflection",
        content="We `retry` the `data` load, see e.g. docs.",
        project="auth",
    )

    opened = await call(
        client,
        "open_nodes",
        names=["verify_token", "auth/jwt.py", "httpx", "ImportError", "retry", "data"],
    )
    assert {(e["name"], e["entity_type"]) for e in opened["entities"]} == {
        ("verify_token", "function"),
        ("auth/jwt.py", "file"),
        ("httpx", "package"),
        ("ImportError", "error"),
    }  # the generic words are not entities
    assert {"from": "verify_token", "to": "auth/jwt.py", "relation_type": "defined_in"} in opened[
        "relations"
    ]

    context = await call(client, "get_entity_context", name="auth/jwt.py")
    about = {m["id"]: m for m in context["memories"]}
    assert (
        about[ids["fix"]]["about"] == "auth/jwt.py"
        and "auth/jwt.py" in about[ids["fix"]]["excerpt"]
    )
    assert about[ids["later"]]["about"] == "verify_token"  # one hop away

    plain = await call(client, "search", query="verify_token", mode="keyword", fields=["id"])
    assert ids["fix"] not in [h["id"] for h in plain["hits"]]
    expanded = await call(
        client, "search", query="verify_token", mode="keyword", expand="graph", fields=["id"]
    )
    hits = expanded["hits"]
    direct = [h for h in hits if h.get("via") is None]
    via = {h["id"]: h["via"] for h in hits if h.get("via")}
    assert via[ids["fix"]] == "graph:verify_token>auth/jwt.py"
    assert hits.index(next(h for h in hits if h["id"] == ids["fix"])) >= len(direct)
    assert max(h["score"] for h in hits if h.get("via")) < min(h["score"] for h in direct)

    by_file = await call(client, "search_by_file", path="auth/jwt.py", verbose=True)
    marked = {h["id"]: h.get("via") for h in by_file["hits"]}
    assert marked[ids["fix"]] is None and marked[ids["later"]] == "graph:auth/jwt.py>verify_token"

    # a deleted memory no longer explains an entity
    await call(client, "delete_memory", id=ids["fix"])
    context = await call(client, "get_entity_context", name="auth/jwt.py")
    assert ids["fix"] not in {m["id"] for m in context["memories"]}

    resource = await client.read_resource("session-buddy://graph/auth")
    assert "verify_token" in resource[0].text  # type: ignore[union-attr]


async def test_extraction_can_be_turned_off(tmp_path: Path) -> None:
    """``graph.extract`` off: stored items link to no entity (the same texts give entities
    with it on, above), and storing and search still work."""
    from session_buddy.server.app import create_server

    settings = settings_for("duckdb", tmp_path, vectors=False, graph={"extract": False})
    async with Client(create_server(settings)) as client:
        stored = await call(client, "store_reflection", content=FIX, project="auth")
        opened = await call(client, "open_nodes", names=["verify_token", "auth/jwt.py"])
        assert opened["entities"] == [] and opened["relations"] == []
        found = await call(client, "search", query="expiry check", mode="keyword", fields=["id"])
        assert [h["id"] for h in found["hits"]] == [stored["id"]]


def test_extraction_is_conservative() -> None:
    found = extract(
        "See https://example.com/x/app.js and e.g. the `value`; ERR_CONN_4021 and E501 "
        "in `src/cache.ts`, raised as HttpServerError. import os\nfrom fastapi import Depends",
        projects=["widget"],
        people=["alice"],
    )
    got = {(m.name, m.entity_type) for m in found.mentions}
    assert got == {
        ("ERR_CONN_4021", "error"),
        ("E501", "error"),
        ("src/cache.ts", "file"),
        ("HttpServerError", "error"),
        ("fastapi", "package"),
    }
    people = extract(
        "Alice fixed it with alicex; widget ships", projects=["widget"], people=["alice"]
    )
    assert {(m.name, m.entity_type) for m in people.mentions} == {
        ("alice", "person"),
        ("widget", "project"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
async def test_another_users_graph_is_invisible(backend: str, tmp_path: Path) -> None:
    di.configure(settings_for(backend, tmp_path, vectors=False, user="owner"))
    await di.startup()
    try:
        graph, memory = di.get(GraphService), di.get(MemoryService)
        with acting_as("alice"):
            await memory.store(
                [ItemInput(content=FIX, kind="reflection", project="auth", author="alice")]
            )
            from session_buddy.core.graph import EntitySpec

            await graph.create_entities([EntitySpec("falcon-plan", "plan", ("secret",))], None)
            assert names(await graph.open_nodes(["falcon-plan", "auth/jwt.py"], None)) == [
                "falcon-plan",
                "auth/jwt.py",
            ]
        with acting_as("bob"):
            assert (await graph.open_nodes(["falcon-plan", "auth/jwt.py"], None))["entities"] == []
            assert (await graph.read_graph(None, 50, 0))["total"] == 0
            assert (await graph.search_nodes("falcon secret", None, 10))["entities"] == []
            with pytest.raises(NotFound):
                await graph.entity_context("auth/jwt.py", 2, None, 10)
            found = await memory.search("auth/jwt.py", mode="keyword", expand="graph")
            assert found.hits == []
    finally:
        await di.shutdown()
        await drop_schemas()


@pytest.mark.parametrize("target", _params(["duckdb", "postgres"]))
async def test_migrate_copies_the_graph(target: str, tmp_path: Path) -> None:
    from session_buddy.core.migrate import run_migration

    source = tmp_path / "src.duckdb"
    settings = load_settings(
        data_dir=tmp_path / "data",
        adapters={"storage": "duckdb", "embeddings": "none"},
        storage={"path": str(source)},
    ).settings
    di.configure(settings)
    await di.startup()
    memory, graph = di.get(MemoryService), di.get(GraphService)
    await memory.store([ItemInput(content=DEFINITION, kind="reflection", project="auth")])
    from session_buddy.core.graph import EntitySpec

    await graph.create_entities([EntitySpec("Claims", "class", ("the JWT body",))], "auth")
    await di.shutdown()
    di.reset()
    dest = f"duckdb:{tmp_path / 'dst.duckdb'}"
    if target == "postgres":
        dest = f"postgres:{pg_dsn()}"
        settings = settings.model_copy(
            update={
                "storage": settings.storage.model_copy(update={"pg_schema": schema_for(tmp_path)})
            }
        )
    try:
        report = await run_migration(f"duckdb:{source}", dest, settings)
        assert report.verified
        tables = report.digest["graph"]
        assert tables["graph_entities"]["count"] == 3  # auth/jwt.py, verify_token, Claims
        assert tables["graph_mentions"]["count"] >= 2
        assert tables["graph_relations"]["count"] == 1
        assert tables["graph_observations"]["count"] == 1
    finally:
        await drop_schemas()
