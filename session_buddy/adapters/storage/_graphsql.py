"""The graph protocol (:mod:`._graph`) in SQL, written once for DuckDB and PostgreSQL.

Tables (schema steps 3 and 4 of :data:`._sql.STEPS`):

* ``graph_entities`` - id (:func:`~._graph.entity_id`), name, entity_type, project (``''``:
  global), owner, created_at, updated_at;
* ``graph_observations`` - (entity_id, content_hash) key, content, created_at;
* ``graph_relations`` - (source, target, relation_type) key, created_at;
* ``graph_mentions`` - (item_id, entity_id, start_pos) key, end_pos.

Neighbourhoods are one ``WITH RECURSIVE`` query over the relations in both directions: its
rows are ``(entity, distance)`` pairs combined with ``UNION`` (a pair is never produced
twice) and the distance stops at the depth asked, so a cycle cannot make it run on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from session_buddy.adapters.storage._adjacency import Adjacency
from session_buddy.adapters.storage._graph import (
    GRAPH_TABLES,
    Details,
    Entity,
    GraphStore,
    Mention,
    Relation,
    observation_hash,
)
from session_buddy.adapters.storage._sql import Dialect, Params
from session_buddy.errors import ValidationError

Statement = tuple[str, list[Any]]


class SqlHost(Protocol):
    """What the SQL graph needs of its backend."""

    dialect: Dialect

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]: ...

    async def _transaction(self, statements: Sequence[Statement]) -> list[list[Any]]: ...


def graph_schema(d: Dialect) -> list[str]:
    """The statements of schema step 3 on a backend."""
    t = d.text
    return [
        f"CREATE TABLE graph_entities (id {t} PRIMARY KEY, name {t} NOT NULL, "
        f"entity_type {t} NOT NULL, project {t} NOT NULL, owner {t} NOT NULL, "
        "created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE INDEX graph_entities_name ON graph_entities (owner, name)",
        f"CREATE TABLE graph_observations (entity_id {t} NOT NULL, content_hash {t} NOT NULL, "
        f"content {t} NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
        "PRIMARY KEY (entity_id, content_hash))",
        f"CREATE TABLE graph_relations (source {t} NOT NULL, target {t} NOT NULL, "
        f"relation_type {t} NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
        "PRIMARY KEY (source, target, relation_type))",
        "CREATE INDEX graph_relations_target ON graph_relations (target)",
        # DuckDB looks up by the first column of a composite key only with its own index
        *(
            ["CREATE INDEX graph_relations_source ON graph_relations (source)"]
            if d.name == "duckdb"
            else []
        ),
        f"CREATE TABLE graph_mentions (item_id {t} NOT NULL, entity_id {t} NOT NULL, "
        "start_pos INTEGER NOT NULL, end_pos INTEGER NOT NULL, "
        "PRIMARY KEY (item_id, entity_id, start_pos))",
        "CREATE INDEX graph_mentions_entity ON graph_mentions (entity_id)",
    ]


def graph_walk_index(d: Dialect) -> list[str]:
    """The statements of schema step 4: a walk's step by target reads the source from the
    index alone (by source, the key already does); DuckDB walks in process (none)."""
    if d.name == "duckdb":
        return []
    return [
        "CREATE INDEX graph_relations_by_target ON graph_relations (target) "
        "INCLUDE (source, relation_type)",
        "DROP INDEX graph_relations_target",
    ]


#: per table: its columns (times marked) and how many of them are the key
_TABLES: dict[str, tuple[tuple[str, ...], int]] = {
    "graph_entities": (
        ("id", "name", "entity_type", "project", "owner", "@created_at", "@updated_at"),
        1,
    ),
    "graph_observations": (("entity_id", "content_hash", "content", "@created_at"), 2),
    "graph_relations": (("source", "target", "relation_type", "@created_at"), 3),
    "graph_mentions": (("item_id", "entity_id", "start_pos", "end_pos"), 3),
}
_INT_COLUMNS = {"start_pos", "end_pos"}
_LABEL = "lower(name || ' ' || entity_type)"
_ENTITY = "id, name, entity_type, project, owner, {time}"
_MENTION = "item_id, entity_id, start_pos, end_pos"


def _scope(p: Params, projects: Sequence[str | None] | None) -> str:
    if projects is None:
        return ""
    return " AND " + p.dialect.is_any("project", p.add([x or "" for x in projects]))


def _unnest(p: Params, values: list[Any], sql_type: str) -> str:
    return f"unnest({p.add(values)}::{sql_type}[])"


def _mentions(rows: Sequence[Sequence[Any]]) -> list[Mention]:
    """Mention rows ordered by item, then position."""
    found = [Mention(r[0], r[1], int(r[2]), int(r[3])) for r in rows]
    return sorted(found, key=lambda m: (m.item_id, m.start, m.entity_id))


class _SqlReads(GraphStore):
    """The reading half of :class:`SqlGraph`: the host, the adjacency, walks and details."""

    def __init__(self, host: SqlHost, *, adjacency: Adjacency | None = None) -> None:
        self.host = host
        #: the relations in process (DuckDB, memory: see :mod:`._adjacency`), else walks
        #: are one recursive query (PostgreSQL)
        self.adjacency = adjacency

    async def _adjacent(self) -> Adjacency | None:
        """The adjacency, read from the table on first use (again if a write raced it)."""
        a = self.adjacency
        while a is not None and not a.loaded:
            version = a.version
            relations, entities, mentions, noted = await self.host._transaction(
                [
                    ("SELECT source, target, relation_type FROM graph_relations", []),
                    (f"SELECT {self._entity_columns} FROM graph_entities", []),
                    (f"SELECT {_MENTION} FROM graph_mentions", []),
                    ("SELECT entity_id, count(*) FROM graph_observations GROUP BY entity_id", []),
                ]
            )
            rows = [(*r[:5], self.d.read_time(r[5])) for r in entities]
            state = await asyncio.to_thread(a.build, relations, rows, mentions, noted)
            if a.version == version:  # else a write came meanwhile: read again
                a.install(state)
        return a

    @property
    def d(self) -> Dialect:
        return self.host.dialect

    def _entity(self, row: Sequence[Any]) -> Entity:
        return Entity(
            id=row[0],
            name=row[1],
            entity_type=row[2],
            project=row[3] or None,
            owner=row[4],
            created_at=self.d.read_time(row[5]),
        )

    @property
    def _entity_columns(self) -> str:
        return _ENTITY.format(time=self.d.time.format("created_at"))

    def _observations_sql(self, ids: Sequence[str]) -> Statement:
        p = self.d.params()
        return (
            "SELECT entity_id, content FROM graph_observations WHERE "
            f"{self.d.is_any('entity_id', p.add(list(ids)))} ORDER BY created_at, content",
            p.values,
        )

    async def _with_observations(self, entities: list[Entity]) -> list[Entity]:
        ids = [e.id for e in entities]
        if self.adjacency is not None and self.adjacency.loaded:
            ids = self.adjacency.observed(ids)  # only those that have any
        if not ids:
            return entities
        rows = await self.host._fetch(*self._observations_sql(ids))
        by_id = {e.id: e for e in entities}
        for entity_id, content in rows:
            by_id[entity_id].observations.append(content)
        return entities

    # -- walks ---------------------------------------------------------------------------

    async def relations_of(self, ids: Sequence[str], *, among: bool = False) -> list[Relation]:
        if not ids:
            return []
        adjacency = await self._adjacent()
        if adjacency is not None:
            return adjacency.relations_of(ids, among=among)
        return [Relation(*r) for r in await self.host._fetch(*self._relations_sql(ids, among))]

    def _relations_sql(self, ids: Sequence[str], among: bool) -> Statement:
        p = self.d.params()
        unique = list(dict.fromkeys(ids))
        joint = " AND " if among else " OR "
        cond = joint.join(self.d.is_any(c, p.add(unique)) for c in ("source", "target"))
        return (
            "SELECT source, target, relation_type FROM graph_relations WHERE "
            f"{cond} ORDER BY source, relation_type, target",
            p.values,
        )

    def _walk_sql(self, p: Params, seeds: Sequence[str], depth: int, fanout: int | None) -> str:
        """``walk(id, d)``: the recursive query; each step takes at most ``fanout``
        neighbours of an entity, the smallest ids (LIMIT NULL: all)."""
        t = self.d.text
        return (
            "walk(id, d) AS ("
            f"SELECT s, 0 FROM (SELECT {_unnest(p, list(dict.fromkeys(seeds)), t)} AS s) AS seed "
            "UNION SELECT n.b, w.d + 1 FROM walk w CROSS JOIN LATERAL ("
            "SELECT DISTINCT e.b FROM (SELECT target AS b FROM graph_relations "
            "WHERE source = w.id UNION ALL SELECT source FROM graph_relations "
            f"WHERE target = w.id) AS e ORDER BY e.b LIMIT {p.add(fanout)}) AS n "
            f"WHERE w.d < {p.add(max(0, depth))})"
        )

    async def walk(
        self, seeds: Sequence[str], depth: int, limit: int, fanout: int | None = None
    ) -> list[tuple[str, int]]:
        if not seeds:
            return []
        adjacency = await self._adjacent()
        if adjacency is not None:
            return adjacency.walk(seeds, depth, limit, fanout)
        p = self.d.params()
        sql = (
            f"WITH RECURSIVE {self._walk_sql(p, seeds, depth, fanout)} "
            f"SELECT id, min(d) AS d FROM walk GROUP BY id ORDER BY d, id LIMIT {p.add(limit)}"
        )
        return [(r[0], int(r[1])) for r in await self.host._fetch(sql, p.values)]

    def _details_sql(self, p: Params, mentions: int) -> str:
        """The rows of :meth:`_details` for the entities of a CTE ``near(id, d)``, in one
        statement: ``(part, k1..k5 text, time, n1, n2)``, part ``w`` (the walk), ``e``
        (an entity), ``o`` (an observation), ``r`` (a relation among them), ``m`` (a
        mention, at most ``mentions``)."""
        t, time = self.d.text, "BIGINT" if self.d.name == "duckdb" else "TIMESTAMPTZ"
        no, at = f"NULL::{t}", self.d.time.format
        among = "IN (SELECT id FROM near)"
        return (
            f"SELECT 'w', id, {no}, {no}, {no}, {no}, NULL::{time}, d::INTEGER, NULL::INTEGER "
            "FROM near UNION ALL "
            f"SELECT 'e', e.id, e.name, e.entity_type, e.project, e.owner, {at('e.created_at')}, "
            "NULL, NULL FROM graph_entities e JOIN near ON e.id = near.id UNION ALL "
            f"SELECT 'o', o.entity_id, o.content, NULL, NULL, NULL, {at('o.created_at')}, NULL, "
            "NULL FROM graph_observations o JOIN near ON o.entity_id = near.id UNION ALL "
            "SELECT 'r', source, target, relation_type, NULL, NULL, NULL, NULL, NULL "
            f"FROM graph_relations WHERE source {among} AND target {among} UNION ALL "
            "(SELECT 'm', item_id, entity_id, NULL, NULL, NULL, NULL, start_pos, end_pos "
            f"FROM graph_mentions WHERE entity_id {among} LIMIT {p.add(max(0, mentions))})"
        )

    def _details(
        self, rows: Sequence[Sequence[Any]], order: Sequence[str] | None
    ) -> tuple[list[tuple[str, int]], Details]:
        """The walk and the details of :meth:`_details_sql`'s rows (entities in ``order``,
        else in the walk's)."""
        parts: dict[str, list[Sequence[Any]]] = {k: [] for k in "weorm"}
        for row in rows:
            parts[row[0]].append(row)
        near = sorted(((r[1], int(r[7])) for r in parts["w"]), key=lambda kv: (kv[1], kv[0]))
        found = {r[1]: self._entity(r[1:7]) for r in parts["e"]}
        for r in sorted(parts["o"], key=lambda r: (r[6], r[2])):
            found[r[1]].observations.append(r[2])
        ids = order if order is not None else [i for i, _ in near]
        relations = sorted(
            (Relation(r[1], r[2], r[3]) for r in parts["r"]),
            key=lambda r: (r.source, r.relation_type, r.target),
        )
        mentions = _mentions([(r[1], r[2], r[7], r[8]) for r in parts["m"]])
        return near, Details([found[i] for i in ids if i in found], relations, mentions)

    async def details(self, ids: Sequence[str], mentions: int) -> Details:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return Details([], [], [])
        adjacency = await self._adjacent()
        if adjacency is None:
            p = self.d.params()
            near = f"SELECT {_unnest(p, unique, self.d.text)} AS id, 0 AS d"
            sql = f"WITH near AS ({near}) {self._details_sql(p, mentions)}"
            return self._details(await self.host._fetch(sql, p.values), unique)[1]
        entities = await self._with_observations(adjacency.entities(unique))
        return Details(
            entities,
            adjacency.relations_of(unique, among=True),
            adjacency.mentions_of(unique, mentions),
        )

    async def context(
        self, seeds: Sequence[str], depth: int, limit: int, fanout: int | None, mentions: int
    ) -> tuple[list[tuple[str, int]], Details]:
        if not seeds or self.adjacency is not None:
            return await super().context(seeds, depth, limit, fanout, mentions)
        p = self.d.params()
        sql = (
            f"WITH RECURSIVE {self._walk_sql(p, seeds, depth, fanout)}, near AS ("
            f"SELECT id, min(d) AS d FROM walk GROUP BY id ORDER BY d, id LIMIT {p.add(limit)}) "
            f"{self._details_sql(p, mentions)}"
        )
        return self._details(await self.host._fetch(sql, p.values), None)

    def _mentions_sql(self, column: str, ids: Sequence[str], limit: int | None) -> Statement:
        """Mentions by ``column``, at most ``limit`` (which ones beyond it is not promised:
        DuckDB's ORDER BY with a LIMIT stops using the filter and costs 4x; :func:`_mentions`
        orders them)."""
        p = self.d.params()
        sql = (
            "SELECT item_id, entity_id, start_pos, end_pos FROM graph_mentions WHERE "
            f"{self.d.is_any(column, p.add(list(dict.fromkeys(ids))))}"
        )
        if limit is not None:
            sql += f" LIMIT {p.add(max(0, limit))}"
        return sql, p.values

    def _mentioned(self, rows: Sequence[Sequence[Any]]) -> None:
        """Mention rows just inserted (``RETURNING`` :data:`_MENTION`), into the adjacency."""
        if self.adjacency is not None:
            self.adjacency.add_mentions(Mention(r[0], r[1], int(r[2]), int(r[3])) for r in rows)

    def _noted(self, rows: Sequence[Sequence[Any]], change: int) -> None:
        """Observations just added (1) or deleted (-1): rows led by their entity id."""
        if self.adjacency is not None:
            self.adjacency.note((r[0] for r in rows), change)

    def unmentioned(self, keys: Sequence[Sequence[Any]]) -> None:
        """Mentions just deleted (``(item_id, entity_id, start_pos)`` rows), out of the
        adjacency."""
        if self.adjacency is not None:
            self.adjacency.remove_mentions(keys)


class SqlGraph(_SqlReads):
    """:class:`~._graph.GraphStore` over a SQL backend (module doc)."""

    # -- entities -------------------------------------------------------------------------

    def _observation_insert(self, rows: Sequence[tuple[str, str]], moment: Any) -> Statement:
        p, t = self.d.params(), self.d.text
        sql = (
            "INSERT INTO graph_observations SELECT "
            f"{_unnest(p, [r[0] for r in rows], t)}, "
            f"{_unnest(p, [observation_hash(r[1]) for r in rows], t)}, "
            f"{_unnest(p, [r[1] for r in rows], t)}, {p.add(moment)} "
            "ON CONFLICT DO NOTHING RETURNING entity_id, content"
        )
        return sql, p.values

    async def link(
        self, entities: Sequence[Entity], mentions: Sequence[Mention], relations: Sequence[Relation]
    ) -> None:
        statements = []
        unique = list({e.id: e for e in entities}.values())
        if unique:
            statements.append(self._entity_insert(unique))
        if mentions:
            statements.append(self._mention_insert(mentions))
        if relations:
            statements.append(self._relation_insert(list(dict.fromkeys(relations))))
        if not statements:
            return
        results = await self.host._transaction(statements)
        if mentions:
            self._mentioned(results[1 if unique else 0])
        if self.adjacency is not None:
            if unique:
                created = {r[0] for r in results[0]}
                self.adjacency.add_entities(e for e in unique if e.id in created)
            if relations:
                self.adjacency.add(Relation(*r) for r in results[-1])

    def _entity_insert(self, unique: list[Entity]) -> Statement:
        p, t = self.d.params(), self.d.text
        moment = unique[0].created_at
        sql = (
            "INSERT INTO graph_entities SELECT "
            + ", ".join(
                _unnest(p, [getattr(e, f) or "" for e in unique], t)
                for f in ("id", "name", "entity_type", "project", "owner")
            )
            + f", {p.add(moment)}, {p.add(moment)} ON CONFLICT DO NOTHING RETURNING id"
        )
        return sql, p.values

    async def add_entities(self, entities: Sequence[Entity]) -> list[bool]:
        if not entities:
            return []
        unique = list({e.id: e for e in entities}.values())
        moment = unique[0].created_at
        (rows,) = await self.host._transaction([self._entity_insert(unique)])
        created = {r[0] for r in rows}
        if self.adjacency is not None:
            self.adjacency.add_entities(e for e in unique if e.id in created)
        # the observations of a new entity; an existing one is left as it is
        observations = [
            (e.id, o) for e in unique if e.id in created for o in dict.fromkeys(e.observations)
        ]
        if observations:
            (added,) = await self.host._transaction(
                [self._observation_insert(observations, moment)]
            )
            self._noted(added, 1)
        return [e.id in created for e in entities]

    async def get_entities(self, ids: Sequence[str]) -> list[Entity]:
        if not ids:
            return []
        adjacency = await self._adjacent()
        if adjacency is not None:
            return await self._with_observations(adjacency.entities(dict.fromkeys(ids)))
        p = self.d.params()
        rows = await self.host._fetch(
            f"SELECT {self._entity_columns} FROM graph_entities WHERE "
            f"{self.d.is_any('id', p.add(list(dict.fromkeys(ids))))}",
            p.values,
        )
        found = {r[0]: self._entity(r) for r in rows}
        return await self._with_observations([found[i] for i in dict.fromkeys(ids) if i in found])

    async def find_entities(
        self, owner: str, names: Sequence[str], projects: Sequence[str | None] | None
    ) -> list[Entity]:
        if not names:
            return []
        adjacency = await self._adjacent()
        if adjacency is not None:
            return adjacency.find(owner, names, projects)
        p = self.d.params()
        sql = (
            f"SELECT {self._entity_columns} FROM graph_entities WHERE owner = {p.add(owner)} "
            f"AND {self.d.is_any('name', p.add(list(dict.fromkeys(names))))}"
            f"{_scope(p, projects)} ORDER BY name, project"
        )
        return [self._entity(r) for r in await self.host._fetch(sql, p.values)]

    async def list_entities(
        self, owner: str, projects: Sequence[str | None] | None, limit: int, offset: int
    ) -> list[Entity]:
        p = self.d.params()
        sql = (
            f"SELECT {self._entity_columns} FROM graph_entities WHERE owner = {p.add(owner)}"
            f"{_scope(p, projects)} ORDER BY name, project "
            f"LIMIT {p.add(max(0, limit))} OFFSET {p.add(max(0, offset))}"
        )
        rows = await self.host._fetch(sql, p.values)
        return await self._with_observations([self._entity(r) for r in rows])

    async def count_entities(self, owner: str, projects: Sequence[str | None] | None) -> int:
        p = self.d.params()
        sql = f"SELECT count(*) FROM graph_entities WHERE owner = {p.add(owner)}"
        rows = await self.host._fetch(sql + _scope(p, projects), p.values)
        return int(rows[0][0])

    async def match_entities(
        self, owner: str, projects: Sequence[str | None] | None, words: Sequence[str], limit: int
    ) -> list[Entity]:
        if not words:
            return []
        p, t = self.d.params(), self.d.text
        own = f"owner = {p.add(owner)}{_scope(p, projects)}"

        def contains(expr: str) -> str:
            return (
                f"EXISTS (SELECT 1 FROM (SELECT {_unnest(p, list(words), t)} AS w) AS q "
                f"WHERE strpos({expr}, q.w) > 0)"
            )

        sql = (
            f"SELECT {self._entity_columns} FROM graph_entities WHERE {own} AND "
            f"({contains(_LABEL)} OR id IN (SELECT entity_id "
            f"FROM graph_observations WHERE {contains('lower(content)')})) "
            f"ORDER BY name, project LIMIT {p.add(max(1, limit))}"
        )
        rows = await self.host._fetch(sql, p.values)
        return await self._with_observations([self._entity(r) for r in rows])

    async def delete_entities(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        unique = list(dict.fromkeys(ids))
        statements: list[Statement] = []
        for table, columns in (
            ("graph_observations", ("entity_id",)),
            ("graph_relations", ("source", "target")),
            ("graph_mentions", ("entity_id",)),
            ("graph_entities", ("id",)),
        ):
            p = self.d.params()
            cond = " OR ".join(self.d.is_any(c, p.add(unique)) for c in columns)
            tail = " RETURNING id" if table == "graph_entities" else ""
            statements.append((f"DELETE FROM {table} WHERE {cond}{tail}", p.values))
        results = await self.host._transaction(statements)
        if self.adjacency is not None:
            self.adjacency.remove_entities(unique)
        return len(results[-1])

    # -- observations -----------------------------------------------------------------------

    async def add_observations(self, rows: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        unique = list(dict.fromkeys(rows))
        if not unique:
            return []
        from session_buddy.adapters.storage._base import utcnow

        (added,) = await self.host._transaction([self._observation_insert(unique, utcnow())])
        self._noted(added, 1)
        new = {(r[0], r[1]) for r in added}
        return [r for r in unique if r in new]

    async def delete_observations(self, rows: Sequence[tuple[str, str]]) -> int:
        if not rows:
            return 0
        p, t = self.d.params(), self.d.text
        ids = p.add([r[0] for r in rows])
        hashes = p.add([observation_hash(r[1]) for r in rows])
        (gone,) = await self.host._transaction(
            [
                (
                    "DELETE FROM graph_observations WHERE (entity_id, content_hash) IN "
                    f"(SELECT unnest({ids}::{t}[]), unnest({hashes}::{t}[])) RETURNING entity_id",
                    p.values,
                )
            ]
        )
        self._noted(gone, -1)
        return len(gone)

    # -- relations --------------------------------------------------------------------------

    async def add_relations(self, relations: Sequence[Relation]) -> list[bool]:
        if not relations:
            return []

        (rows,) = await self.host._transaction(
            [self._relation_insert(list(dict.fromkeys(relations)))]
        )
        new = {Relation(*r) for r in rows}
        if self.adjacency is not None:
            self.adjacency.add(new)
        return [r in new for r in relations]

    def _relation_insert(self, unique: list[Relation]) -> Statement:
        from session_buddy.adapters.storage._base import utcnow

        p, t = self.d.params(), self.d.text
        sql = (
            "INSERT INTO graph_relations SELECT "
            + ", ".join(
                _unnest(p, [getattr(r, f) for r in unique], t)
                for f in ("source", "target", "relation_type")
            )
            + f", {p.add(utcnow())} ON CONFLICT DO NOTHING RETURNING source, target, relation_type"
        )
        return sql, p.values

    async def delete_relations(self, relations: Sequence[Relation]) -> int:
        if not relations:
            return 0
        p, t = self.d.params(), self.d.text
        cols = [
            p.add([getattr(r, f) for r in relations]) for f in ("source", "target", "relation_type")
        ]
        (gone,) = await self.host._transaction(
            [
                (
                    "DELETE FROM graph_relations WHERE (source, target, relation_type) IN (SELECT "
                    + ", ".join(f"unnest({c}::{t}[])" for c in cols)
                    + ") RETURNING source, target, relation_type",
                    p.values,
                )
            ]
        )
        if self.adjacency is not None:
            self.adjacency.remove(Relation(*r) for r in gone)
        return len(gone)

    # -- mentions -------------------------------------------------------------------------

    async def add_mentions(self, mentions: Sequence[Mention]) -> int:
        if not mentions:
            return 0
        (rows,) = await self.host._transaction([self._mention_insert(mentions)])
        self._mentioned(rows)
        return len(rows)

    def _mention_insert(self, mentions: Sequence[Mention]) -> Statement:
        p, t = self.d.params(), self.d.text
        unique = list(dict.fromkeys(mentions))
        sql = (
            "INSERT INTO graph_mentions SELECT "
            f"{_unnest(p, [m.item_id for m in unique], t)}, "
            f"{_unnest(p, [m.entity_id for m in unique], t)}, "
            f"{_unnest(p, [m.start for m in unique], 'INTEGER')}, "
            f"{_unnest(p, [m.end for m in unique], 'INTEGER')} "
            f"ON CONFLICT DO NOTHING RETURNING {_MENTION}"
        )
        return sql, p.values

    async def _mentions(self, column: str, ids: Sequence[str], limit: int | None) -> list[Mention]:
        if not ids:
            return []
        return _mentions(await self.host._fetch(*self._mentions_sql(column, ids, limit)))

    async def mentions_of(self, entity_ids: Sequence[str], limit: int) -> list[Mention]:
        adjacency = await self._adjacent()
        if adjacency is not None:
            return adjacency.mentions_of(entity_ids, limit)
        return await self._mentions("entity_id", entity_ids, limit)

    async def mentions_in(self, item_ids: Sequence[str]) -> list[Mention]:
        return await self._mentions("item_id", item_ids, None)

    async def mention_counts(self, entity_ids: Sequence[str]) -> dict[str, int]:
        if not entity_ids:
            return {}
        adjacency = await self._adjacent()
        if adjacency is not None:
            return adjacency.mention_counts(entity_ids)
        p = self.d.params()
        rows = await self.host._fetch(
            "SELECT entity_id, count(DISTINCT item_id) FROM graph_mentions WHERE "
            f"{self.d.is_any('entity_id', p.add(list(dict.fromkeys(entity_ids))))} "
            "GROUP BY entity_id",
            p.values,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def delete_mentions(self, item_ids: Sequence[str]) -> int:
        if not item_ids:
            return 0
        p = self.d.params()
        (rows,) = await self.host._transaction(
            [
                (
                    "DELETE FROM graph_mentions WHERE "
                    f"{self.d.is_any('item_id', p.add(list(dict.fromkeys(item_ids))))} "
                    "RETURNING item_id, entity_id, start_pos",
                    p.values,
                )
            ]
        )
        self.unmentioned(rows)
        return len(rows)

    # -- copy (migrate) -----------------------------------------------------------------------

    @staticmethod
    def _table(table: str) -> tuple[tuple[str, ...], int]:
        if table not in GRAPH_TABLES:
            raise ValidationError(f"table must be one of {', '.join(GRAPH_TABLES)}, not {table!r}")
        return _TABLES[table]

    async def export_rows(
        self, table: str, after: tuple[Any, ...] | None, limit: int
    ) -> list[tuple[Any, ...]]:
        columns, keys = self._table(table)
        names = [c.lstrip("@") for c in columns]
        select = ", ".join(
            self.d.time.format(n) if c[0] == "@" else n for c, n in zip(columns, names, strict=True)
        )
        p = self.d.params()
        key = ", ".join(names[:keys])
        where = ""
        if after is not None:
            where = f" WHERE ({key}) > ({', '.join(p.add(v) for v in after)})"
        rows = await self.host._fetch(
            f"SELECT {select} FROM {table}{where} ORDER BY {key} LIMIT {p.add(max(0, limit))}",
            p.values,
        )
        times = [i for i, c in enumerate(columns) if c[0] == "@"]
        return [
            tuple(self.d.read_time(v) if i in times else v for i, v in enumerate(r)) for r in rows
        ]

    async def import_rows(self, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        columns, _ = self._table(table)
        p = self.d.params()
        parts = []
        for i, column in enumerate(columns):
            sql_type = (
                "TIMESTAMPTZ"
                if column[0] == "@"
                else "INTEGER"
                if column in _INT_COLUMNS
                else self.d.text
            )
            parts.append(_unnest(p, [r[i] for r in rows], sql_type))
        sql = f"INSERT INTO {table} SELECT {', '.join(parts)} ON CONFLICT DO NOTHING RETURNING 1"
        (inserted,) = await self.host._transaction([(sql, p.values)])
        if inserted and self.adjacency is not None:
            self.adjacency.forget()  # every table has a part in it: read again on next use
        return len(inserted)
