"""The graph's relations and entity rows in process, for walks and lookups (DuckDB and
memory backends).

DuckDB answers a recursive join over the relations by scanning every relation at each
level, and its IN-list lookups scan too (an ``id IN (...)`` over 100k entities is a
sequential scan, a few ms each): at 500k relations a depth-2 context took hundreds of
milliseconds. :class:`Adjacency` holds, per entity id, the relations touching it, and
each entity's row (name, type, project, owner, creation time; not its observations) with
an index by owner and name. It is read once from the tables on first use (:meth:`load`)
and kept current by :class:`~._graphsql.SqlGraph` after each write that commits
(entities created or deleted, relations added or deleted; a bulk import drops it, to be
read again). The tables stay the truth: nothing is written back, and a backend without an
adjacency (PostgreSQL) answers in SQL.

A walk is breadth first, cycle-safe (an id is reached once, at its smallest distance) and
bounded: by the depth, by ``fanout`` (the neighbours one entity contributes, the smallest
ids first, so a hub does not flood a level) and by ``limit``, which is met exactly in
``(distance, id)`` order (a level is completed before it is cut).
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from session_buddy.adapters.storage._graph import Entity, Relation

#: an entity's row: name, entity_type, project ('' global), owner, created_at
Row = tuple[str, str, str, str, datetime]


class Adjacency:
    """Entity id -> the relations touching it, and its row (module doc)."""

    def __init__(self) -> None:
        self._touching: dict[str, set[Relation]] | None = None
        self._rows: dict[str, Row] = {}
        self._named: dict[tuple[str, str], set[str]] = {}
        #: bumped by every change, so a load that raced a write is done again
        self.version = 0

    @property
    def loaded(self) -> bool:
        return self._touching is not None

    def load(self, relations: Iterable[Sequence[str]], entities: Iterable[Sequence[Any]]) -> None:
        """Replace everything by ``(source, target, relation_type)`` rows and entity rows
        ``(id, name, entity_type, project, owner, created_at)``."""
        touching: dict[str, set[Relation]] = {}
        intern = sys.intern
        for source, target, kind in relations:
            r = Relation(intern(source), intern(target), intern(kind))
            touching.setdefault(r.source, set()).add(r)
            touching.setdefault(r.target, set()).add(r)
        self._rows, self._named = {}, {}
        for i, name, kind, project, owner, created in entities:
            self._put(i, (name, intern(kind), intern(project), intern(owner), created))
        self._touching = touching

    def _put(self, i: str, row: Row) -> None:
        i = sys.intern(i)
        self._rows[i] = row
        self._named.setdefault((row[3], row[0]), set()).add(i)

    def forget(self) -> None:
        """Drop everything: the next use reads the tables again (after a bulk import)."""
        self._touching = None
        self._rows, self._named = {}, {}
        self.version += 1

    def add_entities(self, entities: Iterable[Entity]) -> None:
        """Entities just created (their rows, as stored)."""
        self.version += 1
        if self._touching is None:
            return
        for e in entities:
            kind, project, owner = (
                sys.intern(x) for x in (e.entity_type, e.project or "", e.owner)
            )
            self._put(e.id, (e.name, kind, project, owner, e.created_at))

    def entities(self, ids: Iterable[str]) -> list[Entity]:
        """The entities of these ids that exist (without observations), in that order."""
        out = []
        for i in ids:
            row = self._rows.get(i)
            if row is not None:
                name, kind, project, owner, created = row
                out.append(Entity(name, kind, owner, project or None, [], created, i))
        return out

    def find(
        self, owner: str, names: Sequence[str], projects: Sequence[str | None] | None
    ) -> list[Entity]:
        """As :meth:`~._graph.GraphStore.find_entities` (ordered by name, then project)."""
        scope = None if projects is None else {p or "" for p in projects}
        ids = [
            i
            for name in dict.fromkeys(names)
            for i in self._named.get((owner, name), ())
            if scope is None or self._rows[i][2] in scope
        ]
        return sorted(self.entities(ids), key=lambda e: (e.name, e.project or ""))

    def add(self, relations: Iterable[Relation]) -> None:
        self.version += 1
        if self._touching is None:
            return
        for r in relations:
            r = Relation(sys.intern(r.source), sys.intern(r.target), sys.intern(r.relation_type))
            self._touching.setdefault(r.source, set()).add(r)
            self._touching.setdefault(r.target, set()).add(r)

    def remove(self, relations: Iterable[Relation]) -> None:
        self.version += 1
        if self._touching is None:
            return
        for r in relations:
            for end in (r.source, r.target):
                near = self._touching.get(end)
                if near is not None:
                    near.discard(r)
                    if not near:
                        del self._touching[end]

    def remove_entities(self, ids: Iterable[str]) -> None:
        """Drop the entities and every relation touching them."""
        self.version += 1
        if self._touching is None:
            return
        for i in ids:
            self.remove(self._touching.pop(i, ()))
            row = self._rows.pop(i, None)
            if row is not None:
                named = self._named.get((row[3], row[0]), set())
                named.discard(i)
                if not named:
                    self._named.pop((row[3], row[0]), None)

    def relations_of(self, ids: Sequence[str], *, among: bool = False) -> list[Relation]:
        """As :meth:`~._graph.GraphStore.relations_of` (ordered alike)."""
        touching = self._touching or {}
        wanted = set(ids)
        found = {
            r
            for i in wanted
            for r in touching.get(i, ())
            if not among or (r.source in wanted and r.target in wanted)
        }
        return sorted(found, key=lambda r: (r.source, r.relation_type, r.target))

    def walk(
        self, seeds: Sequence[str], depth: int, limit: int, fanout: int | None = None
    ) -> list[tuple[str, int]]:
        """Entities within ``depth`` relations of ``seeds`` with their distance, nearest
        first then by id, at most ``limit`` (module doc)."""
        touching = self._touching or {}
        distance = dict.fromkeys(dict.fromkeys(seeds), 0)
        frontier = sorted(distance)
        for level in range(1, max(0, depth) + 1):
            if not frontier or len(distance) >= limit:
                break
            found: set[str] = set()
            for i in frontier:
                near = {r.target if r.source == i else r.source for r in touching.get(i, ())}
                if fanout is not None and len(near) > fanout:
                    near = set(heapq.nsmallest(fanout, near))
                found.update(n for n in near if n not in distance)
            frontier = sorted(found)
            distance.update(dict.fromkeys(frontier, level))
        ordered = sorted(distance.items(), key=lambda kv: (kv[1], kv[0]))
        return ordered[: max(0, limit)]
