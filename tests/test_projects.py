"""Knowledge across projects, through the MCP client (lite storage, the real ONNX model).

Three projects: svc-a uses svc-b; svc-c is unrelated.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from session_buddy.settings import load_settings

A, B, C = "svc-a", "svc-b", "svc-c"

REDIS_FIX = (
    "Fixed ERR_CONN_4021 at login: the Redis client needs a connect timeout of 5 seconds "
    "and three retries, otherwise the pool hangs when the cache restarts."
)
POOL_FIX = (
    "SQLAlchemy QueuePool limit reached under load: raise pool_size to 20, set "
    "pool_pre_ping and always close sessions in a finally block."
)
C_NOTE = "The marketing site builds with Hugo; images go through the resize pipeline."


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client[Any]]:
    from session_buddy.server.app import create_server

    settings = load_settings(mode="lite", data_dir=tmp_path / "data", user="alice").settings
    async with Client(create_server(settings)) as c:
        yield c


async def call(client: Client[Any], tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data = result.structured_content
    assert isinstance(data, dict)
    return data


async def store(client: Client[Any], content: str, project: str) -> str:
    stored = await call(client, "store_reflection", content=content, project=project)
    return str(stored["id"])


async def across(client: Client[Any], query: str, project: str, **args: Any) -> dict[str, Any]:
    return await call(client, "search_across_projects", query=query, project=project, **args)


@pytest.fixture
async def three(client: Client[Any]) -> dict[str, str]:
    ids = {
        "a_redis": await store(client, REDIS_FIX, A),
        "b_redis": await store(client, REDIS_FIX, B),  # the same fix, equally similar
        "b_pool": await store(client, POOL_FIX, B),
        "c_note": await store(client, C_NOTE, C),
    }
    edge = await call(client, "add_project_dependency", source=A, target=B, dependency_type="uses")
    assert edge["created"] is True
    return ids


async def test_fix_in_dependency_is_found_ranked_below_own_and_never_for_unrelated(
    client: Client[Any], three: dict[str, str]
) -> None:
    found = await across(client, "connection pool limit under load", A)
    assert found["project"] == A
    assert [(p["project"], p["tier"]) for p in found["searched"]] == [
        (A, "current"),
        (B, "dependency"),
    ]
    pool = next(h for h in found["hits"] if h["id"] == three["b_pool"])
    assert pool["project"] == B and pool["why"] == f"{A} uses {B}"
    assert pool["tier"] == "dependency"
    assert pool["score"] == pytest.approx(pool["fused_score"] * 0.85, abs=2e-4)

    # An equally similar item of A itself ranks above the dependency's copy.
    same = await across(client, "Redis connect timeout ERR_CONN_4021", A)
    top, second = same["hits"][0], same["hits"][1]
    assert (top["id"], top["project"], top["why"]) == (three["a_redis"], A, "current project")
    assert (second["id"], second["project"]) == (three["b_redis"], B)
    assert top["fused_score"] == pytest.approx(second["fused_score"], abs=1e-4)
    assert second["score"] == pytest.approx(top["score"] * 0.85, abs=2e-4)

    # From B, the dependency is related too (A uses B): A's item is included after B's own.
    from_b = await across(client, "Redis connect timeout ERR_CONN_4021", B)
    assert [h["project"] for h in from_b["hits"][:2]] == [B, A]

    # C is unrelated: nothing of B (or A) ever comes back, whatever the query.
    for query in ("connection pool limit under load", "Redis ERR_CONN_4021", REDIS_FIX):
        res = await across(client, query, C)
        assert {h["project"] for h in res["hits"]} <= {C}
        assert three["b_pool"] not in {h["id"] for h in res["hits"]}

    # Search inside one project stays scoped to it.
    plain = await call(client, "search", query="connection pool limit under load", project=A)
    assert {h["project"] for h in plain["hits"]} <= {A}


async def test_groups_and_dependency_edits_change_the_results(
    client: Client[Any], three: dict[str, str]
) -> None:
    query = "connection pool limit under load"
    assert three["b_pool"] not in {h["id"] for h in (await across(client, query, C))["hits"]}

    # C joins a group with B: with include="group" B's fix is found from C, with the reason.
    group = await call(client, "create_project_group", name="payments", projects=[B, C])
    assert group["projects"] == [B, C] and group["replaced"] is False
    listed = await call(client, "list_project_groups")
    assert listed["groups"] == [{"name": "payments", "projects": [B, C], "description": None}]
    grouped = await across(client, query, C, include="group")
    hit = next(h for h in grouped["hits"] if h["id"] == three["b_pool"])
    assert hit["why"] == "same group 'payments'" and hit["tier"] == "group"
    assert hit["score"] == pytest.approx(hit["fused_score"] * 0.7, abs=2e-4)
    # ... but "related" (dependencies only) still keeps C apart from B.
    related = await across(client, query, C, include="related")
    assert three["b_pool"] not in {h["id"] for h in related["hits"]}

    # Replacing the group's projects takes C out again.
    await call(client, "create_project_group", name="payments", projects=[A, B])
    regrouped = await across(client, query, C, include="group")
    assert three["b_pool"] not in {h["id"] for h in regrouped["hits"]}

    # include="all" reaches every project, at the lowest tier.
    everything = await across(client, query, C, include="all")
    hit = next(h for h in everything["hits"] if h["id"] == three["b_pool"])
    assert hit["tier"] == "other" and hit["why"] == "other project (include='all')"

    # Removing the dependency cuts B off from A (a dependency beats a group: 0.85 > 0.7).
    from_a = await across(client, query, A, include="group")
    assert next(h for h in from_a["hits"] if h["id"] == three["b_pool"])["tier"] == "dependency"
    removed = await call(client, "remove_project_dependency", source=A, target=B)
    assert removed["removed"] == ["uses"]
    after = await across(client, query, A)
    assert three["b_pool"] not in {h["id"] for h in after["hits"]}
    assert [p["project"] for p in after["searched"]] == [A]
    with pytest.raises(ToolError, match="no dependency"):
        await call(client, "remove_project_dependency", source=A, target=B)
    # Still in the same group as A: include="group" finds it, at the group tier.
    grouped_a = await across(client, query, A, include="group")
    assert next(h for h in grouped_a["hits"] if h["id"] == three["b_pool"])["tier"] == "group"


async def test_graph_aliases_and_directories(
    client: Client[Any], three: dict[str, str], tmp_path: Path
) -> None:
    # An alias: items stored under the old name belong to the project.
    made = await call(client, "create_project", name=B, aliases=["payments-lib"])
    assert made["aliases"] == ["payments-lib"] and made["explicit"] is True
    old = await store(
        client, "Pin urllib3 below 2 for the legacy payments gateway.", "payments-lib"
    )
    found = await across(client, "urllib3 legacy payments gateway", A)
    hit = next(h for h in found["hits"] if h["id"] == old)
    assert hit["project"] == B and "stored under its alias 'payments-lib'" in hit["why"]
    # an alias names the same project everywhere
    dep = await call(
        client,
        "add_project_dependency",
        source="payments-lib",
        target=C,
        dependency_type="references",
        description="reads its docs",
    )
    assert (dep["source"], dep["target"]) == (B, C)

    graph = await call(client, "get_project_graph", project=B)
    assert graph["project"]["aliases"] == ["payments-lib"]
    assert [e["source"] for e in graph["used_by"]] == [A]
    assert [(e["target"], e["dependency_type"]) for e in graph["depends_on"]] == [(C, "references")]
    related = {r["project"]: r["why"] for r in graph["search_scope"]["related"]}
    assert related == {
        B: ["current project"],
        A: [f"{A} uses {B}"],
        C: [f"{B} references {C}"],
    }
    whole = await call(client, "get_project_graph")
    assert {p["name"] for p in whole["projects"]} >= {A, B, C}
    assert len(whole["dependencies"]) == 2

    with pytest.raises(ToolError, match="dependency_type"):
        await call(client, "add_project_dependency", source=A, target=C, dependency_type="likes")
    with pytest.raises(ToolError, match="cannot depend on itself"):
        await call(client, "add_project_dependency", source=A, target=A, dependency_type="uses")

    # A working directory is a project: its git root, named after the folder.
    repo = tmp_path / "svc-d"
    (repo / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    await store(client, "svc-d caches tokens in memory for ten minutes.", "svc-d")
    from_dir = await across(client, "token cache minutes", str(repo / "src"))
    assert from_dir["project"] == "svc-d"
    assert [h["project"] for h in from_dir["hits"]] == ["svc-d"]
    described = await call(client, "get_project_graph", project=str(repo))
    assert described["project"]["name"] == "svc-d"
    assert described["project"]["path"] == str(repo.resolve())


async def test_project_insights_show_related_knowledge_and_recurring_patterns(
    client: Client[Any], three: dict[str, str]
) -> None:
    # The same error met again in B, worded differently; and a near-identical note in A and B.
    await store(client, "ERR_CONN_4021 again after the Redis failover: same timeout fix.", B)
    await store(client, "Always run the database migrations before deploying the API.", A)
    await store(client, "Always run the database migrations before deploying the API!", B)
    insights = await call(client, "get_project_insights", project=A)
    assert insights["project"] == A
    assert [r["project"] for r in insights["related_projects"]] == [B]
    from_b = {i["id"] for i in insights["insights"]}
    assert three["b_pool"] in from_b and three["a_redis"] not in from_b
    assert all(i["project"] == B and i["why"] == f"{A} uses {B}" for i in insights["insights"])
    patterns = insights["patterns"]
    by_evidence = {e: p for p in patterns for e in p["evidence"]}
    redis = by_evidence["shared identifier ERR_CONN_4021"]
    assert redis["projects"] == [A, B] and len(redis["items"]) == 3
    assert any(
        p["projects"] == [A, B] and any(e.startswith("similar text") for e in p["evidence"])
        for p in patterns
        if "migrations" in p["summary"]
    )
    # C is unrelated: its insights know nothing of A or B.
    alone = await call(client, "get_project_insights", project=C)
    assert alone["insights"] == [] and alone["patterns"] == []


async def test_relations_persist_on_duckdb(tmp_path: Path) -> None:
    from session_buddy import di
    from session_buddy.server.app import create_server

    def settings() -> Any:
        return load_settings(
            data_dir=tmp_path / "data", adapters={"storage": "duckdb"}, user="alice"
        ).settings

    async with Client(create_server(settings())) as c:
        b_pool = await store(c, POOL_FIX, B)
        await store(c, C_NOTE, C)
        await call(c, "add_project_dependency", source=A, target=B, dependency_type="uses")
        await call(c, "create_project_group", name="platform", projects=[A, C])
        await call(c, "create_project", name=B, aliases=["payments-lib"])
    di.reset()
    async with Client(create_server(settings())) as c:
        found = await across(c, "connection pool limit under load", "payments-lib")
        assert found["project"] == B
        from_a = await across(c, "connection pool limit under load", A, include="group")
        assert [(p["project"], p["tier"]) for p in from_a["searched"]] == [
            (A, "current"),
            (B, "dependency"),
            (C, "group"),
        ]
        assert from_a["hits"][0]["id"] == b_pool
        groups = await call(c, "list_project_groups")
        assert groups["groups"][0]["projects"] == [A, C]


async def test_search_across_projects_defaults_to_the_callers_project(
    client: Client[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder named widget-main whose manifest says widget is the project widget; items
    stored under the folder's name are its own; project may be left out."""
    repo = tmp_path / "widget-main"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "widget"\n')
    await store(client, "The widget cache key includes the locale and the currency.", "widget")
    await store(client, "Widget retries: the cache client retries three times.", "widget-main")
    await store(client, "Unrelated: the billing cache is flushed nightly.", "billing")
    from_dir = await across(client, "widget cache", str(repo))
    assert from_dir["project"] == "widget"
    assert sorted(h["project"] for h in from_dir["hits"]) == ["widget", "widget"]
    assert any("stored under its alias 'widget-main'" in h["why"] for h in from_dir["hits"])
    graph = await call(client, "get_project_graph", project="widget-main")
    assert graph["project"]["name"] == "widget" and "widget-main" in graph["project"]["aliases"]

    # no project: the caller's working directory ($CLAUDE_PROJECT_DIR, else its cwd) ...
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(repo))
    implicit = await call(client, "search_across_projects", query="widget cache")
    assert implicit["project"] == "widget" and len(implicit["hits"]) == 2
    # ... and once a session is open, its project
    elsewhere = tmp_path / "billing"
    elsewhere.mkdir()
    await call(client, "start", working_directory=str(elsewhere))
    current = await call(client, "search_across_projects", query="cache flushed")
    assert current["project"] == "billing"
    assert [h["project"] for h in current["hits"]] == ["billing"]
