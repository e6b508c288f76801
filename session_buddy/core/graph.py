"""The knowledge graph: entities and relations beside the memories, built from them.

No MCP in here: ``tools/graph.py`` calls this. The storage is :mod:`.._graph`'s protocol
(``storage.graph``), the same on every backend.

**The reference server's semantics** (the MCP memory server's tools, by the same names):
create is idempotent on names (an existing entity is left unchanged), relations are stored
as given (active voice: ``verify_token defined_in auth/jwt.py``), adding observations to a
missing entity is an error, every delete of something missing is a no-op, and deleting an
entity deletes its observations, relations and mentions.

**Whose.** An entity belongs to one owner - the acting user for the tools, the owner of
the memory it came from (:func:`~.users.owner_of`) for the automatic ones - and to a
project or none (global). A user reads and changes only their own graph, so another user's
private entities are invisible; the memories an answer shows pass the memories' own rule
(:class:`~.access.Visibility`). A name is looked up in the project given and the global
scope (every project when none is given), the project's own entity first.

**Built automatically.** Every stored item is read by :func:`.graph_extract.extract`
(rules, no model) and each mention becomes an edge item -> entity with its position; a
project's dependencies (the ``project_dependencies`` records) become relations between
project entities. A failure here is logged and never loses the item.

**Used by search.** :meth:`GraphService.expand` adds, below a search's direct hits, the
memories about the entities its query names and their neighbours one hop away, each
marked ``via`` (``graph:verify_token`` or ``graph:verify_token>auth/jwt.py``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from session_buddy.adapters.storage._base import (
    Access,
    ItemFilter,
    MemoryItem,
    NewItem,
    StorageBase,
    check_text,
)
from session_buddy.adapters.storage._graph import Entity, Mention, Relation, entity_id
from session_buddy.core.access import TEAMS
from session_buddy.core.graph_extract import extract, query_names
from session_buddy.core.memory import MemoryService
from session_buddy.core.users import acting_user, owner_of
from session_buddy.errors import NotFound, ValidationError
from session_buddy.search import hybrid
from session_buddy.search.keyword import KeywordIndex
from session_buddy.search.pipeline import SearchHit, SearchRequest
from session_buddy.search.tokens import query_terms, tokenize
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

PROJECTS = "projects"
DEPENDENCIES = "project_dependencies"
MAX_DEPTH = 3
MAX_PATH = 6
MAX_PAGE = 200
#: observations shown per entity, characters per observation, in a listing
SHOWN_OBSERVATIONS = 10
OBSERVATION_CHARS = 300
NEIGHBOURS = 30
#: neighbours one entity contributes to each step of a context's walk (the smallest ids):
#: a hub's thousands of neighbours would cost a walk without changing the 30 shown much
FANOUT = 200
#: mentions read for a context's memories
MENTIONS = 500
#: an entity more memories mention than this is a hub: search does not expand through it
HUB_MENTIONS = 500
KNOWN_TTL_S = 5.0
_WORD = re.compile(r"[\w./@:-]{2,}")


@dataclass(frozen=True)
class EntitySpec:
    name: str
    entity_type: str
    observations: tuple[str, ...] = ()


@dataclass(frozen=True)
class RelationSpec:
    source: str
    target: str
    relation_type: str


def _check(value: object, what: str, limit: int = 512) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string")
    check_text(value, limit, what=what)
    return value.strip()


def entity_view(e: Entity, *, observations: int = SHOWN_OBSERVATIONS) -> dict[str, Any]:
    """An entity as the tools show it (its first observations, each cut)."""
    view: dict[str, Any] = {
        "name": e.name,
        "entity_type": e.entity_type,
        "observations": [o[:OBSERVATION_CHARS] for o in e.observations[:observations]],
    }
    if len(e.observations) > observations:
        view["observations_total"] = len(e.observations)
    if e.project:
        view["project"] = e.project
    return view


def relation_view(r: Relation, names: dict[str, str]) -> dict[str, str]:
    return {"from": names[r.source], "to": names[r.target], "relation_type": r.relation_type}


def _matches(item: MemoryItem, flt: ItemFilter) -> bool:
    """Does ``item`` pass the filter (what the rankers apply, for expanded hits)?"""
    return (
        (flt.projects is None or item.project in flt.projects)
        and (flt.kinds is None or item.kind in flt.kinds)
        and (not flt.tags or set(flt.tags) <= set(item.tags))
        and (flt.role is None or item.role == flt.role)
        and (flt.session_id is None or item.session_id == flt.session_id)
        and (flt.after is None or item.created_at >= flt.after)
        and (flt.before is None or item.created_at < flt.before)
    )


def excerpt(content: str, start: int, end: int, width: int = 90) -> str:
    """The text around a mention."""
    left, right = max(0, start - width), min(len(content), end + width)
    return ("…" if left else "") + content[left:right] + ("…" if right < len(content) else "")


class GraphService:
    def __init__(
        self,
        storage: StorageBase,
        settings: SessionBuddySettings,
        memory: MemoryService | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.memory = memory
        self._known: tuple[float, frozenset[str], frozenset[str]] | None = None
        self._linked: set[tuple[str, str]] = set()

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> GraphService:
        memory = resolve(MemoryService)
        service = cls(resolve(StorageBase), resolve(SessionBuddySettings), memory)
        memory.graph = service
        return service

    @property
    def graph(self) -> Any:
        return self.storage.graph

    def owner(self) -> str:
        return acting_user(self.settings)

    # -- automatic: items -> entities -----------------------------------------------------

    async def _known_names(self) -> tuple[frozenset[str], frozenset[str]]:
        """The project names and team members' names (cached for a few seconds)."""
        now = time.monotonic()
        if self._known is None or now - self._known[0] > KNOWN_TTL_S:
            projects = await self.storage.list_records(PROJECTS, limit=10_000)
            teams = await self.storage.list_records(TEAMS, limit=10_000)
            people = {m for t in teams for m in t.data.get("members", []) if isinstance(m, str)}
            self._known = (now, frozenset(r.id for r in projects), frozenset(people))
            self._linked.clear()  # dependencies may have changed: link them again
        return self._known[1], self._known[2]

    async def index_items(self, items: Sequence[tuple[str, NewItem | MemoryItem]]) -> None:
        """Link items to the entities they mention (module doc; not with ``graph.extract``
        off); never raises."""
        if not items or not self.settings.graph.extract:
            return
        try:
            await self._index(items)
        except Exception as exc:  # the item is stored; the graph is derived from it
            log.warning("knowledge graph: %d items not linked: %s", len(items), exc)

    async def _index(self, items: Sequence[tuple[str, NewItem | MemoryItem]]) -> None:
        projects, people = await self._known_names()
        entities: dict[str, Entity] = {}
        mentions: list[Mention] = []
        relations: set[Relation] = set()
        for item_id, x in items:
            owner = owner_of(x.author, self.settings)
            found = extract(x.content, projects=projects, people=people)
            for m in found.mentions:
                # projects and people are nobody's project: global
                scope = None if m.entity_type in ("project", "person") else x.project
                e = Entity(m.name, m.entity_type, owner, scope)
                entities.setdefault(e.id, e)
                mentions.append(Mention(item_id, e.id, m.start, m.end))
            for source, kind, target in found.relations:
                relations.add(
                    Relation(
                        entity_id(x.project, owner, source),
                        entity_id(x.project, owner, target),
                        kind,
                    )
                )
            if x.project and x.project in projects and (owner, x.project) not in self._linked:
                await self._project_links(owner, x.project, entities, relations)
        ordered = sorted(relations, key=lambda r: (r.source, r.target, r.relation_type))
        await self.graph.link(list(entities.values()), mentions, ordered)

    async def _project_links(
        self, owner: str, project: str, entities: dict[str, Entity], relations: set[Relation]
    ) -> None:
        """The project's entity and its recorded dependencies, as relations."""
        self._linked.add((owner, project))
        own = Entity(project, "project", owner)
        entities.setdefault(own.id, own)
        for dep in await self.storage.list_records(DEPENDENCIES, project=project, limit=1000):
            target = Entity(str(dep.data.get("target")), "project", owner)
            entities.setdefault(target.id, target)
            relations.add(Relation(own.id, target.id, str(dep.data.get("type") or "uses")))

    # -- lookups ----------------------------------------------------------------------------

    @staticmethod
    def _scope(project: str | None) -> list[str | None] | None:
        return [project, None] if project else None

    async def _resolve(self, names: Sequence[str], project: str | None) -> dict[str, Entity]:
        """The owner's entity of each name that has one (the project's, then global, then
        the first other project)."""
        found = await self.graph.find_entities(self.owner(), list(names), self._scope(project))
        best: dict[str, Entity] = {}
        for e in found:
            rank = (e.project != project, e.project is not None, e.project or "")
            current = best.get(e.name)
            if current is None or rank < (
                current.project != project,
                current.project is not None,
                current.project or "",
            ):
                best[e.name] = e
        return best

    async def _one(self, name: str, project: str | None, what: str = "name") -> Entity:
        found = (await self._resolve([_check(name, what)], project)).get(name.strip())
        if found is None:
            raise NotFound(f"no entity named {name!r}" + (f" in {project!r}" if project else ""))
        return found

    async def _names(self, ids: Sequence[str]) -> dict[str, str]:
        return {e.id: e.name for e in await self.graph.get_entities(list(dict.fromkeys(ids)))}

    async def _relation_views(self, relations: Sequence[Relation]) -> list[dict[str, str]]:
        names = await self._names([i for r in relations for i in (r.source, r.target)])
        return [
            relation_view(r, names) for r in relations if r.source in names and r.target in names
        ]

    # -- the reference server's tools ---------------------------------------------------------

    async def create_entities(
        self, specs: Sequence[EntitySpec], project: str | None
    ) -> list[dict[str, Any]]:
        """Create the entities whose names are new; returns those created."""
        owner = self.owner()
        new = [
            Entity(
                _check(s.name, "name"),
                _check(s.entity_type, "entity_type", 128),
                owner,
                project,
                [_check(o, "an observation", 16 * 1024) for o in s.observations],
            )
            for s in specs
        ]
        created = await self.graph.add_entities(new)
        return [entity_view(e) for e, made in zip(new, created, strict=True) if made]

    async def create_relations(
        self, specs: Sequence[RelationSpec], project: str | None
    ) -> list[dict[str, str]]:
        """Store relations between existing entities as given; returns those that were new."""
        for s in specs:
            _check(s.relation_type, "relation_type", 128)
        ends = await self._resolve([n for s in specs for n in (s.source, s.target)], project)
        missing = sorted({n for s in specs for n in (s.source, s.target) if n not in ends})
        if missing:
            raise NotFound(
                "no entity named " + ", ".join(repr(m) for m in missing) + ": create_entities first"
            )
        relations = [
            Relation(ends[s.source].id, ends[s.target].id, s.relation_type.strip()) for s in specs
        ]
        made = await self.graph.add_relations(relations)
        return [
            {"from": s.source, "to": s.target, "relation_type": r.relation_type}
            for s, r, new in zip(specs, relations, made, strict=True)
            if new
        ]

    async def add_observations(
        self, additions: Sequence[tuple[str, Sequence[str]]], project: str | None
    ) -> list[dict[str, Any]]:
        """Add observations to existing entities (NotFound for a missing one)."""
        found = await self._resolve([name for name, _ in additions], project)
        missing = [name for name, _ in additions if name not in found]
        if missing:
            raise NotFound(f"no entity named {missing[0]!r}: create_entities first")
        rows = [
            (found[name].id, _check(o, "an observation", 16 * 1024))
            for name, observations in additions
            for o in observations
        ]
        added = set(await self.graph.add_observations(rows))
        out = []
        for name, observations in additions:
            eid = found[name].id
            new = [o for o in dict.fromkeys(x.strip() for x in observations) if (eid, o) in added]
            out.append({"entity_name": name, "added_observations": new})
            added -= {(eid, o) for o in new}
        return out

    async def delete_entities(self, names: Sequence[str], project: str | None) -> int:
        found = await self._resolve(list(names), project)
        return int(await self.graph.delete_entities([e.id for e in found.values()]))

    async def delete_observations(
        self, deletions: Sequence[tuple[str, Sequence[str]]], project: str | None
    ) -> int:
        found = await self._resolve([name for name, _ in deletions], project)
        rows = [(found[n].id, o) for n, obs in deletions if n in found for o in obs]
        return int(await self.graph.delete_observations(rows))

    async def delete_relations(self, specs: Sequence[RelationSpec], project: str | None) -> int:
        ends = await self._resolve([n for s in specs for n in (s.source, s.target)], project)
        relations = [
            Relation(ends[s.source].id, ends[s.target].id, s.relation_type)
            for s in specs
            if s.source in ends and s.target in ends
        ]
        return int(await self.graph.delete_relations(relations))

    async def read_graph(self, project: str | None, limit: int, offset: int) -> dict[str, Any]:
        """One page of the owner's graph: entities by name, the relations touching them."""
        owner, scope = self.owner(), self._scope(project)
        page = await self.graph.list_entities(owner, scope, limit + 1, offset)
        more = len(page) > limit
        page = page[:limit]
        relations = await self.graph.relations_of([e.id for e in page])
        return {
            "entities": [entity_view(e) for e in page],
            "relations": (await self._relation_views(relations[: limit * 4]))[: limit * 4],
            "total": await self.graph.count_entities(owner, scope),
            "next_offset": offset + limit if more else None,
        }

    async def open_nodes(self, names: Sequence[str], project: str | None) -> dict[str, Any]:
        found = await self._resolve(list(names), project)
        entities = await self.graph.get_entities([found[n].id for n in names if n in found])
        relations = await self.graph.relations_of([e.id for e in entities], among=True)
        return {
            "entities": [entity_view(e, observations=50) for e in entities],
            "relations": await self._relation_views(relations[:200]),
        }

    async def search_nodes(self, query: str, project: str | None, limit: int) -> dict[str, Any]:
        """Hybrid search over the entities: BM25 over name, type and observations fused with
        the entities of the memories that match the query's meaning."""
        _check(query, "query", 4096)
        owner, scope = self.owner(), self._scope(project)
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:12]
        candidates = await self.graph.match_entities(owner, scope, words, 500)
        by_id = {e.id: e for e in candidates}
        rankings, kinds = [self._bm25(query, candidates)], ["keyword"]
        semantic, mode = await self._semantic_entities(query, project, owner)
        if semantic is not None:
            rankings.append(semantic)
            kinds.append("semantic")
        fused = hybrid.fuse_weighted(rankings, self.settings.search.keyword_weight, kinds=kinds)
        top = [f.id for f in fused[:limit]]
        missing = [i for i in top if i not in by_id]
        by_id.update({e.id: e for e in await self.graph.get_entities(missing)})
        entities = [by_id[i] for i in top if i in by_id]
        relations = await self.graph.relations_of([e.id for e in entities], among=True)
        return {
            "query": query,
            "mode": mode,
            "entities": [entity_view(e) for e in entities],
            "relations": await self._relation_views(relations[:100]),
        }

    @staticmethod
    def _bm25(query: str, candidates: Sequence[Entity]) -> list[Any]:
        from session_buddy.adapters.storage._base import Hit

        index = KeywordIndex()
        index.ensure_capacity(len(candidates))
        for row, e in enumerate(candidates):
            text = f"{e.name} {e.entity_type} " + " ".join(e.observations)
            index.add(row, tokenize(text))
        scores = index.scores(query_terms(query), len(candidates))
        if scores is None:
            return []
        order = sorted(
            (i for i in range(len(candidates)) if scores[i] > 0), key=lambda i: -scores[i]
        )
        return [Hit(candidates[i].id, float(scores[i])) for i in order]

    async def _semantic_entities(
        self, query: str, project: str | None, owner: str
    ) -> tuple[list[Any] | None, str]:
        """The owner's entities mentioned by the memories nearest the query in meaning,
        scored by that memory's similarity (None when vectors are off)."""
        from session_buddy.adapters.storage._base import Hit

        if self.memory is None:
            return None, "keyword"
        found = await self.memory.search(
            query, projects=[project] if project else None, mode="semantic", limit=20
        )
        if found.mode != "semantic":
            return None, "keyword"
        best: dict[str, float] = {}
        score = {h.id: h.semantic_score or 0.0 for h in found.hits}
        for m in await self.graph.mentions_in(list(score)):
            best[m.entity_id] = max(best.get(m.entity_id, 0.0), score[m.item_id])
        entities = await self.graph.get_entities(list(best))
        own = {e.id for e in entities if e.owner == owner}
        ranked = sorted((i for i in best if i in own), key=lambda i: -best[i])
        return [Hit(i, best[i]) for i in ranked], "hybrid"

    # -- neighbourhoods, paths, search expansion --------------------------------------------

    async def entity_context(
        self, name: str, depth: int, project: str | None, limit: int
    ) -> dict[str, Any]:
        """The entity, its neighbours up to ``depth`` relations away, the relations among
        them and the memories (visible to the caller) that mention them, nearest first."""
        if not 1 <= depth <= MAX_DEPTH:
            raise ValidationError(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
        entity = await self._one(name, project)
        near, details = await self.graph.context(
            [entity.id], depth, NEIGHBOURS + 1, FANOUT, MENTIONS
        )
        distance, owner = dict(near), self.owner()
        found = {e.id: e for e in details.entities if e.owner == owner}
        ids = [i for i, _ in near if i in found]
        relations = [r for r in details.relations if r.source in found and r.target in found]
        mentions = [m for m in details.mentions if m.entity_id in found]
        names = {i: e.name for i, e in found.items()}
        return {
            "entity": entity_view(found[entity.id], observations=50),
            "neighbours": [
                {**entity_view(found[i], observations=3), "distance": distance[i]}
                for i in ids[1 : NEIGHBOURS + 1]
            ],
            "relations": [relation_view(r, names) for r in relations[:100]],
            "memories": await self._memories_about(mentions, distance, found, limit),
            "truncated": len(near) > NEIGHBOURS,
        }

    async def _memories_about(
        self,
        mentions: list[Mention],
        distance: dict[str, int],
        found: dict[str, Entity],
        limit: int,
    ) -> list[dict[str, Any]]:
        first: dict[str, Mention] = {}
        for m in sorted(mentions, key=lambda m: (distance[m.entity_id], m.start)):
            first.setdefault(m.item_id, m)
        access = await self._access()
        items = await self.storage.get_items(list(first)[: limit * 5])
        visible = [x for x in items if access is None or access.allows(x.author, x.id)]
        visible.sort(key=lambda x: (distance[first[x.id].entity_id], -x.created_at.timestamp()))
        out = []
        for x in visible[:limit]:
            m = first[x.id]
            out.append(
                {
                    "id": x.id,
                    "kind": x.kind,
                    "project": x.project,
                    "created_at": x.created_at.isoformat(),
                    "about": found[m.entity_id].name,
                    "excerpt": excerpt(x.content, m.start, m.end),
                }
            )
        return out

    async def _access(self) -> Access | None:
        return None if self.memory is None else await self.memory.access()

    async def find_path(
        self, source: str, target: str, project: str | None, max_depth: int
    ) -> dict[str, Any]:
        """A shortest chain of relations (either direction) from ``source`` to ``target``."""
        if not 1 <= max_depth <= MAX_PATH:
            raise ValidationError(f"max_depth must be between 1 and {MAX_PATH}, not {max_depth}")
        a = await self._one(source, project, "from")
        b = await self._one(target, project, "to")
        if a.id == b.id:
            return {"found": True, "length": 0, "path": []}
        distance: dict[str, int] = {}
        for depth in range(1, max_depth + 1):
            distance = dict(await self.graph.walk([a.id], depth, 1_000_000))
            if b.id in distance or len(distance) == 1:
                break
        if b.id not in distance:
            return {"found": False, "length": None, "path": []}
        steps: list[Relation] = []
        current = b.id
        for k in range(distance[b.id] - 1, -1, -1):
            options = [
                r
                for r in await self.graph.relations_of([current])
                if distance.get(r.target if r.source == current else r.source) == k
            ]
            step = min(options, key=lambda r: (r.relation_type, r.source, r.target))
            steps.append(step)
            current = step.target if step.source == current else step.source
        steps.reverse()
        return {"found": True, "length": len(steps), "path": await self._relation_views(steps)}

    async def expand(self, request: SearchRequest, hits: list[SearchHit]) -> list[SearchHit]:
        """Memories about the entities the query names (else those of its best hits) and
        their neighbours one hop away, after the direct hits (module doc)."""
        owner, flt = self.owner(), request.filter
        scope = [*flt.projects, None] if flt.projects else None
        seeds = await self.graph.find_entities(owner, query_names(request.query), scope)
        if not seeds and hits:
            mentioned = await self.graph.mentions_in([h.id for h in hits[:3]])
            seeds = await self.graph.get_entities([m.entity_id for m in mentioned][:10])
        seeds = [e for e in seeds if e.owner == owner][:10]
        if not seeds:
            return []
        parent: dict[str, str | None] = {e.id: None for e in seeds}
        for r in await self.graph.relations_of(list(parent)):
            for near, seed in ((r.target, r.source), (r.source, r.target)):
                if seed in parent and parent[seed] is None and near not in parent:
                    parent[near] = seed
        names = await self._names(list(parent))
        counts = await self.graph.mention_counts(list(parent))
        kept = [i for i in parent if counts.get(i, 0) <= HUB_MENTIONS and i in names]
        labels = {
            i: f"graph:{names[i]}" if p is None else f"graph:{names[p]}>{names[i]}"
            for i in kept
            if (p := parent[i]) is None or p in names
        }
        kept = [i for i in kept if i in labels]
        return await self._expanded_hits(request, hits, kept, labels)

    async def _expanded_hits(
        self,
        request: SearchRequest,
        hits: list[SearchHit],
        kept: list[str],
        labels: dict[str, str],
    ) -> list[SearchHit]:
        direct = {h.id for h in hits}
        order = {i: n for n, i in enumerate(kept)}
        first: dict[str, str] = {}
        for m in sorted(await self.graph.mentions_of(kept, 400), key=lambda m: order[m.entity_id]):
            if m.item_id not in direct:
                first.setdefault(m.item_id, m.entity_id)
        items = await self.storage.get_items(list(first)[: request.limit * 4])
        access = request.access
        chosen = [
            x
            for x in items
            if (access is None or access.allows(x.author, x.id)) and _matches(x, request.filter)
        ]
        chosen.sort(key=lambda x: (order[first[x.id]], -x.created_at.timestamp()))
        floor = min((h.score for h in hits), default=1.0)
        snippet = self.settings.search.snippet_chars
        out = []
        for n, x in enumerate(chosen[: request.limit]):
            score = floor * 0.9 ** (n + 1)
            hit = SearchHit.of(x, snippet, score=score, fused_score=score, confidence="low")
            hit.via = labels[first[x.id]]
            out.append(hit)
        return out
