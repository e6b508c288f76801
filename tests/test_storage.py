"""The storage protocol, run against every backend through one fixture (``storage``).

Backends: memory, duckdb and postgres (a real server: see tests/pg_support.py; each
postgres test gets its own schema, dropped afterwards). Tests marked ``persistent`` need a
backend whose data outlives the Storage object.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from session_buddy.adapters.storage._base import (
    Access,
    ItemFilter,
    NewItem,
    Record,
    StorageBase,
)
from session_buddy.adapters.storage._cipher import Cipher
from session_buddy.errors import DimensionMismatch, NotFound, StorageError, ValidationError
from tests.pg_support import PG_ENABLED, drop_schemas, needs_pg, pg_dsn, schema_for

BACKENDS = ["memory", "duckdb", "postgres"]
#: the protocol tests run on encrypted stores too (storage.encryption: aes-gcm)
SEALED = ["duckdb+aes", "postgres+aes"]
PERSISTENT = ["duckdb", "postgres"]
#: the backends a test that loops over them runs (postgres only when it can run)
ENABLED = [b for b in BACKENDS if b != "postgres" or PG_ENABLED]
DIM = 8
LIMIT = 64 * 1024


def make_storage(backend: str, tmp_path: Path, *, max_bytes: int = LIMIT) -> StorageBase:
    backend, _, sealed = backend.partition("+")
    key = Cipher(b"k" * 32) if sealed else None
    if backend == "memory":
        from session_buddy.adapters.storage.memory import Storage as MemoryStorage

        return MemoryStorage(dimension=DIM, max_content_bytes=max_bytes)
    if backend == "duckdb":
        from session_buddy.adapters.storage.duckdb import Storage as DuckStorage

        return DuckStorage(
            tmp_path / "db" / "memory.duckdb", dimension=DIM, max_content_bytes=max_bytes, key=key
        )
    if backend == "postgres":
        from session_buddy.adapters.storage.postgres import Storage as PgStorage

        return PgStorage(
            pg_dsn(),
            schema=schema_for(tmp_path),
            dimension=DIM,
            max_content_bytes=max_bytes,
            pool_max_size=4,
            key=key,
        )
    raise AssertionError(backend)


def _params(backends: list[str]) -> list[Any]:
    return [pytest.param(b, marks=needs_pg) if b.startswith("postgres") else b for b in backends]


@pytest.fixture(autouse=True)
async def pg_cleanup() -> Any:
    yield
    await drop_schemas()


@pytest.fixture(params=_params(BACKENDS + SEALED))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = make_storage(request.param, tmp_path)
    await store.initialize()
    yield store
    await store.close()


@pytest.fixture(params=_params(PERSISTENT))
def backend_path(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    return request.param, tmp_path


def vec(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def item(content: str, **kw: Any) -> NewItem:
    kw.setdefault("kind", "reflection")
    return NewItem(content=content, **kw)


# -- dedup -----------------------------------------------------------------------------------


async def test_dedup_is_per_author(storage: StorageBase) -> None:
    """On a shared store, one person's copy of a text is not another's item."""
    a1, b1, a2 = await storage.add_items(
        [
            item("Pasted: ERR_CONN_4021 at login", project="p", author="alice"),
            item("Pasted: ERR_CONN_4021 at login", project="p", author="bob"),
            item("Pasted:  ERR_CONN_4021 at login", project="p", author="alice"),
        ]
    )
    assert a1.created and b1.created and a1.id != b1.id
    assert a2.id == a1.id and not a2.created
    (again,) = await storage.add_items(
        [item("Pasted: ERR_CONN_4021 at login", project="p", author="bob")]
    )
    assert again.id == b1.id and not again.created
    # editing bob's note into alice's text is fine; into another of his own is refused
    (other,) = await storage.add_items([item("bob's other note", project="p", author="bob")])
    with pytest.raises(ValidationError, match="identical"):
        await storage.update_item(other.id, content="Pasted: ERR_CONN_4021 at login")
    await storage.delete_items([b1.id])
    updated = await storage.update_item(other.id, content="Pasted: ERR_CONN_4021 at login")
    assert updated.author == "bob"
    assert await storage.count_items() == 2


async def test_ids_with_prefix_resolve_short_ids(storage: StorageBase) -> None:
    """A short id (the start of an id, as compact answers show it) finds its item; a prefix
    is matched literally (no LIKE wildcards), and one too short or of other characters is
    refused."""
    added = await storage.add_items([item(f"note {n}", project="p") for n in range(20)])
    for a in added[:5]:
        assert await storage.ids_with_prefix(a.id[:8]) == [a.id]
        assert await storage.ids_with_prefix(a.id) == [a.id]
    every = sorted(a.id for a in added)
    start = every[0][:4]
    assert await storage.ids_with_prefix(start, limit=50) == [
        i for i in every if i.startswith(start)
    ]
    assert await storage.ids_with_prefix("ffffffff-0000") == []
    for bad in ("ab", "abcd%", "abcd_", "ab' OR '1"):
        with pytest.raises(ValidationError):
            await storage.ids_with_prefix(bad)


async def test_exact_duplicates_return_the_existing_id(storage: StorageBase) -> None:
    (first,) = await storage.add_items([item("Use  uv\tfor installs", project="p")])
    assert first.created
    (again,) = await storage.add_items([item("Use uv for installs ", project="p")])
    assert again.id == first.id and not again.created
    # another project, another kind, or no project: a different item
    other = await storage.add_items(
        [
            item("Use uv for installs", project="q"),
            item("Use uv for installs", project="p", kind="conversation", role="user"),
            item("Use uv for installs"),
        ]
    )
    assert all(r.created for r in other)
    assert len({r.id for r in other} | {first.id}) == 4
    # NULL project counts as a value for dedup
    (none_again,) = await storage.add_items([item("Use uv for installs")])
    assert none_again.id == other[2].id and not none_again.created
    assert await storage.count_items() == 4


async def test_duplicates_within_one_batch(storage: StorageBase) -> None:
    results = await storage.add_items([item("same text"), item("other"), item("same  text")])
    assert results[0].created and results[1].created and not results[2].created
    assert results[2].id == results[0].id
    assert await storage.count_items() == 2


# -- content ---------------------------------------------------------------------------------

TRICKY = [
    "'; DROP TABLE reflections; --",
    'Robert"); DELETE FROM items WHERE ("1"="1',
    "emoji 😀🎉 and CJK 漢字 and RTL שלום",
    "control \x01\x1b[31m and \t tabs \r\n crlf",
    "  leading and trailing spaces kept  ",
    "$1 ? %s :name {0} \\N \\x00",
]


async def test_tricky_content_round_trips_exactly(storage: StorageBase) -> None:
    results = await storage.add_items([item(text) for text in TRICKY])
    got = await storage.get_items([r.id for r in results])
    assert [g.content for g in got] == TRICKY


async def test_large_content_round_trips_and_limit_is_enforced(tmp_path: Path) -> None:
    for backend in ENABLED:
        store = make_storage(backend, tmp_path / backend, max_bytes=2 * 1024 * 1024)
        await store.initialize()
        try:
            big = ("a line of text with words 😀\n" * 40_000)[: 1024 * 1024]
            (r,) = await store.add_items([item(big)])
            (got,) = await store.get_items([r.id])
            assert got.content == big
            with pytest.raises(ValidationError, match=r"storage\.max_content_bytes"):
                await store.add_items([item("x" * (2 * 1024 * 1024 + 1))])
        finally:
            await store.close()


async def test_lone_surrogates_are_refused(storage: StorageBase) -> None:
    with pytest.raises(ValidationError, match="surrogate"):
        await storage.add_items([item("bad \ud800 text")])
    assert await storage.count_items() == 0


async def test_nul_is_refused_everywhere(storage: StorageBase) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        await storage.add_items([item("a\x00b")])
    with pytest.raises(ValidationError, match="NUL"):
        await storage.add_items([item("ok", metadata={"k": "a\x00b"})])
    assert await storage.count_items() == 0


async def test_invalid_kind_role_and_metadata_are_refused(storage: StorageBase) -> None:
    with pytest.raises(ValidationError, match="kind"):
        await storage.add_items([item("x", kind="note")])
    with pytest.raises(ValidationError, match="role"):
        await storage.add_items([item("x", kind="conversation", role="robot")])
    with pytest.raises(ValidationError, match="JSON"):
        await storage.add_items([item("x", metadata={"when": datetime.now(UTC)})])


async def test_metadata_tags_and_times_round_trip(storage: StorageBase) -> None:
    when = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    md = {"dia_id": "D1:3", "n": 1.5, "nested": {"list": [1, "two", None, True]}, "é": "ü"}
    (r,) = await storage.add_items(
        [
            item(
                "hello",
                kind="conversation",
                role="assistant",
                project="proj",
                session_id="s1",
                metadata=md,
                created_at=when,
                tags=["a", "b"],
                author="me",
            )
        ]
    )
    (got,) = await storage.get_items([r.id])
    assert got.metadata == md
    assert got.created_at == when
    assert (got.kind, got.role, got.project, got.session_id, got.author) == (
        "conversation",
        "assistant",
        "proj",
        "s1",
        "me",
    )
    assert got.tags == ["a", "b"]
    assert not got.has_embedding


async def test_wrong_vector_dimension_is_refused(storage: StorageBase) -> None:
    with pytest.raises(DimensionMismatch):
        await storage.add_items([item("x", embedding=np.ones(DIM + 1, dtype=np.float32))])


# -- search and filters ----------------------------------------------------------------------


async def _corpus(storage: StorageBase) -> dict[str, str]:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    specs = [
        (
            "a",
            "The login failed with ERR_CONN_4021 on the staging server",
            "p1",
            "conversation",
            "user",
            ["bug"],
            0,
            vec(1, 0),
        ),
        (
            "b",
            "We decided to use DuckDB for local storage",
            "p1",
            "reflection",
            None,
            ["decision"],
            1,
            vec(0, 1),
        ),
        (
            "c",
            "Connection errors come from the Redis pool",
            "p2",
            "reflection",
            None,
            ["bug", "redis"],
            2,
            vec(1, 0.2),
        ),
        (
            "d",
            "Deploy with kubernetes and helm charts",
            "p2",
            "conversation",
            "assistant",
            [],
            3,
            vec(0, 0, 1),
        ),
        (
            "e",
            "Insight: parse_errors in src/api/routes.py hides the HttpServerError",
            None,
            "insight",
            None,
            ["bug"],
            4,
            None,
        ),
    ]
    ids: dict[str, str] = {}
    for name, text, project, kind, role, tags, day, v in specs:
        (r,) = await storage.add_items(
            [
                item(
                    text,
                    project=project,
                    kind=kind,
                    role=role,
                    tags=tags,
                    session_id="s-" + (project or "none"),
                    created_at=base + timedelta(days=day),
                    embedding=v,
                )
            ]
        )
        ids[name] = r.id
    return ids


async def test_keyword_search_sees_new_items_and_identifiers(storage: StorageBase) -> None:
    ids = await _corpus(storage)
    hits = await storage.keyword_search("ERR_CONN_4021", ItemFilter(), 10)
    assert hits[0].id == ids["a"]
    assert [h.id for h in await storage.keyword_search("conn", ItemFilter(), 10)] == [ids["a"]]
    assert (await storage.keyword_search("routes.py", ItemFilter(), 10))[0].id == ids["e"]
    assert (await storage.keyword_search("http server error", ItemFilter(), 10))[0].id == ids["e"]
    assert (await storage.keyword_search("parse errors", ItemFilter(), 10))[0].id == ids["e"]
    assert (await storage.keyword_search("deploying", ItemFilter(), 10))[0].id == ids["d"]
    assert await storage.keyword_search("the and of", ItemFilter(), 10) == []
    (r,) = await storage.add_items([item("brand new zanzibar fact")])
    assert [h.id for h in await storage.keyword_search("zanzibar", ItemFilter(), 10)] == [r.id]


async def test_keyword_ranking_is_identical_on_every_backend(tmp_path: Path) -> None:
    """A skewed vocabulary (some words in most items, some in a few), then updates and
    deletes: every backend returns the same hits with the same BM25 scores in the same order,
    with and without each kind of filter (PostgreSQL: postings plan and narrow plan)."""
    import random

    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(60)]
    weights = [1 / (i + 1) for i in range(60)]  # Zipf: w0 is in most items
    base = datetime(2024, 1, 1, tzinfo=UTC)
    texts = [
        " ".join(rng.choices(vocab, weights, k=rng.randint(3, 30))) + f" note{n}"
        for n in range(300)
    ]
    queries = [
        "w0 w1",
        "w0 w7 w33",
        "w2 w2 w50",
        "w59 w58",
        "w3 note17",
        "w1 w4 w9 w16 w25",
        # a mid-frequency term with common ones: its items need not be the best
        "w12 w1 w2 w3",
        "w8 w0 w1 w2 w3 w4",
    ]
    results: dict[str, list[list[tuple[str, float]]]] = {}
    for backend in ENABLED:
        store = make_storage(backend, tmp_path / backend)
        await store.initialize()
        try:
            added = await store.add_items(
                [
                    item(
                        t,
                        kind=("conversation", "reflection", "insight")[n % 3],
                        project=f"p{n % 4}",
                        session_id=f"s{n % 10}",
                        created_at=base + timedelta(hours=n),
                    )
                    for n, t in enumerate(texts)
                ]
            )
            ids = [a.id for a in added]
            content = {a.id: t for a, t in zip(added, texts, strict=True)}
            for n in range(0, 300, 7):  # rewrite some: their postings follow
                new = texts[(n * 13) % 300].replace("w0", "w5") + f" changed{n}"
                await store.update_item(ids[n], content=new)
                content[ids[n]] = new
            await store.delete_items(ids[1:300:11])
            filters = [
                ItemFilter(),
                ItemFilter(projects=["p1", "p3"]),
                ItemFilter(kinds=["insight"]),
                ItemFilter(after=base + timedelta(hours=50), before=base + timedelta(hours=200)),
                ItemFilter(projects=["p2"], kinds=["conversation"]),
                ItemFilter(session_id="s4"),
                ItemFilter(ids=set(ids[::5])),
            ]
            got = []
            for q in queries:
                for flt in filters:
                    hits = await store.keyword_search(q, flt, 25)
                    got.append([(content[h.id], h.score) for h in hits])
            results[backend] = got
        finally:
            await store.close()
    reference = results["memory"]
    assert all(reference), "every query finds something"
    for backend, got in results.items():
        for i, (mine, theirs) in enumerate(zip(got, reference, strict=True)):
            where = (backend, queries[i // 7], i % 7)
            # the in-process index computes in float32: near-ties may swap, and the last
            # places may be a different member of a tie; everything above them must agree
            assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], rel=1e-5), where
            if theirs:
                cut = theirs[-1][1] * (1 + 1e-5)
                assert {c: pytest.approx(s, rel=1e-5) for c, s in theirs if s > cut} == {
                    c: s for c, s in mine if s > cut
                }, where


async def test_filters_apply_inside_both_rankers(storage: StorageBase) -> None:
    ids = await _corpus(storage)
    q = vec(1, 0)

    async def both(flt: ItemFilter) -> tuple[set[str], set[str]]:
        kw = {h.id for h in await storage.keyword_search("errors bug connection login", flt, 50)}
        vs = {h.id for h in await storage.vector_search(q, flt, 50)}
        return kw, vs

    kw, vs = await both(ItemFilter(projects=["p2"]))
    assert kw == {ids["c"]} and vs == {ids["c"], ids["d"]}
    kw, vs = await both(ItemFilter(kinds=["conversation"]))
    assert vs == {ids["a"], ids["d"]}
    _, vs = await both(ItemFilter(role="assistant"))
    assert vs == {ids["d"]}
    _, vs = await both(ItemFilter(session_id="s-p1"))
    assert vs == {ids["a"], ids["b"]}
    base = datetime(2024, 1, 1, tzinfo=UTC)
    _, vs = await both(ItemFilter(after=base + timedelta(days=1), before=base + timedelta(days=3)))
    assert vs == {ids["b"], ids["c"]}
    _, vs = await both(ItemFilter(tags=["bug", "redis"]))
    assert vs == {ids["c"]}
    _, vs = await both(ItemFilter(ids={ids["a"], ids["b"]}))
    assert vs == {ids["a"], ids["b"]}
    _, vs = await both(ItemFilter(projects=["nope"]))
    assert vs == set()
    # exact under a filter: top-1 within the project, not a post-filtered global top-1
    (top,) = await storage.vector_search(q, ItemFilter(projects=["p2"]), 1)
    assert top.id == ids["c"]
    # list/count agree with the filters
    flt = ItemFilter(tags=["bug"])
    listed = await storage.list_items(flt, limit=10)
    assert [i.id for i in listed] == [ids["e"], ids["c"], ids["a"]]
    assert [i.id for i in await storage.list_items(flt, newest_first=False, limit=2)] == [
        ids["a"],
        ids["c"],
    ]
    assert [i.id for i in await storage.list_items(flt, limit=1, offset=1)] == [ids["c"]]
    assert await storage.count_items(flt) == 3
    assert await storage.count_items(ItemFilter(kinds=["insight"])) == 1


async def _authored(storage: StorageBase) -> dict[str, str]:
    """Four ledger items: alice's, bob's, one without an author, carol's (project q)."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    specs = [
        ("alice", "ledger ledger totals", "p", "reflection", vec(1, 0)),
        ("bob", "ledger note by bob", "p", "insight", vec(1, 0.1)),
        (None, "ledger without an author", None, "conversation", vec(1, 0.2)),
        ("carol", "ledger shared by carol", "q", "reflection", vec(1, 0.3)),
    ]
    added = await storage.add_items(
        [
            item(
                text,
                author=who,
                project=project,
                kind=kind,
                created_at=base + timedelta(n),
                embedding=v,
            )
            for n, (who, text, project, kind, v) in enumerate(specs)
        ]
    )
    return {who or "none": a.id for (who, *_), a in zip(specs, added, strict=True)}


async def test_access_applies_inside_both_rankers(storage: StorageBase) -> None:
    """Access (visible authors, shared ids) is a filter of both rankers: exact, combined
    with the item filter, and each hit carries its item's created_at, author, kind, project."""
    ids = await _authored(storage)
    q = vec(1, 0)

    async def both(access: Access | None, flt: ItemFilter | None = None) -> tuple[set[str], ...]:
        kw = await storage.keyword_search("ledger", flt or ItemFilter(), 10, access)
        vs = await storage.vector_search(q, flt or ItemFilter(), 10, access)
        return {h.id for h in kw}, {h.id for h in vs}

    alice = Access(frozenset({"alice"}), frozenset({ids["carol"]}))
    assert await both(alice) == ({ids["alice"], ids["carol"]},) * 2
    local = Access(frozenset({"bob", None}))
    assert await both(local) == ({ids["bob"], ids["none"]},) * 2
    assert (
        await both(Access(frozenset({"alice", "bob"})), ItemFilter(projects=["p"]))
        == ({ids["alice"], ids["bob"]},) * 2
    )
    assert await both(Access(frozenset())) == (set(), set())
    assert await both(None) == (set(ids.values()),) * 2
    everyone = Access(frozenset({"alice", "bob", "carol", None}))
    assert await both(everyone) == (set(ids.values()),) * 2
    # exact: the best visible item, not a post-filtered global top-1
    (top,) = await storage.vector_search(q, ItemFilter(), 1, Access(frozenset({"carol"})))
    assert top.id == ids["carol"]
    items = {i.id: i for i in await storage.get_items(list(ids.values()))}
    hits = await storage.keyword_search("ledger", ItemFilter(), 10) + await storage.vector_search(
        q, ItemFilter(), 10
    )
    assert len(hits) == 8
    for h in hits:
        stored = items[h.id]
        assert (h.created_at, h.author, h.kind, h.project) == (
            stored.created_at,
            stored.author,
            stored.kind,
            stored.project,
        )


async def test_access_as_a_filter_of_listing_and_counting(storage: StorageBase) -> None:
    """``ItemFilter.access`` restricts list_items and count_items like any other condition
    (pages stay full, counts agree with them), combined with the rest of the filter."""
    ids = await _authored(storage)

    async def listed(access: Access, **conditions: Any) -> tuple[set[str], int]:
        flt = ItemFilter(access=access, **conditions)
        return {i.id for i in await storage.list_items(flt, limit=50)}, await storage.count_items(
            flt
        )

    alice = Access(frozenset({"alice"}), frozenset({ids["carol"]}))
    assert await listed(alice) == ({ids["alice"], ids["carol"]}, 2)
    assert await listed(Access(frozenset({"bob", None}))) == ({ids["bob"], ids["none"]}, 2)
    assert await listed(Access(frozenset({"alice", "bob"})), projects=["p"]) == (
        {ids["alice"], ids["bob"]},
        2,
    )
    assert await listed(Access(frozenset())) == (set(), 0)
    page = await storage.list_items(ItemFilter(access=alice), limit=1)
    assert len(page) == 1 and page[0].id in {ids["alice"], ids["carol"]}


async def test_access_finds_own_items_behind_many_of_others(storage: StorageBase) -> None:
    """The best keyword hits all belong to someone else: the rankers still return the best
    visible ones, in order (PostgreSQL: deeper rankings, then the rule as a filter)."""
    mine = await storage.add_items(
        [item("ledger note", author="alice"), item("ledger and other words here", author="alice")]
    )
    alice = Access(frozenset({"alice"}))
    for others in (30, 100):
        await storage.add_items(
            [
                item(f"ledger ledger ledger reconciliation {others} {n}", author="bob")
                for n in range(others)
            ]
        )
        for limit in (1, 5):
            hits = await storage.keyword_search("ledger", ItemFilter(), limit, alice)
            assert [h.id for h in hits] == [a.id for a in mine][:limit], (others, limit)
            assert all(h.author == "alice" for h in hits)
    assert await storage.keyword_search("ledger", ItemFilter(), 5, Access(frozenset())) == []


async def test_vector_search_ranks_by_cosine(storage: StorageBase) -> None:
    ids = await _corpus(storage)
    hits = await storage.vector_search(vec(1, 0), ItemFilter(), 3)
    assert [h.id for h in hits[:2]] == [ids["a"], ids["c"]]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    # the item without a vector is never returned by the vector ranker
    assert ids["e"] not in {h.id for h in await storage.vector_search(vec(1), ItemFilter(), 10)}


async def test_update_and_delete_keep_both_indexes_consistent(storage: StorageBase) -> None:
    ids = await _corpus(storage)
    updated = await storage.update_item(
        ids["a"], content="Completely rewritten about penguins", embedding=vec(0, 0, 0, 1)
    )
    assert updated.content == "Completely rewritten about penguins" and updated.has_embedding
    assert await storage.keyword_search("ERR_CONN_4021", ItemFilter(), 10) == []
    assert [h.id for h in await storage.keyword_search("penguins", ItemFilter(), 10)] == [ids["a"]]
    assert (await storage.vector_search(vec(0, 0, 0, 1), ItemFilter(), 1))[0].id == ids["a"]
    # tags only: filters follow
    await storage.update_item(ids["b"], tags=["changed"])
    assert {
        h.id for h in await storage.vector_search(vec(0, 1), ItemFilter(tags=["changed"]), 5)
    } == {ids["b"]}
    assert await storage.vector_search(vec(0, 1), ItemFilter(tags=["decision"]), 5) == []
    # content without a vector: the old vector is gone
    await storage.update_item(ids["c"], content="Redis pool notes, no vector now")
    assert ids["c"] not in {
        h.id for h in await storage.vector_search(vec(1, 0.2), ItemFilter(), 10)
    }
    # delete
    assert await storage.delete_items([ids["d"], "unknown"]) == 1
    assert await storage.keyword_search("kubernetes", ItemFilter(), 10) == []
    assert ids["d"] not in {
        h.id for h in await storage.vector_search(vec(0, 0, 1), ItemFilter(), 10)
    }
    assert await storage.get_items([ids["d"]]) == []
    assert await storage.count_items() == 4
    # a deleted item's content can be stored again (dedup forgets it)
    (again,) = await storage.add_items(
        [
            item(
                "Deploy with kubernetes and helm charts",
                project="p2",
                kind="conversation",
                role="assistant",
            )
        ]
    )
    assert again.created
    with pytest.raises(NotFound):
        await storage.update_item("missing", tags=[])
    # an update may not create an exact duplicate
    (temp,) = await storage.add_items([item("temporary", project="p1")])
    with pytest.raises(ValidationError, match="identical"):
        await storage.update_item(temp.id, content="We decided to use DuckDB for local storage")


#: update_item calls and what every backend answers: "ok" or the error's type. One rule for
#: all (validate_update); before it, memory and DuckDB took oversized or NUL tags, a tuple
#: or a string as tags, and memory said NotFound where the others refused the input.
UPDATE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("tags", {"tags": ["a", "b"]}, "ok"),
    ("tag of 1024 bytes", {"tags": ["é" * 512]}, "ok"),
    ("tag over 1024 bytes", {"tags": ["x" * 1025]}, "ValidationError"),
    ("tag with NUL", {"tags": ["a\x00b"]}, "ValidationError"),
    ("tag not a string", {"tags": ["a", 1]}, "ValidationError"),
    ("tags as a tuple", {"tags": ("a",)}, "ValidationError"),
    ("tags as a string", {"tags": "abc"}, "ValidationError"),
    ("blank content", {"content": "  \n "}, "ValidationError"),
    ("content over the limit", {"content": "x" * (LIMIT + 1)}, "ValidationError"),
    ("content with a lone surrogate", {"content": "bad \ud800"}, "ValidationError"),
    ("content not text", {"content": 5}, "ValidationError"),
    ("metadata not JSON", {"metadata": {"when": datetime(2024, 1, 1)}}, "ValidationError"),
    ("metadata not an object", {"metadata": [1, 2]}, "ValidationError"),
    ("metadata with NUL", {"metadata": {"k": "a\x00"}}, "ValidationError"),
    ("vector of the wrong size", {"embedding": np.ones(DIM + 1, np.float32)}, "DimensionMismatch"),
    ("content identical to another item", {"content": "the other note"}, "ValidationError"),
    ("metadata", {"metadata": {"n": 1}}, "ok"),
    ("content and vector", {"content": "the new text", "embedding": vec(1, 2)}, "ok"),
    ("vector only", {"embedding": vec(0, 1)}, "ok"),
    ("unknown id", {"item_id": "missing", "tags": []}, "NotFound"),
    ("unknown id and bad tags", {"item_id": "missing", "tags": [1]}, "ValidationError"),
]


async def test_update_item_accepts_and_refuses_the_same_inputs_everywhere(
    storage: StorageBase,
) -> None:
    (target, _) = await storage.add_items(
        [item("the note", project="p"), item("the other note", project="p")]
    )
    answers: dict[str, str] = {}
    for name, call, _expected in UPDATE_CASES:
        kwargs = dict(call)
        try:
            await storage.update_item(kwargs.pop("item_id", target.id), **kwargs)
        except (ValidationError, NotFound, DimensionMismatch) as exc:
            answers[name] = type(exc).__name__
        else:
            answers[name] = "ok"
    assert answers == {name: expected for name, _, expected in UPDATE_CASES}
    # what was refused changed nothing; what was accepted is all there
    (got,) = await storage.get_items([target.id])
    assert (got.content, got.tags, got.metadata, got.has_embedding) == (
        "the new text",
        ["é" * 512],
        {"n": 1},
        True,
    )
    hits = await storage.vector_search(vec(0, 1), ItemFilter(), 1)
    assert [h.id for h in hits] == [target.id]
    assert [h.id for h in await storage.keyword_search("new", ItemFilter(), 5)] == [target.id]


async def test_records_and_meta_are_checked_alike(storage: StorageBase) -> None:
    refused = [
        Record(collection="c", id="x" * 4097, data={}),
        Record(collection="c\x00", id="1", data={}),
        Record(collection="c", id="1", data={}, project="p\ud800"),
        Record(collection="c", id="1", data={"when": datetime(2024, 1, 1)}),
    ]
    for record in refused:
        with pytest.raises(ValidationError):
            await storage.put_record(record)
    assert await storage.list_records("c") == []
    for key, value in [("k" * 4097, "v"), ("k", "v\x00"), ("k", "v" * ((1 << 20) + 1))]:
        with pytest.raises(ValidationError):
            await storage.set_meta(key, value)
    assert await storage.get_meta("k") is None


FRUIT = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach"]


async def test_many_deletes_compact_the_index(storage: StorageBase) -> None:
    rng = np.random.default_rng(1)
    results = await storage.add_items(
        [
            item(
                f"note number {i} about {FRUIT[i % 7]}",
                embedding=rng.standard_normal(DIM).astype(np.float32),
            )
            for i in range(3000)
        ]
    )
    keep = {r.id for r in results[::3]}
    await storage.delete_items([r.id for r in results if r.id not in keep])
    assert await storage.count_items() == len(keep)
    hits = await storage.keyword_search("grapes", ItemFilter(), 5000)
    assert hits and {h.id for h in hits} <= keep
    assert len(hits) == sum(1 for i in range(0, 3000, 3) if i % 7 == 3)
    vhits = await storage.vector_search(vec(1), ItemFilter(), 5000)
    assert {h.id for h in vhits} == keep


# -- meta, records, stats --------------------------------------------------------------------


async def test_meta_and_stats(storage: StorageBase) -> None:
    assert await storage.get_meta("embedding_model") is None
    await storage.set_meta("embedding_model", "m1")
    await storage.set_meta("embedding_model", "m2")
    assert await storage.get_meta("embedding_model") == "m2"
    await _corpus(storage)
    stats = await storage.stats()
    assert stats.items == 5 and stats.embedded == 4
    assert stats.by_kind == {"conversation": 2, "reflection": 2, "insight": 1}
    assert stats.by_project == {"p1": 2, "p2": 2, "": 1}
    assert stats.embedding_model == "m2"


async def test_stats_count_in_one_scan_and_ping_reads_one_row(
    backend_path: tuple[str, Path],
) -> None:
    """The stats of a store of several kinds and projects (some items without a project or
    a vector, some deleted) are those of the three counting queries they replace and of the
    memory backend holding the same items; they take one statement over ``items`` (none on
    DuckDB: its index counts), and the health check's ping one that reads a row at most."""
    from session_buddy.adapters.storage._base import KINDS

    backend, tmp_path = backend_path
    store = make_storage(backend, tmp_path)
    memory = make_storage("memory", tmp_path)
    rng = np.random.default_rng(3)
    items = [
        item(
            f"note {i} about topic {i % 13}",
            kind=KINDS[i % len(KINDS)],
            project=None if i % 5 == 0 else f"p{i % 4}",
            embedding=vec(*rng.standard_normal(DIM)) if i % 3 else None,
        )
        for i in range(240)
    ]
    try:
        for target in (store, memory):
            await target.initialize()
            added = await target.add_items(items)
            await target.delete_items([a.id for a in added[::11]])
        statements: list[str] = []
        fetch = store._fetch  # type: ignore[attr-defined]

        async def recording(sql: str, params: Any = ()) -> Any:
            statements.append(sql)
            return await fetch(sql, params)

        store._fetch = recording  # type: ignore[attr-defined]  # the real query still runs
        stats = await store.stats()
        scans = [sql for sql in statements if "FROM items" in sql]
        statements.clear()
        assert await store.ping() >= 0
        pings = list(statements)
        del store._fetch  # type: ignore[attr-defined]
        old = {
            "kind": await fetch("SELECT kind, count(*) FROM items GROUP BY kind"),
            "project": await fetch("SELECT project, count(*) FROM items GROUP BY project"),
            "embedded": await fetch("SELECT count(*) FROM items WHERE embedding IS NOT NULL"),
        }
        assert stats.by_kind == {str(k): int(n) for k, n in old["kind"]}
        assert stats.by_project == {(p or ""): int(n) for p, n in old["project"]}
        assert stats.embedded == int(old["embedded"][0][0])
        assert len({stats.items, sum(stats.by_project.values()), 240 - 22}) == 1
        assert len(stats.by_kind) == len(KINDS) and "" in stats.by_project
        reference = await memory.stats()
        assert (stats.items, stats.by_kind, stats.by_project, stats.embedded) == (
            reference.items,
            reference.by_kind,
            reference.by_project,
            reference.embedded,
        )
        # DuckDB counts from its index (no scan of the table); PostgreSQL in one statement
        assert len(scans) == (0 if backend == "duckdb" else 1), scans
        assert pings == ["SELECT 1 FROM items LIMIT 1"], pings
    finally:
        await store.close()
        await memory.close()


async def test_modify_record_loses_no_update(storage: StorageBase) -> None:
    """Concurrent read-change-writes of one record (a counter and a list), the first of
    them creating it: every change lands."""

    def bump(n: int) -> Any:
        def change(current: Record | None) -> Record:
            data = current.data if current else {"count": 0, "seen": []}
            return Record(
                collection="counters",
                id="c",
                data={"count": data["count"] + 1, "seen": [*data["seen"], n]},
            )

        return change

    await asyncio.gather(*(storage.modify_record("counters", "c", bump(n)) for n in range(25)))
    got = await storage.get_record("counters", "c")
    assert got is not None and got.data["count"] == 25
    assert sorted(got.data["seen"]) == list(range(25))
    # None writes nothing and returns the record as it is; an error aborts the change
    assert (await storage.modify_record("counters", "c", lambda r: None)) == got

    def refuse(current: Record | None) -> Record:
        raise ValidationError("taken")

    with pytest.raises(ValidationError, match="taken"):
        await storage.modify_record("counters", "c", refuse)
    assert await storage.modify_record("counters", "absent", lambda r: None) is None
    with pytest.raises(ValueError, match="was given a record of"):
        await storage.modify_record(
            "counters", "x", lambda r: Record(collection="counters", id="y", data={})
        )
    assert await storage.get_record("counters", "x") is None


async def test_records_api(storage: StorageBase) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    for i in range(4):
        await storage.put_record(
            Record(
                collection="sessions",
                id=f"s{i}",
                data={"n": i, "text": "'; DROP TABLE records; -- 😀"},
                project="p" if i % 2 else "q",
                status="open" if i < 2 else "closed",
                created_at=t0 + timedelta(hours=i),
                updated_at=t0 + timedelta(hours=i),
            )
        )
    await storage.put_record(Record(collection="other", id="s0", data={"x": 1}))
    got = await storage.get_record("sessions", "s1")
    assert (
        got is not None
        and got.data["n"] == 1
        and got.project == "p"
        and got.created_at == t0 + timedelta(hours=1)
    )
    assert [r.id for r in await storage.list_records("sessions")] == ["s3", "s2", "s1", "s0"]
    assert [r.id for r in await storage.list_records("sessions", newest_first=False, limit=2)] == [
        "s0",
        "s1",
    ]
    assert [r.id for r in await storage.list_records("sessions", project="p")] == ["s3", "s1"]
    assert [r.id for r in await storage.list_records("sessions", status="open")] == ["s1", "s0"]
    assert [r.id for r in await storage.list_records("sessions", limit=1, offset=1)] == ["s2"]
    # replace
    await storage.put_record(
        Record(collection="sessions", id="s1", data={"n": 99}, status="closed", created_at=t0)
    )
    got = await storage.get_record("sessions", "s1")
    assert got is not None and got.data == {"n": 99} and got.status == "closed"
    assert await storage.delete_record("sessions", "s1")
    assert not await storage.delete_record("sessions", "s1")
    assert await storage.get_record("sessions", "s1") is None
    assert (await storage.get_record("other", "s0")) is not None


# -- persistence -----------------------------------------------------------------------------


async def test_restart_keeps_items_vectors_and_keyword_index(
    backend_path: tuple[str, Path],
) -> None:
    backend, tmp_path = backend_path
    store = make_storage(backend, tmp_path)
    await store.initialize()
    ids = await _corpus(store)
    await store.update_item(ids["b"], tags=["kept"])
    await store.delete_items([ids["d"]])
    await store.put_record(Record(collection="c", id="r", data={"a": 1}))
    await store.set_meta("embedding_model", "m")
    await store.close()
    await store.close()  # idempotent

    store = make_storage(backend, tmp_path)
    await store.initialize()
    try:
        assert await store.count_items() == 4
        assert (await store.keyword_search("ERR_CONN_4021", ItemFilter(), 5))[0].id == ids["a"]
        assert await store.keyword_search("kubernetes", ItemFilter(), 5) == []
        top = await store.vector_search(vec(1, 0), ItemFilter(), 2)
        assert [h.id for h in top] == [ids["a"], ids["c"]]
        assert [
            h.id for h in await store.vector_search(vec(0, 1), ItemFilter(tags=["kept"]), 5)
        ] == [ids["b"]]
        # the authors are loaded with the index: access still filters after a restart
        mine = await store.keyword_search("ERR_CONN_4021", ItemFilter(), 5, Access(frozenset()))
        assert mine == []
        (hit,) = await store.keyword_search(
            "ERR_CONN_4021", ItemFilter(), 5, Access(frozenset({None}))
        )
        assert hit.id == ids["a"] and hit.author is None and hit.kind == "conversation"
        assert (await store.get_record("c", "r")) is not None
        assert await store.get_meta("embedding_model") == "m"
        (dup,) = await store.add_items(
            [item("We decided to use DuckDB for local storage", project="p1")]
        )
        assert dup.id == ids["b"] and not dup.created
    finally:
        await store.close()


async def test_migration_from_empty_file_and_reopen(tmp_path: Path) -> None:
    import duckdb

    from session_buddy.adapters.storage.duckdb import SCHEMA_VERSION, Storage

    empty = tmp_path / "empty.duckdb"
    empty.touch()
    store = Storage(empty, dimension=DIM)
    await store.initialize()
    await store.add_items([item("first")])
    await store.close()
    path = tmp_path / "nested" / "folder" / "m.duckdb"
    store = Storage(path, dimension=DIM)
    assert not path.parent.exists()  # nothing created at construction
    await store.initialize()
    await store.initialize()  # idempotent
    await store.close()
    for _ in range(2):
        await store.initialize()
        await store.close()
    con = duckdb.connect(str(path))
    versions = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    con.close()
    assert [v[0] for v in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert {"conversations", "reflections", "records", "meta", "schema_version", "items"} <= tables


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import duckdb

    from session_buddy.adapters.storage.duckdb import Storage

    path = tmp_path / "m.duckdb"
    store = Storage(path, dimension=DIM)
    await store.initialize()
    await store.close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (999, 'future', now())")
    con.close()
    with pytest.raises(StorageError, match="schema version 999"):
        await Storage(path, dimension=DIM).initialize()


async def test_closed_storage_says_so(tmp_path: Path) -> None:
    from session_buddy.adapters.storage.duckdb import Storage

    store = Storage(tmp_path / "m.duckdb", dimension=DIM)
    with pytest.raises(StorageError, match="initialize"):
        await store.count_items()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from session_buddy.adapters.storage.duckdb import Storage
    from session_buddy.adapters.storage._base import NewItem

    async def main():
        store = Storage(sys.argv[1], dimension=8)
        await store.initialize()
        i = 0
        while True:
            await store.add_items([NewItem(kind="conversation", content=f"durable item {i}",
                                           embedding=np.ones(8, dtype=np.float32) / 8 ** 0.5)])
            print(i, flush=True)  # acknowledged
            i += 1

    asyncio.run(main())
    """
)


async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    from session_buddy.adapters.storage.duckdb import Storage

    path = tmp_path / "k.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = -1
    try:
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 40:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert acknowledged >= 40
    store = Storage(path, dimension=8)
    await store.initialize()
    try:
        count = await store.count_items()
        assert count >= acknowledged + 1
        hits = await store.keyword_search(f"durable item {acknowledged}", ItemFilter(), 1)
        assert hits
        assert store.index.embedded == count
    finally:
        await store.close()


async def test_concurrent_writes_and_searches(storage: StorageBase) -> None:
    async def writer(n: int) -> None:
        for i in range(20):
            await storage.add_items([item(f"writer {n} wrote line {i}", embedding=vec(1, n, i))])

    async def reader() -> None:
        for _ in range(20):
            await storage.keyword_search("writer line", ItemFilter(), 10)
            await storage.vector_search(vec(1), ItemFilter(), 10)

    await asyncio.gather(*(writer(n) for n in range(3)), reader(), reader())
    assert await storage.count_items() == 60


# -- changes in order (sync) ------------------------------------------------------------------


async def test_changed_items_and_records_in_update_order(storage: StorageBase) -> None:
    from datetime import UTC, datetime, timedelta

    results = await storage.add_items(
        [item(f"change {n}", embedding=vec(1.0, float(n))) for n in range(5)]
    )
    ids = [r.id for r in results]
    page = await storage.changed_items(None, 3)
    assert len(page) == 3
    keys = [(x.updated_at, x.id) for x, _ in page]
    assert keys == sorted(keys)
    rest = await storage.changed_items(keys[-1], 10)
    assert {x.id for x, _ in page} | {x.id for x, _ in rest} == set(ids)
    assert len(rest) == 2
    if storage.name != "memory":  # the memory backend keeps no vectors at hand
        assert all(v is not None and v.shape == (DIM,) for _, v in page + rest)
    # an update moves the item after the cursor
    last = (rest[-1][0].updated_at, rest[-1][0].id)
    assert await storage.changed_items(last, 10) == []
    await storage.update_item(page[0][0].id, tags=["changed"])
    [(changed, _)] = await storage.changed_items(last, 10)
    assert changed.id == page[0][0].id and changed.tags == ["changed"]

    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(3):
        moment = base + timedelta(seconds=n)
        await storage.put_record(Record("sessions", f"s{n}", {"n": n}, None, None, moment, moment))
    await storage.put_record(Record("quality", "q", {}, None, None, base, base))
    found = await storage.changed_records("sessions", None, 2)
    assert [r.id for r in found] == ["s0", "s1"]
    after = (found[-1].updated_at, found[-1].id)
    assert [r.id for r in await storage.changed_records("sessions", after, 5)] == ["s2"]
    later = base + timedelta(seconds=10)
    await storage.put_record(Record("sessions", "s0", {"n": 9}, None, None, base, later))
    again = await storage.changed_records("sessions", after, 5)
    assert [r.id for r in again] == ["s2", "s0"]
