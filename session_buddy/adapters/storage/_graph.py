"""The knowledge graph's storage protocol: entities, their observations, relations between
them, and mentions (an item -> an entity, with its position in the item's text).

Every entity has an ``owner`` (the user whose graph it is: the same owner as the memories
it came from) and a ``project`` (``None``: global). Its id is derived from
``(project, owner, name)`` (:func:`entity_id`), so a name is one entity per owner and
project, creating it twice is a no-op, and a copy to another store keeps every id.

The backends answer with the same SQL (:mod:`._graphsql`); the memory backend keeps its
graph in an in-process DuckDB database. Access rules are applied by the graph service
(:mod:`session_buddy.core.graph`), which only ever asks for one owner's entities.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: the graph's tables, in the order a copy writes them (entities before what refers to them)
GRAPH_TABLES = ("graph_entities", "graph_observations", "graph_relations", "graph_mentions")


def entity_id(project: str | None, owner: str, name: str) -> str:
    """The id of the entity ``name`` of ``owner`` in ``project`` (None: global)."""
    key = f"{project or ''}\x1f{owner}\x1f{name}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:32]


def observation_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Entity:
    name: str
    entity_type: str
    owner: str
    project: str | None = None
    observations: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=_now)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = entity_id(self.project, self.owner, self.name)


@dataclass(frozen=True, slots=True)
class Relation:
    """``source`` (an entity id) ``relation_type`` ``target``, in active voice."""

    source: str
    target: str
    relation_type: str


@dataclass(frozen=True, slots=True)
class Mention:
    """Item ``item_id`` names entity ``entity_id`` at ``start:end`` of its content."""

    item_id: str
    entity_id: str
    start: int
    end: int


@dataclass(slots=True)
class Details:
    """:meth:`GraphStore.details`' answer."""

    entities: list[Entity]
    relations: list[Relation]
    mentions: list[Mention]


class GraphStore(ABC):
    """What a backend stores and answers for the graph. Ids are :func:`entity_id`'s."""

    @abstractmethod
    async def add_entities(self, entities: Sequence[Entity]) -> list[bool]:
        """Insert entities whose id is new, with their observations, in one transaction;
        one flag per entity: True when it was created (an existing one is left unchanged)."""

    async def link(
        self, entities: Sequence[Entity], mentions: Sequence[Mention], relations: Sequence[Relation]
    ) -> None:
        """What one store's extraction found: new entities (existing ones unchanged), the
        mentions and the relations, written together (the SQL backends: one transaction)."""
        await self.add_entities(entities)
        await self.add_mentions(mentions)
        await self.add_relations(relations)

    @abstractmethod
    async def get_entities(self, ids: Sequence[str]) -> list[Entity]:
        """The entities with these ids and their observations, in the order given."""

    @abstractmethod
    async def find_entities(
        self, owner: str, names: Sequence[str], projects: Sequence[str | None] | None
    ) -> list[Entity]:
        """``owner``'s entities with one of ``names`` in one of ``projects`` (None: any),
        without observations."""

    @abstractmethod
    async def list_entities(
        self, owner: str, projects: Sequence[str | None] | None, limit: int, offset: int
    ) -> list[Entity]:
        """A page of ``owner``'s entities ordered by name then project, with observations."""

    @abstractmethod
    async def count_entities(self, owner: str, projects: Sequence[str | None] | None) -> int: ...

    @abstractmethod
    async def match_entities(
        self, owner: str, projects: Sequence[str | None] | None, words: Sequence[str], limit: int
    ) -> list[Entity]:
        """Candidates for a search: entities whose name, type or an observation contains one
        of ``words`` (lower case), with observations."""

    @abstractmethod
    async def delete_entities(self, ids: Sequence[str]) -> int:
        """Delete entities with their observations, relations and mentions; how many existed."""

    @abstractmethod
    async def add_observations(self, rows: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Add ``(entity id, text)`` observations; returns those that were new."""

    @abstractmethod
    async def delete_observations(self, rows: Sequence[tuple[str, str]]) -> int: ...

    @abstractmethod
    async def add_relations(self, relations: Sequence[Relation]) -> list[bool]:
        """Insert relations (stored as given); True for each one that was new."""

    @abstractmethod
    async def delete_relations(self, relations: Sequence[Relation]) -> int: ...

    @abstractmethod
    async def relations_of(self, ids: Sequence[str], *, among: bool = False) -> list[Relation]:
        """Relations with an end in ``ids`` (``among``: both ends)."""

    @abstractmethod
    async def walk(
        self, seeds: Sequence[str], depth: int, limit: int, fanout: int | None = None
    ) -> list[tuple[str, int]]:
        """Entities within ``depth`` relations of ``seeds`` (either direction) with their
        distance, nearest first then by id (the seeds at 0), at most ``limit``; bounded by
        the depth, cycle-safe, and each entity contributes at most ``fanout`` neighbours to
        the next step (None: all) so a hub does not flood a walk."""

    @abstractmethod
    async def details(self, ids: Sequence[str], mentions: int) -> Details:
        """What an answer about these entities shows, in one batch: the entities with their
        observations (in the order given), the relations among them and at most
        ``mentions`` of their mentions."""

    async def context(
        self, seeds: Sequence[str], depth: int, limit: int, fanout: int | None, mentions: int
    ) -> tuple[list[tuple[str, int]], Details]:
        """:meth:`walk` and the :meth:`details` of what it reached (PostgreSQL: one query)."""
        near = await self.walk(seeds, depth, limit, fanout)
        return near, await self.details([i for i, _ in near], mentions)

    @abstractmethod
    async def add_mentions(self, mentions: Sequence[Mention]) -> int: ...

    @abstractmethod
    async def mentions_of(self, entity_ids: Sequence[str], limit: int) -> list[Mention]:
        """Mentions of these entities (newest items first is not promised), at most ``limit``."""

    @abstractmethod
    async def mentions_in(self, item_ids: Sequence[str]) -> list[Mention]:
        """The mentions of these items."""

    @abstractmethod
    async def mention_counts(self, entity_ids: Sequence[str]) -> dict[str, int]: ...

    @abstractmethod
    async def delete_mentions(self, item_ids: Sequence[str]) -> int: ...

    def unmentioned(self, keys: Sequence[Sequence[Any]]) -> None:
        """Mentions the backend deleted itself (with their items), by key ``(item_id,
        entity_id, start)``: a graph that keeps them in process drops them (else nothing)."""
        del keys

    @abstractmethod
    async def export_rows(
        self, table: str, after: tuple[Any, ...] | None, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows of one of :data:`GRAPH_TABLES` after the key ``after``, in
        key order (a copy's page; times as aware datetimes)."""

    @abstractmethod
    async def import_rows(self, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert exported rows exactly (keys already present are skipped)."""
