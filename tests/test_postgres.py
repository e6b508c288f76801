"""What only the PostgreSQL backend has: several services on one database, server-side
dedup under concurrency, connection and schema errors, settings, migrate (DuckDB <->
PostgreSQL). The protocol itself is covered for every backend in test_storage.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from session_buddy.adapters.storage._base import ItemFilter, NewItem, Record
from session_buddy.errors import StorageError
from tests.pg_support import drop_schemas, needs_pg, pg_dsn, schema_for

pytestmark = needs_pg
DIM = 8


@pytest.fixture(autouse=True)
async def pg_cleanup() -> Any:
    yield
    await drop_schemas()


def vec(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def pg(tmp_path: Path, name: str = "", **kw: Any) -> Any:
    from session_buddy.adapters.storage.postgres import Storage

    kw.setdefault("dimension", DIM)
    kw.setdefault("pool_max_size", 4)
    return Storage(kw.pop("dsn", None) or pg_dsn(), schema=schema_for(tmp_path, name), **kw)


async def test_two_services_see_each_others_writes_at_once(tmp_path: Path) -> None:
    a, b = pg(tmp_path), pg(tmp_path)
    await a.initialize()
    await b.initialize()
    try:
        (r,) = await a.add_items(
            [NewItem(kind="reflection", content="Use ERR_CONN_4021 retries", embedding=vec(1))]
        )
        assert [h.id for h in await b.keyword_search("ERR_CONN_4021", ItemFilter(), 5)] == [r.id]
        assert (await b.vector_search(vec(1), ItemFilter(), 1))[0].id == r.id
        await b.update_item(r.id, tags=["from-b"])
        (got,) = await a.get_items([r.id])
        assert got.tags == ["from-b"]
        await b.put_record(Record(collection="sessions", id="s1", data={"by": "b"}))
        assert (await a.get_record("sessions", "s1")) is not None
        await a.set_meta("embedding_model", "m")
        assert await b.get_meta("embedding_model") == "m"
        assert await b.delete_items([r.id]) == 1
        assert await a.count_items() == 0
        assert await a.keyword_search("ERR_CONN_4021", ItemFilter(), 5) == []
    finally:
        await a.close()
        await b.close()


async def test_modify_record_across_services_loses_no_update(tmp_path: Path) -> None:
    """Two services (two pools) change one record at once, 40 times: no update is lost,
    including the race to create it."""
    a, b = pg(tmp_path), pg(tmp_path)
    await a.initialize()
    await b.initialize()
    try:

        def add(n: int) -> Any:
            def change(current: Record | None) -> Record:
                members = current.data["members"] if current else []
                return Record(collection="teams", id="t", data={"members": [*members, n]})

            return change

        await asyncio.gather(
            *(([a, b][n % 2]).modify_record("teams", "t", add(n)) for n in range(40))
        )
        got = await a.get_record("teams", "t")
        assert got is not None and sorted(got.data["members"]) == list(range(40))
    finally:
        await a.close()
        await b.close()


async def test_items_stay_their_writers_across_machines(tmp_path: Path) -> None:
    """Two installs (users alice and bob, as on two machines) share one schema. What alice's
    install stores without an author, or captures automatically, is hers: bob's install
    neither finds it nor may change it; each sees their own."""
    from session_buddy.adapters.embeddings.none import Embeddings as NoEmbeddings
    from session_buddy.core.memory import ItemInput, MemoryService
    from session_buddy.core.teams import TeamService
    from session_buddy.errors import NotFound
    from session_buddy.settings import load_settings

    installs = {}
    for user in ("alice", "bob"):
        store = pg(tmp_path)
        await store.initialize()
        settings = load_settings(user=user).settings
        memory = MemoryService(store, NoEmbeddings(dimension=DIM), settings)
        TeamService(store, memory, settings)  # sets the access rule, as di.configure does
        installs[user] = memory
    alice, bob = installs["alice"], installs["bob"]
    try:
        mine = await alice.store(
            [
                ItemInput(content="alice's ledger migration plan", kind="reflection"),
                ItemInput(
                    content="Insight: ledger rows need idempotency keys",
                    kind="insight",
                    author="claude-code",
                    metadata={"insight_hash": "h"},
                ),
            ]
        )
        (bobs,) = await bob.store([ItemInput(content="bob's ledger notes", kind="reflection")])
        got = {i.id: i for i in await alice.storage.get_items([m.id for m in mine])}
        assert [got[m.id].author for m in mine] == ["alice", "alice"]
        assert got[mine[1].id].metadata["source"] == "claude-code"
        assert {h.id for h in (await bob.search("ledger", mode="keyword")).hits} == {bobs.id}
        assert {h.id for h in (await alice.search("ledger", mode="keyword")).hits} == {
            m.id for m in mine
        }
        with pytest.raises(NotFound):
            await bob.get(mine[1].id)
    finally:
        for memory in installs.values():
            await memory.storage.close()


async def test_team_members_added_through_two_services_at_once_are_all_kept(
    tmp_path: Path,
) -> None:
    from session_buddy.adapters.embeddings.none import Embeddings as NoEmbeddings
    from session_buddy.core.memory import MemoryService
    from session_buddy.core.teams import TeamService
    from session_buddy.settings import load_settings

    services = []
    for _ in range(2):
        store = pg(tmp_path)
        await store.initialize()
        settings = load_settings(user="alice").settings
        services.append(
            TeamService(
                store, MemoryService(store, NoEmbeddings(dimension=DIM), settings), settings
            )
        )
    try:
        await services[0].create_team("core")
        await asyncio.gather(
            *(services[n % 2].add_team_member("core", f"member{n}") for n in range(20))
        )
        (team,) = await services[1].list_teams()
        assert sorted(team["members"]) == sorted(["alice", *(f"member{n}" for n in range(20))])
    finally:
        for service in services:
            await service.storage.close()


async def test_concurrent_identical_inserts_give_one_row_and_one_id(tmp_path: Path) -> None:
    a, b = pg(tmp_path), pg(tmp_path)
    await a.initialize()
    await b.initialize()
    try:
        batches = [
            [
                NewItem(kind="conversation", content=f"same turn {i}", project=None, role="user"),
                NewItem(kind="reflection", content=f"same lesson {i}", project="p"),
            ]
            for i in range(25)
        ]

        async def service(store: Any) -> list[str]:
            ids: list[str] = []
            for batch in batches:
                ids += [r.id for r in await store.add_items(batch)]
            return ids

        ids_a, ids_b, ids_a2 = await asyncio.gather(service(a), service(b), service(a))
        assert ids_a == ids_b == ids_a2
        assert await a.count_items() == 50
        again = await b.add_items(batches[0])
        assert not any(r.created for r in again)
        # the same new item from both services at the same moment: one row, one creator
        for i in range(20):
            x = NewItem(kind="reflection", content=f"race {i}", project="p")
            (ra,), (rb,) = await asyncio.gather(a.add_items([x]), b.add_items([x]))
            assert ra.id == rb.id and ra.created != rb.created
        assert await a.count_items() == 70
        # the BM25 statistics kept by the writes agree with the table
        await a.update_item(ids_a[0], content="a longer rewritten turn with more words in it")
        await b.delete_items(ids_a[2:6])
        async with a._con() as con:
            kept = await con.fetchrow("SELECT n, total_len FROM item_stats")
            real = await con.fetchrow("SELECT count(*), sum(doc_len) FROM items")
        assert tuple(kept) == tuple(real)
    finally:
        await a.close()
        await b.close()


async def test_unreachable_server_is_a_clear_error() -> None:
    from session_buddy.adapters.storage.postgres import Storage

    store = Storage(
        "postgresql://someone:secret@127.0.0.1:1/nowhere", dimension=DIM, connect_timeout_s=2
    )
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL") as info:
        await store.initialize()
    assert "secret" not in str(info.value) and "storage.dsn" in str(info.value)
    with pytest.raises(StorageError, match="initialize"):
        await store.count_items()


async def test_wrong_password_and_password_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.parse

    from session_buddy.adapters.storage.postgres import Storage
    from session_buddy.settings import load_settings

    url = urllib.parse.urlsplit(pg_dsn())
    bare = url._replace(netloc=f"{url.username}@{url.hostname}:{url.port}").geturl()
    monkeypatch.setenv("MY_PG_PW", "wrong")
    settings = load_settings(
        adapters={"storage": "postgres"},
        storage={"dsn": bare, "password_env": "MY_PG_PW", "pg_schema": schema_for(tmp_path)},
        embeddings={"dimension": DIM},
    ).settings
    with pytest.raises(StorageError, match="refused the login") as info:
        await Storage.from_settings(settings).initialize()
    assert "MY_PG_PW" not in str(info.value) or "wrong" not in str(info.value)
    monkeypatch.setenv("MY_PG_PW", urllib.parse.unquote(url.password or ""))
    store = Storage.from_settings(settings)
    await store.initialize()
    try:
        assert await store.count_items() == 0
    finally:
        await store.close()


async def test_config_masks_the_password() -> None:
    from session_buddy.settings import explain, load_settings

    loaded = load_settings(storage={"dsn": "postgresql://u:hunter2@db:5432/sb?sslmode=require"})
    rows = {r["key"]: r["value"] for r in explain(loaded)}
    assert rows["storage.dsn"] == "postgresql://u:********@db:5432/sb?sslmode=require"
    assert rows["storage.password_env"] == "SESSION_BUDDY_PG_PASSWORD"  # a name, not a secret
    loaded = load_settings(storage={"dsn": "host=db user=u password=hunter2 sslmode=require"})
    assert "hunter2" not in json.dumps(explain(loaded))


async def _postings_disagreement(store: Any) -> list[Any]:
    """Rows where the postings table and the items' own term vectors differ (none expected)."""
    async with store._con() as con:
        return list(
            await con.fetch(
                "(SELECT u.lexeme, i.seq, coalesce(cardinality(u.positions), 1)::smallint, "
                "i.doc_len FROM items i CROSS JOIN LATERAL unnest(i.terms) u "
                "EXCEPT ALL SELECT lexeme, seq, tf, doc_len FROM postings) UNION ALL "
                "(SELECT lexeme, seq, tf, doc_len FROM postings EXCEPT ALL "
                "SELECT u.lexeme, i.seq, coalesce(cardinality(u.positions), 1)::smallint, "
                "i.doc_len FROM items i CROSS JOIN LATERAL unnest(i.terms) u)"
            )
        )


async def test_postings_follow_every_write_and_concurrent_services(tmp_path: Path) -> None:
    a, b = pg(tmp_path), pg(tmp_path)
    await a.initialize()
    await b.initialize()
    try:
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]

        async def writer(store: Any, n: int) -> None:
            for k in range(8):
                added = await store.add_items(
                    [
                        NewItem(kind="reflection", content=f"{words[(n + j) % 6]} item {n} {k} {j}")
                        for j in range(5)
                    ]
                )
                await store.update_item(added[0].id, content=f"rewritten {n} {k} alpha alpha")
                await store.delete_items([added[1].id])

        await asyncio.gather(*(writer(s, n) for n, s in enumerate([a, b, a, b])))
        sources = await a.get_items(
            [h.id for h in await a.keyword_search("gamma", ItemFilter(), 3)]
        )
        copies = [(replace(x, id=str(uuid.uuid4()), project="copy"), None) for x in sources]
        assert await b.import_items(copies) == 3
        assert await _postings_disagreement(a) == []
        assert await a.count_items() == 4 * 8 * 4 + 3
        hits = await b.keyword_search("rewritten", ItemFilter(), 100)
        assert len(hits) == 32
    finally:
        await a.close()
        await b.close()


async def test_version_1_store_gets_its_postings_on_upgrade(tmp_path: Path) -> None:
    from session_buddy.adapters.storage import postgres

    store = pg(tmp_path)
    saved = postgres.MIGRATIONS
    postgres.MIGRATIONS = saved[:1]
    try:
        await store.initialize()
        # a row as version 1 stored it (today's add_items expects today's indexes)
        terms, length = postgres.terms_tsvector("Keep ERR_CONN_4021")
        async with store._con(transaction=True) as con:
            await con.execute(
                "INSERT INTO items (id, kind, content, content_hash, created_at, updated_at, "
                "terms, doc_len) VALUES ('r1', 'reflection', 'Keep ERR_CONN_4021', 'h', now(), "
                "now(), $1::tsvector, $2)",
                terms,
                length,
            )
            await con.execute("UPDATE item_stats SET n = 1, total_len = $1", length)
        await store.close()
    finally:
        postgres.MIGRATIONS = saved
    upgraded = pg(tmp_path)
    await upgraded.initialize()
    try:
        async with upgraded._con() as con:
            versions = [v[0] for v in await con.fetch("SELECT version FROM schema_version")]
        assert sorted(versions) == [step.version for step in postgres.MIGRATIONS]
        assert await _postings_disagreement(upgraded) == []
        assert [h.id for h in await upgraded.keyword_search("ERR_CONN_4021", ItemFilter(), 5)] == [
            "r1"
        ]
        # add_items works on the upgraded store (its ON CONFLICT needs version 2's dedup index)
        (again,) = await upgraded.add_items(
            [NewItem(kind="reflection", content="Keep ERR_CONN_4021", author="alice")]
        )
        assert again.created
    finally:
        await upgraded.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import asyncpg

    store = pg(tmp_path)
    await store.initialize()
    await store.close()
    con = await asyncpg.connect(pg_dsn())
    try:
        await con.execute(
            f'INSERT INTO "{store.schema}".schema_version VALUES (999, $1, now())', "future"
        )
    finally:
        await con.close()
    with pytest.raises(StorageError, match=r"schema version 999.*Upgrade session-buddy"):
        await pg(tmp_path).initialize()


async def test_missing_vector_extension_is_a_clear_error(tmp_path: Path) -> None:
    """A database without pgvector, and a user who may not create it."""
    import urllib.parse

    import asyncpg

    suffix = uuid.uuid4().hex[:10]
    role, db, password = f"sb_user_{suffix}", f"sb_novec_{suffix}", uuid.uuid4().hex
    admin = await asyncpg.connect(pg_dsn())
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE DATABASE {db} OWNER {role}")
        url = urllib.parse.urlsplit(pg_dsn())
        dsn = url._replace(netloc=f"{role}:{password}@{url.hostname}:{url.port}", path=f"/{db}")
        from session_buddy.adapters.storage.postgres import Storage

        with pytest.raises(StorageError, match="no 'vector' extension") as info:
            await Storage(dsn.geturl(), dimension=DIM).initialize()
        assert "CREATE EXTENSION vector" in str(info.value)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def _has_vector_index(store: Any) -> bool:
    async with store._con() as con:
        return bool(
            await con.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND "
                "indexname = 'items_vector'",
                store.schema,
            )
        )


async def test_ivfflat_index_setting(tmp_path: Path) -> None:
    store = pg(tmp_path, vector_index="ivfflat", ivfflat_lists=4)
    await store.initialize()
    try:
        assert not await _has_vector_index(store)  # never trained on an empty store
        assert (await store.stats()).vector_search == (
            "exact: ivfflat waits for 40 vectors (0 now) and a restart"
        )
        rng = np.random.default_rng(3)
        await store.add_items(
            [
                NewItem(
                    kind="reflection",
                    content=f"note {i}",
                    project="p" if i % 10 == 0 else "q",
                    embedding=rng.standard_normal(DIM).astype(np.float32),
                )
                for i in range(300)
            ]
        )
    finally:
        await store.close()
    store = pg(tmp_path, vector_index="ivfflat", ivfflat_lists=4)
    await store.initialize()  # 300 vectors: enough for 4 lists
    try:
        assert await _has_vector_index(store)
        assert (await store.stats()).vector_search == "ivfflat (4 lists, 10 probes)"
        # a filtered search still fills its limit (pgvector's iterative scan)
        hits = await store.vector_search(vec(1), ItemFilter(projects=["p"]), 10)
        assert len(hits) == 10
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    finally:
        await store.close()
    # back to exact search: the index is dropped
    store = pg(tmp_path)
    await store.initialize()
    try:
        assert not await _has_vector_index(store)
        assert (await store.stats()).vector_search == "exact"
    finally:
        await store.close()


# -- migrate ---------------------------------------------------------------------------------


async def _fill_duckdb(path: Path) -> dict[str, str]:
    from session_buddy.adapters.storage.duckdb import Storage

    store = Storage(path, dimension=DIM)
    await store.initialize()
    rng = np.random.default_rng(7)
    try:
        results = await store.add_items(
            [
                NewItem(
                    kind=("conversation", "reflection", "insight")[i % 3],
                    content=f"item {i}: ERR_CONN_{i} 'quoted' 😀 {'x' * (i % 50)}",
                    project=None if i % 4 == 0 else f"p{i % 3}",
                    session_id=f"s{i % 5}",
                    role="user" if i % 3 == 0 else None,
                    tags=["t", f"t{i % 2}"],
                    metadata={"i": i, "nested": {"f": 0.5, "u": "é"}},
                    embedding=None if i % 7 == 0 else rng.standard_normal(DIM).astype(np.float32),
                )
                for i in range(230)
            ]
        )
        for i in range(12):
            await store.put_record(
                Record(collection="sessions" if i % 2 else "quality", id=f"r{i}", data={"n": i})
            )
        await store.set_meta("embedding_model", "test-model")
        await store.set_meta("embedding_dimension", str(DIM))
        return {"first": results[1].id}
    finally:
        await store.close()


async def test_migrate_duckdb_to_postgres_to_duckdb_round_trip(tmp_path: Path) -> None:
    from session_buddy.adapters.storage.duckdb import Storage as Duck
    from session_buddy.core.migrate import digest, run_migration
    from session_buddy.settings import load_settings

    src = tmp_path / "a.duckdb"
    ids = await _fill_duckdb(src)
    schema = schema_for(tmp_path, "migrate")
    settings = load_settings(storage={"pg_schema": schema}).settings
    report = await run_migration(f"duckdb:{src}", f"postgres:{pg_dsn()}", settings, batch=64)
    assert report.verified and report.items == 230 and report.records == 12
    assert report.items_copied == 230 and not report.resumed

    back = tmp_path / "b.duckdb"
    report2 = await run_migration(f"postgres:{pg_dsn()}", f"duckdb:{back}", settings, batch=100)
    assert report2.digest == report.digest

    a, b = Duck(src, dimension=DIM), Duck(back, dimension=DIM)
    await a.initialize()
    await b.initialize()
    try:
        da, db = await digest(a), await digest(b)
        assert da == db and da.embedded == 230 - 33
        assert await b.get_meta("embedding_model") == "test-model"
        # the copy is a working store: search, dedup by the same ids
        assert (await b.keyword_search("ERR_CONN_1", ItemFilter(), 3))[0].id == ids["first"]
        (got,) = await a.get_items([ids["first"]])
        (dup,) = await b.add_items(
            [NewItem(kind=got.kind, content=got.content, project=got.project)]
        )
        assert dup.id == ids["first"] and not dup.created
    finally:
        await a.close()
        await b.close()

    # the postgres copy is a working store too
    pgs = pg(tmp_path, "migrate")
    await pgs.initialize()
    try:
        assert (await pgs.keyword_search("ERR_CONN_1", ItemFilter(), 3))[0].id == ids["first"]
        # a non-empty target is refused
        with pytest.raises(StorageError, match="not empty"):
            await run_migration(f"duckdb:{src}", f"postgres:{pg_dsn()}", settings)
    finally:
        await pgs.close()


async def test_interrupted_migration_resumes(tmp_path: Path) -> None:
    from session_buddy.core.migrate import MARKER, run_migration
    from session_buddy.settings import load_settings

    src = tmp_path / "a.duckdb"
    await _fill_duckdb(src)
    settings = load_settings(storage={"pg_schema": schema_for(tmp_path, "resume")}).settings
    target = f"postgres:{pg_dsn()}"

    class Boom(Exception):
        pass

    def interrupt(table: str, done: int, total: int) -> None:
        if table == "items" and done >= 100:
            raise Boom

    with pytest.raises(Boom):
        await run_migration(f"duckdb:{src}", target, settings, batch=50, progress=interrupt)
    store = pg(tmp_path, "resume")
    await store.initialize()
    try:
        assert await store.count_items() == 100
        assert json.loads(await store.get_meta(MARKER) or "{}")["item"]
    finally:
        await store.close()
    # another source may not continue it
    other = tmp_path / "other.duckdb"
    await _fill_duckdb(other)
    with pytest.raises(StorageError, match="unfinished migration"):
        await run_migration(f"duckdb:{other}", target, settings)
    report = await run_migration(f"duckdb:{src}", target, settings, batch=50)
    assert report.resumed and report.verified
    assert report.items == 230 and report.items_copied == 130


async def test_sslmode_is_honoured(tmp_path: Path) -> None:
    """The test server has no TLS: sslmode=require must refuse it, disable must work."""
    with pytest.raises(StorageError, match="cannot connect"):
        await pg(tmp_path, dsn=pg_dsn() + "?sslmode=require", connect_timeout_s=5).initialize()
    with pytest.raises(StorageError, match="cannot connect"):
        await pg(tmp_path, sslmode="require", connect_timeout_s=5).initialize()
    store = pg(tmp_path, sslmode="disable")
    await store.initialize()
    await store.close()
