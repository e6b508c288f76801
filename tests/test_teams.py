"""Teams: sharing, votes and access control (lite storage, the real ONNX model).

The MCP server acts as ``settings.user``. A second (or third) user acts through the core
service inside ``acting_as(name)``: the same hook the HTTP service uses to bind the
authenticated token's subject to a request.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from session_buddy import di
from session_buddy.adapters.storage._base import ItemFilter, StorageBase
from session_buddy.core.capture import CaptureService
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.recurring import find_patterns
from session_buddy.core.teams import TeamService, vote_factor
from session_buddy.core.users import acting_as
from session_buddy.errors import AuthError, NotFound, ValidationError
from session_buddy.settings import load_settings

WEBHOOK_RETRY = (
    "Retry the flaky payment webhook with exponential backoff: start at 1 second, "
    "at most 5 attempts, and make the handler idempotent."
)
WEBHOOK_SHORT = "Webhook deliveries from the payment provider need an exponential backoff."
SECRET_PLAN = "Project Falcon: the payments team migrates to the new ledger in March."


def server_for(tmp_path: Path, user: str) -> Any:
    from session_buddy.server.app import create_server

    settings = load_settings(mode="lite", data_dir=tmp_path / "data", user=user).settings
    return create_server(settings)


async def call(client: Client[Any], tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data = result.structured_content
    assert isinstance(data, dict)
    return data


async def tool_error(client: Client[Any], tool: str, **args: Any) -> str:
    with pytest.raises(ToolError) as caught:
        await client.call_tool(tool, args)
    return str(caught.value)


async def store_as(user: str, content: str, project: str = "payments") -> str:
    """A reflection written by ``user`` (as the memory tools of their own server would)."""
    stored = await di.get(MemoryService).store(
        [ItemInput(content=content, kind="reflection", project=project, author=user)]
    )
    return stored[0].id


@pytest.fixture
async def mallory(tmp_path: Path) -> AsyncIterator[Client[Any]]:
    """The MCP client of a user outside alice's team."""
    async with Client(server_for(tmp_path, "mallory")) as c:
        yield c


@pytest.fixture
async def alice(tmp_path: Path) -> AsyncIterator[Client[Any]]:
    async with Client(server_for(tmp_path, "alice")) as c:
        yield c


async def test_outsider_cannot_read_vote_or_infer(mallory: Client[Any]) -> None:
    teams = di.get(TeamService)
    with acting_as("alice"):
        await teams.create_team("payments", members=["bob"], projects=["payments"])
        shared = await store_as("alice", SECRET_PLAN)
        private = await store_as("alice", "Alice's private note about the Falcon ledger.")
        await teams.share_reflection(shared, "payments")
    with acting_as("bob"):
        await teams.vote_on_reflection(shared, 1)
        found = await teams.search_team_knowledge("Falcon ledger migration", "payments")
        assert [h.id for h in found.hits] == [shared]  # a member sees it, not the private one

    def same(message: str, name: str) -> str:
        return message.replace(name, "<X>")

    missing_team = await tool_error(
        mallory, "search_team_knowledge", query="Falcon ledger", team="no-such-team"
    )
    assert "no team 'no-such-team'" in missing_team
    # A team that exists answers exactly like one that does not, for every team tool.
    for tool, args in [
        ("search_team_knowledge", {"query": "Falcon ledger"}),
        ("get_team_statistics", {}),
        ("add_team_member", {"user": "mallory"}),
        ("share_reflection", {"id": shared}),
    ]:
        real = await tool_error(mallory, tool, team="payments", **args)
        fake = await tool_error(mallory, tool, team="no-such-team", **args)
        assert same(real, "payments") == same(fake, "no-such-team"), tool
        assert "no team" in real or "no memory item" in real

    # An id she cannot see answers exactly like an id that does not exist.
    unknown = uuid.uuid4().hex
    for item in (shared, private):
        real = await tool_error(mallory, "vote_on_reflection", id=item, vote=1)
        fake = await tool_error(mallory, "vote_on_reflection", id=unknown, vote=1)
        assert same(real, item) == same(fake, unknown)
    mine = await call(mallory, "create_team", name="mallory-only")
    assert mine["members"] == ["mallory"]
    real = await tool_error(mallory, "share_reflection", id=shared, team="mallory-only")
    fake = await tool_error(mallory, "share_reflection", id=unknown, team="mallory-only")
    assert same(real, shared) == same(fake, unknown)

    # Naming someone else as the user is refused, not honoured.
    refused = await tool_error(
        mallory, "search_team_knowledge", query="Falcon", team="payments", user="bob"
    )
    assert "is not you" in refused

    # Her own views leak nothing: statistics of her team, cross-project search.
    stats = await call(mallory, "get_team_statistics", team="mallory-only")
    assert stats["shared_items"] == 0 and stats["votes"] == {"up": 0, "down": 0, "voters": 0}
    across = await call(
        mallory, "search_across_projects", query="Falcon ledger migration", project="payments"
    )
    assert across["hits"] == []
    insights = await call(mallory, "get_project_insights", project="payments")
    assert insights["insights"] == [] and insights["items_considered"] == 0
    # ... nor did anything she tried count: bob's vote is still the only one.
    with acting_as("bob"):
        stats = await teams.get_team_statistics("payments")
    assert stats["members"] == ["alice", "bob"]
    assert stats["votes"] == {"up": 1, "down": 0, "voters": 1}

    # Once she is added, she sees the team's knowledge (and still not alice's private note).
    with acting_as("alice"):
        await teams.add_team_member("payments", "mallory")
    found_now = await call(mallory, "search_team_knowledge", query="Falcon ledger", team="payments")
    assert [h["id"] for h in found_now["hits"]] == [shared]
    assert found_now["hits"][0]["author"] == "alice"


async def test_votes_count_once_per_user_and_change_team_ranking(alice: Client[Any]) -> None:
    teams = di.get(TeamService)
    created = await call(alice, "create_team", name="core", members=["bob", "carol"])
    assert created["members"] == ["alice", "bob", "carol"]
    added = await call(alice, "add_team_member", team="core", user="dave")
    assert added["added"] is True
    again = await call(alice, "add_team_member", team="core", user="dave")
    assert again["added"] is False

    # alice's own reflections (stored through her server: she is their author)
    retry = (await call(alice, "store_reflection", content=WEBHOOK_RETRY, project="pay"))["id"]
    short = (await call(alice, "store_reflection", content=WEBHOOK_SHORT, project="pay"))["id"]
    convo = (await call(alice, "store_conversation", content="webhook chat turn", project="pay"))[
        "id"
    ]
    for item in (retry, short):
        shared = await call(alice, "share_reflection", id=item, team="core")
        assert shared["shared"] is True
    assert (await call(alice, "share_reflection", id=retry, team="core"))["shared"] is False
    assert "only reflections" in await tool_error(alice, "share_reflection", id=convo, team="core")

    query = "retry payment webhook exponential backoff attempts"
    before = await call(alice, "search_team_knowledge", query=query, team="core")
    assert [h["id"] for h in before["hits"]] == [retry, short]
    assert before["shared_items"] == 2
    assert all(h["net_votes"] == 0 and h["score"] == h["fused_score"] for h in before["hits"])

    # alice votes -1 on the top hit three times: it counts once.
    for _ in range(3):
        voted = await call(alice, "vote_on_reflection", id=retry, vote=-1)
    assert voted["replaced"] is True and voted["previous"] == -1
    # bob changes his mind: his second vote replaces the first.
    with acting_as("bob"):
        first = await teams.vote_on_reflection(short, -1)
        second = await teams.vote_on_reflection(short, 1)
    assert first["replaced"] is False and second == {
        "id": short,
        "user": "bob",
        "vote": 1,
        "previous": -1,
        "replaced": True,
    }
    with acting_as("carol"):
        await teams.vote_on_reflection(short, 1)
        await teams.vote_on_reflection(retry, -1)

    after = await call(alice, "search_team_knowledge", query=query, team="core")
    by_id = {h["id"]: h for h in after["hits"]}
    assert (by_id[retry]["net_votes"], by_id[retry]["votes_down"]) == (-2, 2)
    assert (by_id[short]["net_votes"], by_id[short]["votes_up"]) == (2, 2)
    assert by_id[retry]["your_vote"] == -1 and by_id[short]["your_vote"] is None
    # the rule: team score = fused score x (1 + 0.1 x net votes)
    for hit in after["hits"]:
        expected = hit["fused_score"] * vote_factor(hit["net_votes"])
        assert hit["score"] == pytest.approx(expected, abs=2e-4)
    assert [h["id"] for h in after["hits"]] == [short, retry]  # the votes flipped the order

    # Votes of people outside the team do not count there, even on an item shared with both.
    await call(alice, "create_team", name="side", members=["erin"])
    await call(alice, "share_reflection", id=retry, team="side")
    with acting_as("erin"):
        for _ in range(4):
            await teams.vote_on_reflection(retry, 1)
        side = await teams.search_team_knowledge(query, "side")
    assert {h.id: h.team.net_votes for h in side.hits} == {retry: 0}  # alice -1, erin +1
    again_core = await call(alice, "search_team_knowledge", query=query, team="core")
    assert {h["id"]: h["net_votes"] for h in again_core["hits"]} == {retry: -2, short: 2}

    stats = await call(alice, "get_team_statistics", team="core")
    assert stats["member_count"] == 4 and stats["shared_items"] == 2
    assert stats["by_kind"] == {"reflection": 2} and stats["by_project"] == {"pay": 2}
    assert stats["shared_by_member"] == {"alice": 2}
    assert stats["votes"] == {"up": 2, "down": 2, "voters": 3}
    assert [t["id"] for t in stats["top_items"]] == [short, retry]

    # Validation: a vote is +1 or -1; unshared items take no votes.
    assert "vote" in await tool_error(alice, "vote_on_reflection", id=retry, vote=2)
    own = (await call(alice, "store_reflection", content="An unshared idea.", project="pay"))["id"]
    assert "not shared" in await tool_error(alice, "vote_on_reflection", id=own, vote=1)
    assert "taken" in await tool_error(alice, "create_team", name="core")


async def test_user_argument_rule(alice: Client[Any]) -> None:
    teams = di.get(TeamService)
    await call(alice, "create_team", name="core", members=["bob"])
    item = (await call(alice, "store_reflection", content=WEBHOOK_RETRY, project="pay"))["id"]
    await call(alice, "share_reflection", id=item, team="core")

    # naming yourself is fine; naming someone else is refused by default
    mine = await call(alice, "search_team_knowledge", query="webhook", team="core", user="alice")
    assert mine["user"] == "alice"
    assert "is not you" in await tool_error(alice, "vote_on_reflection", id=item, user="bob")

    # Explicitly allowed, and only without authentication, the argument may name another.
    teams.allow_user_override = True
    try:
        voted = await call(alice, "vote_on_reflection", id=item, user="bob", vote=1)
        assert voted["user"] == "bob"
        with acting_as("alice"), pytest.raises(AuthError):  # an authenticated request
            await teams.vote_on_reflection(item, 1, user="bob")
        with pytest.raises(NotFound):  # acting for an outsider gives an outsider's view
            await teams.search_team_knowledge("webhook", "core", user="mallory")
    finally:
        teams.allow_user_override = False

    # The authenticated identity is who acts: the server's own user is not used then.
    with acting_as("bob"):
        found = await teams.search_team_knowledge("webhook", "core")
        assert found.user == "bob" and [h.id for h in found.hits] == [item]
        with pytest.raises(ValidationError, match="only the author"):
            await teams.share_reflection(item, "core")
    with acting_as("mallory"), pytest.raises(NotFound):
        await teams.get_team_statistics("core")


async def test_leave_remove_and_unshare(alice: Client[Any]) -> None:
    teams = di.get(TeamService)
    await call(alice, "create_team", name="core", members=["bob", "carol"])
    item = (await call(alice, "store_reflection", content=WEBHOOK_RETRY, project="pay"))["id"]
    await call(alice, "share_reflection", id=item, team="core")
    with acting_as("bob"):
        found = await teams.search_team_knowledge("webhook backoff", "core")
        assert [h.id for h in found.hits] == [item]
        await teams.vote_on_reflection(item, 1)
        # bob is not the creator: he cannot remove carol, nor withdraw alice's item
        with pytest.raises(ValidationError, match="only the team's creator"):
            await teams.remove_team_member("core", "carol")
        with pytest.raises(ValidationError, match="only they or its author"):
            await teams.unshare_reflection(item, "core")
        left = await teams.remove_team_member("core", "bob")  # he may leave
        assert left["removed"] is True and left["members"] == ["alice", "carol"]
        # gone: the team and its items are invisible to him, as to any outsider
        with pytest.raises(NotFound, match="no team 'core'"):
            await teams.search_team_knowledge("webhook backoff", "core")
        with pytest.raises(NotFound):
            await teams.vote_on_reflection(item, 1)
    # his vote no longer counts
    after = await call(alice, "search_team_knowledge", query="webhook backoff", team="core")
    assert after["hits"][0]["net_votes"] == 0

    # the creator removes carol; removing a non-member is a no-op, the last member stays
    removed = await call(alice, "remove_team_member", team="core", user="carol")
    assert removed["removed"] is True and removed["members"] == ["alice"]
    again = await call(alice, "remove_team_member", team="core", user="carol")
    assert again["removed"] is False
    assert "last member" in await tool_error(alice, "remove_team_member", team="core", user="alice")

    # the author withdraws the item: team search no longer finds it; twice is a no-op
    withdrawn = await call(alice, "unshare_reflection", id=item, team="core")
    assert withdrawn == {"id": item, "team": "core", "unshared": True}
    assert (await call(alice, "unshare_reflection", id=item, team="core"))["unshared"] is False
    empty = await call(alice, "search_team_knowledge", query="webhook backoff", team="core")
    assert empty["hits"] == [] and empty["shared_items"] == 0
    # it is still in her own memory
    mine = await call(alice, "search", query="webhook backoff")
    assert [h["id"] for h in mine["hits"]][:1] == [item[:8]]  # a short id


async def test_listings_and_the_session_brief_obey_the_access_rule(
    mallory: Client[Any], tmp_path: Path
) -> None:
    """Listing (newest items of a project, the session brief at ``start``) shows only what
    the acting user may see, as search does: on a shared store, not a teammate's private
    reflections; an item shared with the user's team, yes."""
    teams, memory = di.get(TeamService), di.get(MemoryService)
    with acting_as("alice"):
        await teams.create_team("payments", members=["bob"], projects=["payments"])
        shared = await store_as("alice", SECRET_PLAN)
        private = await store_as("alice", "Alice's private note about the Falcon ledger.")
        await teams.share_reflection(shared, "payments")
    mine = await store_as("mallory", "Mallory's own note about the payments webhooks.")

    async def listed() -> set[str]:
        return {i.id for i in await memory.list_recent(projects=["payments"])}

    assert await listed() == {mine}
    flt = ItemFilter(projects=["payments"], access=await memory.access())
    assert await memory.storage.count_items(flt) == 1
    with acting_as("bob"):
        assert await listed() == {shared}
    with acting_as("alice"):
        assert await listed() == {shared, private}

    folder = tmp_path / "payments"
    folder.mkdir()
    brief = await call(mallory, "start", working_directory=str(folder), detail=True)
    assert brief["project"]["name"] == "payments"
    assert [r["id"] for r in brief["reflections"]] == [mine]
    # a project's counts too: mallory's one reflection, not alice's
    counted = await call(mallory, "reflection_stats", project="payments")
    assert counted["total"] == 1 and counted["by_kind"] == {"reflection": 1}, counted


async def alices_insights(memory: MemoryService, texts: list[str]) -> None:
    """Alice's private insights in the payments project, one per session."""
    await memory.store(
        [
            ItemInput(content=t, kind="insight", project="payments", author="alice", session_id=s)
            for t, s in zip(texts, ["s1", "s2"], strict=True)
        ]
    )


async def test_insights_and_patterns_obey_the_access_rule(mallory: Client[Any]) -> None:
    """Listing all insights (``*``), their statistics and the recurring topics of
    ``patterns`` count only the items the caller may see."""
    memory = di.get(MemoryService)
    texts = [
        "Retry the payment webhook with exponential backoff and an idempotent handler.",
        "Payment webhooks need exponential backoff retries and idempotent handling.",
    ]
    await alices_insights(memory, texts)
    with acting_as("alice"):
        seen = await find_patterns(
            di.get(StorageBase), "payments", None, access=await memory.access()
        )
        assert seen["topics"] and seen["topics"][0]["items"] == 2
        assert (await di.get(CaptureService).insight_statistics())["total"] == 2
    listed = await call(mallory, "search_insights", query="*", project="payments")
    assert listed["count"] == 0
    assert (await call(mallory, "insights_statistics"))["total"] == 0
    patterns = await call(mallory, "patterns", project="payments")
    assert patterns["topics"] == [] and patterns["totals"]["items_clustered"] == 0


async def test_the_handoff_and_export_of_a_session_obey_the_access_rule(
    mallory: Client[Any], tmp_path: Path
) -> None:
    """A session's handoff and its export list the reflections of its project stored while
    it ran: on a shared store, only those the caller may see, not a teammate's private
    reflection written into the project meanwhile (it was copied into the handoff file)."""
    folder = tmp_path / "payments"
    folder.mkdir()
    started = await call(mallory, "start", working_directory=str(folder), detail=True)
    assert started["project"]["name"] == "payments"
    session_id = started["session"]["id"]
    await store_as("alice", "Alice's private note: the Falcon ledger goes live in March.")
    await store_as("mallory", "Mallory's own note about the payments webhooks.")
    exported = await call(mallory, "export_session", session_id=session_id)
    assert "Mallory's own note" in exported["content"]
    assert "Falcon" not in exported["content"]
    ended = await call(mallory, "end", session_id=session_id)
    handoff = Path(ended["handoff_path"]).read_text()
    assert "Mallory's own note" in handoff
    assert "Falcon" not in handoff


async def test_the_report_obeys_the_access_rule(mallory: Client[Any]) -> None:
    """``session-buddy report`` (the service's report job) shows the recurring topics of
    what the caller may see, as ``patterns`` does: not a teammate's private insights, whose
    text a topic quotes."""
    import json

    from session_buddy.server.cli_routes import report_job

    memory = di.get(MemoryService)
    texts = [
        "Falcon ledger: retry the payment webhook with exponential backoff.",
        "Falcon ledger: payment webhooks need exponential backoff retries.",
    ]
    await alices_insights(memory, texts)

    async def report() -> dict[str, Any]:
        done = await report_job({"format": "json", "project": "payments"}, lambda _: None)
        return dict(json.loads(done["text"]))

    with acting_as("alice"):
        assert (await report())["patterns"]["topics"]
    shown = await report()
    assert shown["patterns"]["topics"] == [], shown["patterns"]
    assert "Falcon" not in json.dumps(shown)


async def test_a_sessions_reflection_count_obeys_the_access_rule(
    mallory: Client[Any], tmp_path: Path
) -> None:
    """The reflections a session counts (``status``, the quality score's reflections
    component) are those of its project the caller may see: a teammate's private ones
    stored meanwhile do not count for the caller's session."""
    folder = tmp_path / "payments"
    folder.mkdir()
    started = await call(mallory, "start", working_directory=str(folder), detail=True)
    assert started["project"]["name"] == "payments"
    for n in range(3):
        await store_as("alice", f"Alice's private note {n} about the Falcon ledger.")
    await store_as("mallory", "Mallory's own note about the payments webhooks.")
    status = await call(mallory, "status")
    assert status["counts"]["reflections"] == 1, status["counts"]
