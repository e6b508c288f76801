"""The search pipeline's promises about storage traffic, counted on a real DuckDB store.

The storage's methods are wrapped to count the calls (and the ids fetched); they still run
against the real backend, so the searches' answers are the real ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_buddy.adapters.embeddings.none import Embeddings as NoEmbeddings
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.core.access import Visibility
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.core.teams import TeamService
from session_buddy.core.users import acting_as
from session_buddy.settings import SearchSettings, SessionBuddySettings

METHODS = (
    "get_items",
    "list_items",
    "count_items",
    "keyword_search",
    "vector_search",
    "get_record",
    "list_records",
    "get_meta",
)


class Calls:
    """Counts the calls of a storage's read methods (and the ids get_items is asked for)."""

    def __init__(self, storage: Storage) -> None:
        self.counts: Counter[str] = Counter()
        self.fetched: list[list[str]] = []
        for name in METHODS:
            setattr(storage, name, self._counting(name, getattr(storage, name)))

    def _counting(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            if name == "get_items":
                self.fetched.append(list(args[0]))
            return await method(*args, **kwargs)

        return counted

    def reset(self) -> None:
        self.counts.clear()
        self.fetched.clear()


def _settings(user: str = "alice", half_life: float = 0.0) -> SessionBuddySettings:
    return SessionBuddySettings(
        user=user, search=SearchSettings(candidates=200, decay_half_life_days=half_life)
    )


def _memory(duckdb_store: Storage, settings: SessionBuddySettings) -> MemoryService:
    return MemoryService(
        duckdb_store, NoEmbeddings(dimension=384), settings, Visibility(duckdb_store, settings)
    )


async def test_team_search_reads_storage_a_bounded_number_of_times(duckdb_store: Storage) -> None:
    """Team search over N shared candidates, most of them voted on, costs the same few
    storage calls for N = 20 and N = 120: votes are read once for all candidates."""
    settings = _settings()
    memory = _memory(duckdb_store, settings)
    teams = TeamService(duckdb_store, memory, settings)
    teams.allow_user_override = True
    await teams.create_team("core", members=["bob", "carol"])
    calls = Calls(duckdb_store)
    per_size: dict[int, Counter[str]] = {}
    shared = 0
    for size in (20, 120):
        stored = await memory.store(
            [
                ItemInput(content=f"webhook retry backoff note {shared + n}", kind="reflection")
                for n in range(size - shared)
            ]
        )
        for n, s in enumerate(stored):
            await teams.share_reflection(s.id, "core")
            await teams.vote_on_reflection(s.id, 1 if n % 3 else -1, user="bob")
            if n % 2:
                await teams.vote_on_reflection(s.id, 1, user="carol")
        shared = size
        calls.reset()
        found = await teams.search_team_knowledge("webhook retry", "core", limit=10)
        assert len(found.hits) == 10 and found.shared_items == size
        assert all(h.team is not None and h.team.votes_up + h.team.votes_down for h in found.hits)
        per_size[size] = Counter(calls.counts)
    assert per_size[20] == per_size[120]
    assert sum(per_size[120].values()) <= 6, per_size[120]
    assert per_size[120]["get_items"] == 1 and len(calls.fetched[0]) == 10  # the page only


async def test_decay_and_access_fetch_no_item_but_the_page(duckdb_store: Storage) -> None:
    """With time decay on and another user's items among the candidates, the only item
    fetch of a search is its page: decay reads each hit's created_at, access is a filter."""
    now = datetime.now(UTC)
    settings = _settings(half_life=30)
    memory = _memory(duckdb_store, settings)
    for user in ("alice", "bob"):
        with acting_as(user):
            await memory.store(
                [
                    ItemInput(
                        content=f"cache TTL note {n} by {user}",
                        kind="reflection",
                        created_at=now - timedelta(days=10 * n),
                    )
                    for n in range(40)
                ]
            )
    calls = Calls(duckdb_store)
    with acting_as("alice"):
        found = await memory.search("cache TTL note", mode="keyword", limit=3)
    assert calls.fetched == [[h.id for h in found.hits]] and len(found.hits) == 3
    assert [h.content for h in found.hits] == [f"cache TTL note {n} by alice" for n in range(3)]
    assert found.has_more
    # the decayed scores: 0.5 ** (age / 30 days), relative to the newest hit's
    first, second, third = (h.score for h in found.hits)
    assert second / first == pytest.approx(0.5 ** (10 / 30), rel=1e-3)
    assert third / first == pytest.approx(0.5 ** (20 / 30), rel=1e-3)
