"""The graph storage's walks and details on every backend (memory and DuckDB walk an
in-process adjacency, PostgreSQL a recursive query): bounded by depth, limit and fan-out,
cycle-safe, and the adjacency kept equal to the tables through every write."""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from session_buddy.adapters.storage._graph import Entity, Mention, Relation, entity_id
from tests.pg_support import drop_schemas, schema_for
from tests.test_storage import _params, make_storage

BACKENDS = _params(["memory", "duckdb", "postgres"])
OWNER = "u"


def eid(name: str) -> str:
    return entity_id("p", OWNER, name)


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = make_storage(request.param, tmp_path)
    await drop_schemas()  # PostgreSQL: a schema a crashed run left behind (one per folder)
    schema_for(tmp_path)  # registered again, to be dropped afterwards
    await store.initialize()
    yield store
    await store.close()
    await drop_schemas()


async def add(storage: Any, names: list[str], edges: list[tuple[str, str]]) -> None:
    await storage.graph.add_entities([Entity(n, "symbol", OWNER, "p") for n in names])
    await storage.graph.add_relations([Relation(eid(a), eid(b), "uses") for a, b in edges])


def expected_walk(
    edges: set[tuple[str, str]], seed: str, depth: int, limit: int, fanout: int | None = None
) -> list[tuple[str, int]]:
    """Breadth first over ids in Python: the specification the backends must meet."""
    near: dict[str, set[str]] = {}
    for a, b in edges:
        near.setdefault(a, set()).add(b)
        near.setdefault(b, set()).add(a)
    distance = {seed: 0}
    queue = deque([seed])
    while queue:
        i = queue.popleft()
        if distance[i] == depth:
            continue
        step = sorted(near.get(i, ()))[:fanout] if fanout is not None else near.get(i, ())
        for n in step:
            if n not in distance:
                distance[n] = distance[i] + 1
                queue.append(n)
    return sorted(distance.items(), key=lambda kv: (kv[1], kv[0]))[:limit]


async def fresh(storage: Any, *args: Any) -> list[tuple[str, int]]:
    """The walk again with the adjacency read from the tables (PostgreSQL: the same query)."""
    if storage.graph.adjacency is not None:
        storage.graph.adjacency.forget()
    return list(await storage.graph.walk(*args))


async def test_walk_is_bounded_by_depth_and_limit_and_cycle_safe(storage: Any) -> None:
    # a cycle a -> b -> c -> a, a tail c -> d -> e, and f alone
    await add(storage, list("abcdef"), [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")])
    g = storage.graph
    assert await g.walk([eid("a")], 0, 10) == [(eid("a"), 0)]
    one = dict(await g.walk([eid("a")], 1, 10))
    assert one == {eid("a"): 0, eid("b"): 1, eid("c"): 1}  # both directions
    three = dict(await g.walk([eid("a")], 3, 10))
    assert three == {eid("a"): 0, eid("b"): 1, eid("c"): 1, eid("d"): 2, eid("e"): 3}
    # the cycle is reached once, at its smallest distance, however deep the walk
    assert dict(await g.walk([eid("b")], 3, 100)) == {
        eid("b"): 0,
        eid("a"): 1,
        eid("c"): 1,
        eid("d"): 2,
        eid("e"): 3,
    }
    # the limit keeps the nearest, then the smallest ids
    full = await g.walk([eid("a")], 3, 100)
    assert full == sorted(full, key=lambda kv: (kv[1], kv[0]))
    assert await g.walk([eid("a")], 3, 2) == full[:2]
    assert await g.walk([eid("f")], 2, 10) == [(eid("f"), 0)]
    assert await g.walk([], 2, 10) == []


async def test_fanout_caps_each_step_so_a_hub_does_not_flood_the_walk(storage: Any) -> None:
    leaves = [f"leaf{i}" for i in range(40)]
    edges = [("hub", x) for x in leaves] + [("leaf0", "far")]
    await add(storage, ["hub", *leaves, "far"], edges)
    g = storage.graph
    ids = {(eid(a), eid(b)) for a, b in edges}
    capped = await g.walk([eid("hub")], 1, 1000, 5)
    assert len(capped) == 6
    assert capped == expected_walk(ids, eid("hub"), 1, 1000, 5)
    assert {i for i, _ in capped[1:]} == set(sorted(eid(x) for x in leaves)[:5])
    assert len(await g.walk([eid("hub")], 1, 1000)) == 41  # no cap: every leaf
    # from a leaf: the hub at 1, at most 5 of the hub's neighbours at 2
    for leaf in ("leaf0", "leaf7"):
        walked = await g.walk([eid(leaf)], 2, 1000, 5)
        assert walked == expected_walk(ids, eid(leaf), 2, 1000, 5)
        assert sum(1 for _, d in walked if d == 2) <= 5


async def test_the_adjacency_follows_every_write(storage: Any) -> None:
    rng = random.Random(3)
    names = [f"n{i}" for i in range(30)]
    edges = {(rng.choice(names), rng.choice(names)) for _ in range(60)}
    await add(storage, names, sorted(edges))
    g = storage.graph
    ids = {(eid(a), eid(b)) for a, b in edges}
    assert await g.walk([eid("n0")], 3, 1000) == expected_walk(ids, eid("n0"), 3, 1000)
    # writes after the adjacency was read: added, deleted relations, deleted entities
    added = [(rng.choice(names), rng.choice(names)) for _ in range(10)]
    await g.add_relations([Relation(eid(a), eid(b), "calls") for a, b in added])
    gone = sorted(edges)[:15]
    await g.delete_relations([Relation(eid(a), eid(b), "uses") for a, b in gone])
    assert await g.delete_entities([eid("n1"), eid("n2")]) == 2
    await g.link(
        [Entity("late", "symbol", OWNER, "p")], [], [Relation(eid("n0"), eid("late"), "uses")]
    )
    uses = edges - set(gone)
    ids = {(eid(a), eid(b)) for a, b in uses | set(added) | {("n0", "late")}}
    ids = {(a, b) for a, b in ids if not {a, b} & {eid("n1"), eid("n2")}}
    for seed in ("n0", "n3", "n5", "late"):
        live = await g.walk([eid(seed)], 3, 1000)
        assert live == expected_walk(ids, eid(seed), 3, 1000)
        assert live == await fresh(storage, [eid(seed)], 3, 1000)
    every = [eid(n) for n in [*names, "late"]]
    live_relations = set(await g.relations_of(every))
    assert {(r.source, r.target) for r in live_relations} == ids
    # the deleted entities are gone from the lookups the adjacency answers too
    assert await g.find_entities(OWNER, ["n1", "n2", "n3"], None) == await g.get_entities(
        [eid("n3")]
    )
    assert [e.name for e in await g.get_entities([eid("n2"), eid("late")])] == ["late"]


async def test_details_of_a_walk_in_one_batch(storage: Any) -> None:
    g = storage.graph
    await g.add_entities(
        [
            Entity("a", "symbol", OWNER, "p", ["first", "second"]),
            Entity("b", "file", OWNER, "p"),
            Entity("c", "symbol", OWNER, "p"),
        ]
    )
    await g.add_relations(
        [Relation(eid("a"), eid("b"), "defined_in"), Relation(eid("b"), eid("c"), "uses")]
    )
    await g.add_mentions([Mention("i2", eid("b"), 5, 6), Mention("i1", eid("a"), 0, 1)])
    details = await g.details([eid("b"), eid("a"), "missing"], 10)
    assert [e.name for e in details.entities] == ["b", "a"]
    assert sorted(details.entities[1].observations) == ["first", "second"]
    assert details.relations == [Relation(eid("a"), eid("b"), "defined_in")]  # among them only
    assert details.mentions == [Mention("i1", eid("a"), 0, 1), Mention("i2", eid("b"), 5, 6)]
    assert len((await g.details([eid("a"), eid("b")], 1)).mentions) == 1


async def test_an_import_is_seen_by_the_next_walk(storage: Any) -> None:
    g = storage.graph
    await add(storage, ["a", "b"], [("a", "b")])
    assert len(await g.walk([eid("a")], 1, 10)) == 2  # the adjacency is read
    rows = await g.export_rows("graph_entities", None, 10)
    new = ("c-id", "c", "symbol", "p", OWNER, rows[0][5], rows[0][6])
    await g.import_rows("graph_entities", [new])
    await g.import_rows("graph_relations", [(eid("a"), "c-id", "uses", rows[0][5])])
    assert dict(await g.walk([eid("a")], 1, 10)) == {eid("a"): 0, eid("b"): 1, "c-id": 1}
    assert [e.name for e in await g.find_entities(OWNER, ["c"], ["p"])] == ["c"]


async def mentions_both_ways(storage: Any, ids: list[str]) -> tuple[list[Mention], dict[str, int]]:
    """The mentions of ``ids`` (all of them) and their counts, checked equal to a fresh read
    of the tables (the adjacency read again; PostgreSQL: the same query)."""
    g = storage.graph
    live = (await g.mentions_of(ids, 10_000), await g.mention_counts(ids))
    if g.adjacency is not None:
        g.adjacency.forget()
        assert live == (await g.mentions_of(ids, 10_000), await g.mention_counts(ids))
    return live


async def test_the_adjacency_follows_every_mention_write(storage: Any) -> None:
    from session_buddy.adapters.storage._base import NewItem

    g = storage.graph
    names = ["a", "b", "c", "d"]
    await add(storage, names, [("a", "b")])
    ids = [eid(n) for n in names]
    stored = await storage.add_items(
        [NewItem(kind="reflection", content=f"note {i} a b c", author=OWNER) for i in range(4)]
    )
    i0, i1, i2, i3 = (s.id for s in stored)
    assert await mentions_both_ways(storage, ids) == ([], {})  # the adjacency is read
    # written after the read: by link, by add_mentions (a repeated key is no new row)
    await g.link([Entity("e", "symbol", OWNER, "p")], [Mention(i0, eid("e"), 0, 4)], [])
    await g.link([], [Mention(i0, eid("a"), 5, 6), Mention(i1, eid("a"), 0, 1)], [])
    assert await g.add_mentions([Mention(i1, eid("a"), 0, 1), Mention(i1, eid("b"), 2, 3)]) == 1
    await g.add_mentions([Mention(i2, eid("c"), 7, 8), Mention(i3, eid("c"), 0, 1)])
    await g.add_mentions([Mention(i2, eid("d"), 0, 1), Mention(i2, eid("a"), 9, 10)])
    ids.append(eid("e"))
    expected = sorted(
        [
            Mention(i0, eid("e"), 0, 4),
            Mention(i0, eid("a"), 5, 6),
            Mention(i1, eid("a"), 0, 1),
            Mention(i1, eid("b"), 2, 3),
            Mention(i2, eid("c"), 7, 8),
            Mention(i3, eid("c"), 0, 1),
            Mention(i2, eid("d"), 0, 1),
            Mention(i2, eid("a"), 9, 10),
        ],
        key=lambda m: (m.item_id, m.start, m.entity_id),
    )
    live, counts = await mentions_both_ways(storage, ids)
    assert live == expected
    assert counts == {eid("a"): 3, eid("b"): 1, eid("c"): 2, eid("d"): 1, eid("e"): 1}
    assert await g.mentions_of([eid("c")], 10) == [m for m in expected if m.entity_id == eid("c")]
    assert len(await g.mentions_of(ids, 3)) == 3
    details = await g.details([eid("a"), eid("b")], 10)
    assert details.mentions == [m for m in expected if m.entity_id in (eid("a"), eid("b"))]
    # deleted: an item's mentions, an entity (with its mentions), an item of the store
    assert await g.delete_mentions([i1]) == 2
    assert await g.delete_entities([eid("d")]) == 1
    assert await storage.delete_items([i2]) == 1
    kept = [m for m in expected if m.item_id not in (i1, i2)]
    live, counts = await mentions_both_ways(storage, ids)
    assert live == kept
    assert counts == {eid("a"): 1, eid("c"): 1, eid("e"): 1}
    assert await g.mentions_in([i0, i2]) == [m for m in kept if m.item_id == i0]
    # a bulk import of mentions is seen by the next read
    await g.import_rows("graph_mentions", [(i3, eid("b"), 4, 5)])
    live, counts = await mentions_both_ways(storage, ids)
    assert Mention(i3, eid("b"), 4, 5) in live
    assert counts[eid("b")] == 1


async def test_observations_are_found_after_every_write(storage: Any) -> None:
    """The adjacency counts each entity's observations (only those with any are looked up):
    every write keeps the lookups equal to a fresh read of the tables."""
    g = storage.graph
    await g.add_entities(
        [Entity("a", "symbol", OWNER, "p", ["one"]), Entity("b", "file", OWNER, "p")]
    )
    ids = [eid("a"), eid("b"), eid("c")]

    async def observations() -> dict[str, list[str]]:
        live = {e.name: sorted(e.observations) for e in await g.get_entities(ids)}
        if g.adjacency is not None:
            g.adjacency.forget()
            fresh = {e.name: sorted(e.observations) for e in await g.get_entities(ids)}
            assert live == fresh
        return live

    assert await observations() == {"a": ["one"], "b": []}  # the adjacency is read
    await g.add_entities([Entity("c", "symbol", OWNER, "p", ["three"])])
    assert await g.add_observations([(eid("b"), "two"), (eid("a"), "one"), (eid("a"), "1b")]) == [
        (eid("b"), "two"),
        (eid("a"), "1b"),
    ]
    assert await observations() == {"a": ["1b", "one"], "b": ["two"], "c": ["three"]}
    assert await g.delete_observations([(eid("a"), "one"), (eid("a"), "1b"), (eid("c"), "x")]) == 2
    assert await observations() == {"a": [], "b": ["two"], "c": ["three"]}
    details = await g.details(ids, 0)
    assert [e.observations for e in details.entities] == [[], ["two"], ["three"]]
    assert await g.delete_entities([eid("c")]) == 1
    await g.add_entities([Entity("c", "symbol", OWNER, "p")])  # again, without observations
    assert await observations() == {"a": [], "b": ["two"], "c": []}
    rows = await g.export_rows("graph_observations", None, 10)
    await g.import_rows("graph_observations", [(eid("a"), "h-late", "late", rows[0][3])])
    assert (await observations())["a"] == ["late"]
