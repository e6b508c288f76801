"""Access control in the memory service itself: every search and lookup obeys it."""

from __future__ import annotations

import pytest

from session_buddy import di
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.teams import TeamService
from session_buddy.core.users import acting_as
from session_buddy.errors import AuthError, NotFound


async def test_users_see_only_their_own_and_shared_memories(lite_settings) -> None:  # type: ignore[no-untyped-def]
    di.configure(lite_settings.model_copy(update={"user": "owner"}))
    await di.startup()
    memory, teams = di.get(MemoryService), di.get(TeamService)
    with acting_as("alice"):
        secret = (
            await memory.store(
                [
                    ItemInput(
                        content="alice's rotation key lives in vault path kv/rot",
                        kind="reflection",
                        author="alice",
                        project="p",
                    )
                ]
            )
        )[0]
        shared = (
            await memory.store(
                [
                    ItemInput(
                        content="alice's fix: retry the rotation with backoff",
                        kind="reflection",
                        author="alice",
                        project="p",
                    )
                ]
            )
        )[0]
        await teams.create_team("ops", members=["alice", "bob"])
        await teams.share_reflection(shared.id, "ops")
    with acting_as("bob"):
        found = await memory.search("rotation key vault retry backoff", projects=["p"])
        ids = {h.id for h in found.hits}
        assert shared.id in ids and secret.id not in ids
        with pytest.raises(NotFound) as missing:
            await memory.get(secret.id)
        with pytest.raises(NotFound) as unknown:
            await memory.get("no-such-id")
        assert str(missing.value).replace(secret.id, "X") == str(unknown.value).replace(
            "no-such-id", "X"
        )
        with pytest.raises(NotFound):
            await memory.delete(secret.id)
        with pytest.raises(AuthError):  # visible through the team, but not bob's to change
            await memory.update(shared.id, tags=["mine"])
    with acting_as("carol"):
        found = await memory.search("rotation key vault retry backoff", projects=["p"])
        assert found.hits == [] and found.confidence == "none"
    with acting_as("alice"):
        await memory.delete(secret.id)
    await di.shutdown()


async def test_own_items_are_found_behind_many_of_others(lite_settings) -> None:  # type: ignore[no-untyped-def]
    """On a store many users share, the best-ranked items may all be someone else's: the
    rankers apply the access rule, so what the user may see is still found."""
    settings = lite_settings.model_copy(
        update={"search": lite_settings.search.model_copy(update={"candidates": 10})}
    )
    di.configure(settings)
    await di.startup()
    memory = di.get(MemoryService)
    with acting_as("alice"):
        await memory.store(
            [
                ItemInput(
                    content=f"ledger ledger ledger reconciliation run {n} for the ledger",
                    kind="reflection",
                    project="p",
                )
                for n in range(120)
            ]
        )
    with acting_as("bob"):
        (mine,) = await memory.store(
            [ItemInput(content="my ledger note: check the totals", kind="reflection", project="p")]
        )
        found = await memory.search("ledger reconciliation", mode="keyword", limit=3)
        assert [h.id for h in found.hits] == [mine.id]
        assert found.has_more is False
    with acting_as("alice"):
        found = await memory.search("ledger reconciliation", mode="keyword", limit=3)
        assert len(found.hits) == 3 and mine.id not in {h.id for h in found.hits}
    await di.shutdown()
