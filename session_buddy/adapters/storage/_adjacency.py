"""The graph's relations, entity rows and mentions in process, for walks and lookups
(DuckDB and memory backends).

DuckDB answers a recursive join over the relations by scanning every relation at each
level, and its IN-list lookups scan too (an ``id IN (...)`` over 100k entities is a
sequential scan, a few ms each): at 500k relations a depth-2 context took hundreds of
milliseconds. :class:`Adjacency` holds, per entity id, the relations touching it, and
each entity's row (name, type, project, owner, creation time; not its observations) with
an index by owner and name, and per entity its mentions (item, start, end: three ints in
an ``array``, the item ids numbered like the entities; DuckDB's lookup of an entity's
mentions scans the table, about 9 ms at 60k mentions). It is read once from the tables on first use (:meth:`load`)
and kept current by :class:`~._graphsql.SqlGraph` after each write that commits
(entities created or deleted, relations and mentions added or deleted, and the mentions
of deleted items; a bulk import drops it, to be read again). The tables stay the truth: nothing is written back, and a backend without an
adjacency (PostgreSQL) answers in SQL.

A walk is breadth first, cycle-safe (an id is reached once, at its smallest distance) and
bounded: by the depth, by ``fanout`` (the neighbours one entity contributes, the smallest
ids first, so a hub does not flood a level) and by ``limit``, which is met exactly in
``(distance, id)`` order (a level is completed before it is cut).
"""

from __future__ import annotations

import heapq
import sys
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from session_buddy.adapters.storage._graph import Entity, Mention, Relation

#: an entity's row: name, entity_type, project ('' global), owner, created_at
Row = tuple[str, str, str, str, datetime]


#: a relation as seen from one end: (other end << KIND_BITS | kind) << 1 | outgoing
KIND_BITS = 20


class _State:
    """The adjacency's data: entity ids as dense ints, per int the packed relations
    touching it (8 bytes each, in an ``array``), the relation types, the entity rows."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.near: list[array[int]] = []
        self.kind_index: dict[str, int] = {}
        self.kinds: list[str] = []
        self.rows: dict[str, Row] = {}
        self.named: dict[tuple[str, str], set[str]] = {}
        self.item_index: dict[str, int] = {}
        self.items: list[str] = []
        #: entity int -> its mentions, flat: item int, start, end, item int, start, end...
        self.said: dict[int, array[int]] = {}
        #: entity int -> how many observations it has (those without: not asked for)
        self.noted: dict[int, int] = {}

    def item(self, i: str) -> int:
        n = self.item_index.get(i)
        if n is None:
            n = self.item_index[i] = len(self.items)
            self.items.append(i)
        return n

    def mention(self, entity: str, item: str, start: int, end: int) -> None:
        n = self.number(entity)
        said = self.said.get(n)
        if said is None:
            said = self.said[n] = array("q")
        said.extend((self.item(item), start, end))

    def unmention(self, entity: str, item: str, start: int) -> None:
        n, k = self.index.get(entity), self.item_index.get(item)
        if n is None or k is None or (said := self.said.get(n)) is None:
            return
        for at in range(0, len(said), 3):
            if said[at] == k and said[at + 1] == start:
                del said[at : at + 3]
                break
        if not said:
            del self.said[n]

    def mentions(self, n: int) -> Iterable[Mention]:
        said, me = self.said.get(n, ()), self.ids[n]
        for at in range(0, len(said), 3):
            yield Mention(self.items[said[at]], me, said[at + 1], said[at + 2])

    def number(self, i: str) -> int:
        n = self.index.get(i)
        if n is None:
            n = self.index[i] = len(self.ids)
            self.ids.append(sys.intern(i))
            self.near.append(array("q"))
        return n

    def kind(self, k: str) -> int:
        n = self.kind_index.get(k)
        if n is None:
            n = self.kind_index[k] = len(self.kinds)
            self.kinds.append(k)
        return n

    def link(self, r: Relation, *, check: bool) -> None:
        s, t, k = self.number(r.source), self.number(r.target), self.kind(r.relation_type)
        for end, code in ((s, (t << KIND_BITS | k) << 1 | 1), (t, (s << KIND_BITS | k) << 1)):
            if not check or code not in self.near[end]:
                self.near[end].append(code)

    def unlink(self, r: Relation) -> None:
        s, t = self.index.get(r.source), self.index.get(r.target)
        k = self.kind_index.get(r.relation_type)
        if s is None or t is None or k is None:
            return
        for end, code in ((s, (t << KIND_BITS | k) << 1 | 1), (t, (s << KIND_BITS | k) << 1)):
            if code in self.near[end]:
                self.near[end].remove(code)

    def relations(self, n: int) -> Iterable[Relation]:
        me, mask = self.ids[n], (1 << KIND_BITS) - 1
        for code in self.near[n]:
            other, kind = self.ids[code >> (KIND_BITS + 1)], self.kinds[(code >> 1) & mask]
            yield Relation(me, other, kind) if code & 1 else Relation(other, me, kind)

    def put(self, i: str, row: Row) -> None:
        i = sys.intern(i)
        self.rows[i] = row
        self.named.setdefault((row[3], row[0]), set()).add(i)


class Adjacency:
    """Entity id -> the relations touching it, and its row (module doc)."""

    def __init__(self) -> None:
        self._state: _State | None = None
        #: bumped by every change, so a load that raced a write is done again
        self.version = 0

    @property
    def loaded(self) -> bool:
        return self._state is not None

    @staticmethod
    def build(
        relations: Iterable[Sequence[str]],
        entities: Iterable[Sequence[Any]],
        mentions: Iterable[Sequence[Any]] = (),
        noted: Iterable[Sequence[Any]] = (),
    ) -> _State:
        """The data of ``(source, target, relation_type)`` rows, entity rows ``(id, name,
        entity_type, project, owner, created_at)``, mention rows ``(item_id, entity_id,
        start, end)`` and ``(entity_id, observation count)`` rows (run in a thread: seconds
        at 500k relations)."""
        state = _State()
        intern = sys.intern
        for i, name, kind, project, owner, created in entities:
            state.put(i, (name, intern(kind), intern(project), intern(owner), created))
        for source, target, kind in relations:
            state.link(Relation(source, target, kind), check=False)
        for item, entity, start, end in mentions:
            state.mention(entity, item, int(start), int(end))
        for entity, count in noted:
            state.noted[state.number(entity)] = int(count)
        return state

    def install(self, state: _State) -> None:
        self._state = state

    def load(
        self,
        relations: Iterable[Sequence[str]],
        entities: Iterable[Sequence[Any]],
        mentions: Iterable[Sequence[Any]] = (),
        noted: Iterable[Sequence[Any]] = (),
    ) -> None:
        self.install(self.build(relations, entities, mentions, noted))

    def forget(self) -> None:
        """Drop everything: the next use reads the tables again (after a bulk import)."""
        self._state = None
        self.version += 1

    def add_entities(self, entities: Iterable[Entity]) -> None:
        """Entities just created (their rows, as stored)."""
        self.version += 1
        if self._state is None:
            return
        for e in entities:
            kind, project, owner = (
                sys.intern(x) for x in (e.entity_type, e.project or "", e.owner)
            )
            self._state.put(e.id, (e.name, kind, project, owner, e.created_at))

    def entities(self, ids: Iterable[str]) -> list[Entity]:
        """The entities of these ids that exist (without observations), in that order."""
        rows = self._state.rows if self._state is not None else {}
        out = []
        for i in ids:
            row = rows.get(i)
            if row is not None:
                name, kind, project, owner, created = row
                out.append(Entity(name, kind, owner, project or None, [], created, i))
        return out

    def find(
        self, owner: str, names: Sequence[str], projects: Sequence[str | None] | None
    ) -> list[Entity]:
        """As :meth:`~._graph.GraphStore.find_entities` (ordered by name, then project)."""
        if self._state is None:
            return []
        state = self._state
        scope = None if projects is None else {p or "" for p in projects}
        ids = [
            i
            for name in dict.fromkeys(names)
            for i in state.named.get((owner, name), ())
            if scope is None or state.rows[i][2] in scope
        ]
        return sorted(self.entities(ids), key=lambda e: (e.name, e.project or ""))

    def add(self, relations: Iterable[Relation]) -> None:
        self.version += 1
        if self._state is not None:
            for r in relations:
                self._state.link(r, check=True)

    def remove(self, relations: Iterable[Relation]) -> None:
        self.version += 1
        if self._state is not None:
            for r in relations:
                self._state.unlink(r)

    def remove_entities(self, ids: Iterable[str]) -> None:
        """Drop the entities and every relation touching them."""
        self.version += 1
        state = self._state
        if state is None:
            return
        for i in ids:
            n = state.index.get(i)
            if n is not None:
                for r in list(state.relations(n)):
                    state.unlink(r)
                state.said.pop(n, None)
                state.noted.pop(n, None)
            row = state.rows.pop(i, None)
            if row is not None:
                named = state.named.get((row[3], row[0]), set())
                named.discard(i)
                if not named:
                    state.named.pop((row[3], row[0]), None)

    def relations_of(self, ids: Sequence[str], *, among: bool = False) -> list[Relation]:
        """As :meth:`~._graph.GraphStore.relations_of` (ordered alike)."""
        state = self._state
        if state is None:
            return []
        wanted = set(ids)
        found = {
            r
            for i in wanted
            if (n := state.index.get(i)) is not None
            for r in state.relations(n)
            if not among or (r.source in wanted and r.target in wanted)
        }
        return sorted(found, key=lambda r: (r.source, r.relation_type, r.target))

    def walk(
        self, seeds: Sequence[str], depth: int, limit: int, fanout: int | None = None
    ) -> list[tuple[str, int]]:
        """Entities within ``depth`` relations of ``seeds`` with their distance, nearest
        first then by id, at most ``limit`` (module doc)."""
        state = self._state or _State()
        ids, shift = state.ids, KIND_BITS + 1
        distance = dict.fromkeys(dict.fromkeys(seeds), 0)  # by id: a seed may be unknown
        frontier = [state.index[i] for i in distance if i in state.index]
        for level in range(1, max(0, depth) + 1):
            if not frontier or len(distance) >= limit:
                break
            found: set[int] = set()
            for n in frontier:
                near = {code >> shift for code in state.near[n]}
                if fanout is not None and len(near) > fanout:
                    near = set(heapq.nsmallest(fanout, near, key=ids.__getitem__))
                found.update(m for m in near if ids[m] not in distance)
            frontier = sorted(found, key=ids.__getitem__)
            distance.update(dict.fromkeys((ids[m] for m in frontier), level))
        ordered = sorted(distance.items(), key=lambda kv: (kv[1], kv[0]))
        return ordered[: max(0, limit)]

    # -- mentions ---------------------------------------------------------------------------

    def add_mentions(self, mentions: Iterable[Mention]) -> None:
        """Mentions just stored (new ones only: an existing key is not checked for)."""
        self.version += 1
        if self._state is not None:
            for m in mentions:
                self._state.mention(m.entity_id, m.item_id, m.start, m.end)

    def remove_mentions(self, keys: Iterable[Sequence[Any]]) -> None:
        """Mentions just deleted, by key ``(item_id, entity_id, start)``."""
        self.version += 1
        if self._state is not None:
            for item, entity, start in keys:
                self._state.unmention(entity, item, int(start))

    def mentions_of(self, ids: Iterable[str], limit: int | None = None) -> list[Mention]:
        """The mentions of these entities by (item, start, entity), the first ``limit``."""
        state = self._state
        if state is None:
            return []
        found = [
            m
            for i in dict.fromkeys(ids)
            if (n := state.index.get(i)) is not None
            for m in state.mentions(n)
        ]
        found.sort(key=lambda m: (m.item_id, m.start, m.entity_id))
        return found if limit is None else found[: max(0, limit)]

    def mention_counts(self, ids: Iterable[str]) -> dict[str, int]:
        """As :meth:`~._graph.GraphStore.mention_counts` (entities without any left out)."""
        state = self._state
        if state is None:
            return {}
        counts = {}
        for i in dict.fromkeys(ids):
            n = state.index.get(i)
            said = state.said.get(n) if n is not None else None
            if said:
                counts[i] = len(set(said[0::3]))
        return counts

    # -- observations (counted only) -----------------------------------------------------------

    def note(self, entity_ids: Iterable[str], change: int) -> None:
        """One observation per id just added (``change`` 1) or deleted (-1)."""
        self.version += 1
        state = self._state
        if state is None:
            return
        for i in entity_ids:
            n = state.number(i)
            count = state.noted.get(n, 0) + change
            if count > 0:
                state.noted[n] = count
            else:
                state.noted.pop(n, None)

    def observed(self, ids: Iterable[str]) -> list[str]:
        """Those of these ids that have observations."""
        state = self._state
        if state is None:
            return list(ids)
        index, noted = state.index, state.noted
        return [i for i in ids if (n := index.get(i)) is not None and n in noted]
