"""Projects as first-class things: names, aliases, groups, dependencies, and search across them.

No MCP in here.

**Projects.** A project is a name. It exists implicitly as soon as memory items carry it, or
a session starts in its folder (named by its manifest, its git remote or the git root's
folder, as :func:`session_buddy.core.project.project_identity` names it); :meth:`ProjectService.resolve`
also turns a working directory into its project (git root, or the folder itself outside
git). It can be created explicitly with a path, a description and **aliases**: other names
that mean the same project (an old name, the folder name when the project is called
something else). Items stored under an alias belong to the project.

**Relations.** Projects depend on each other (``uses``, ``extends``, ``references``,
``shares_code``; a directed edge ``source -> target``) and belong to named groups.

**Search across projects.** ``search_across_projects(query, project, include=...)`` searches
a set of projects at once; ``include`` widens the set step by step:

* ``related`` (default): the project and its direct dependencies, in both directions
  (``A uses B``: searching from A includes B, and from B includes A);
* ``group``: that, plus every project that shares a group with it;
* ``all``: every project (items without a project too).

One hybrid search runs over the whole set (so the fused scores are comparable), each hit's
fused score is multiplied by the weight of its project's tier, and hits are ordered by that:

===================== ====== =======================================
tier                  weight reason given
===================== ====== =======================================
current               1.00   ``current project``
dependency            0.85   ``A uses B`` (each edge between them)
group                 0.70   ``same group 'payments'``
other (include=all)   0.50   ``other project (include='all')``
===================== ====== =======================================

An item of the current project therefore ranks above an equally similar item of a
dependency, which ranks above the group's, and so on; a much better match from a
dependency still wins (0.85 x 0.9 = 0.765 > 1.0 x 0.7). A project in several tiers takes the
best. The hits also pass the access rule of :mod:`session_buddy.core.teams` (a user sees
their own items and those shared with their teams). Searching one project elsewhere
(``search(project=...)``) is unchanged: scoped to that project only.

**Insights.** ``get_project_insights(project)`` gives the most useful recent reflections and
insights of the related projects (``group`` scope, the current project left out; usefulness
= tier weight x recency, a 30-day half-life) and the patterns that recur across projects:
items of two or more projects (the current one included) that share an identifier (an error
code such as ``ERR_CONN_4021``, an exception name such as ``ConnectionResetError``, an errno
such as ``ECONNREFUSED``) or whose texts are near-duplicates (cosine >= 0.80 of their
embeddings), linked transitively (:mod:`session_buddy.core.patterns`).

Records (``project`` is the key each collection is listed by):

==================== =========================== ============ ==============================
collection           id                          project      data
==================== =========================== ============ ==============================
projects             name                        name         path, aliases, description,
                                                              explicit (+ the session
                                                              service's last_session_id...)
project_aliases      alias                       project      project
project_groups       group name                  None         projects, description
project_dependencies ``["src", "dst", "type"]``  source       source, target, type,
                                                              description
==================== =========================== ============ ==============================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from session_buddy.adapters.storage._base import (
    ItemFilter,
    MemoryItem,
    Record,
    StorageBase,
    check_text,
    utcnow,
)
from session_buddy.core.memory import MemoryService, SearchMode
from session_buddy.core.patterns import rank_useful, recurring_patterns
from session_buddy.core.project import find_git_root, project_identity
from session_buddy.core.project_records import PROJECTS, ProjectRecords
from session_buddy.core.teams import TeamService, check_name
from session_buddy.errors import NotFound, ValidationError
from session_buddy.search.pipeline import Candidate, Rescore, ScopeFacts, SearchHit, SearchRequest
from session_buddy.settings import SessionBuddySettings

# PROJECTS is written only through ProjectRecords (sessions report there too)
ALIASES = "project_aliases"
GROUPS = "project_groups"
DEPENDENCIES = "project_dependencies"

DEPENDENCY_TYPES = ("uses", "extends", "references", "shares_code")
Include = Literal["related", "group", "all"]
INCLUDES: tuple[Include, ...] = ("related", "group", "all")
Tier = Literal["current", "dependency", "group", "other"]
TIER_WEIGHTS: dict[Tier, float] = {"current": 1.0, "dependency": 0.85, "group": 0.7, "other": 0.5}
TIER_ORDER: tuple[Tier, ...] = ("current", "dependency", "group", "other")

#: verbs for the reason of a dependency hit, by type (source <verb> target)
_VERBS = {
    "uses": "uses",
    "extends": "extends",
    "references": "references",
    "shares_code": "shares code with",
}
#: how many recent reflections and insights get_project_insights considers
PATTERN_CANDIDATES = 300
_ALL = 1_000_000


@dataclass
class Related:
    """Why a project is in a search's scope."""

    project: str
    tier: Tier
    reasons: list[str] = field(default_factory=list)

    @property
    def weight(self) -> float:
        return TIER_WEIGHTS[self.tier]


@dataclass
class CrossProjectSearch:
    query: str
    project: str
    include: Include
    projects: list[Related]
    hits: list[SearchHit]  # with their ScopeFacts (tier, weight, why)
    confidence: str
    mode: str
    degraded: str | None


def tier_rescore(by_name: dict[str, Related], alias_map: dict[str, str]) -> Rescore:
    """The rescoring step of cross-project search: fused score x the tier weight of the
    hit's project (module doc), best first, the better tier first on a tie."""
    other = Related("", "other", ["other project (include='all')"])

    async def rescore(candidates: list[Candidate]) -> list[Candidate]:
        tiers: dict[str, int] = {}
        for c in candidates:
            canonical = alias_map.get(c.project, c.project) if c.project else None
            rel = (by_name.get(canonical) if canonical else None) or other
            why = "; ".join(rel.reasons)
            if c.project and canonical != c.project:
                why += f" (stored under its alias {c.project!r})"
            c.score = c.fused_score * rel.weight
            c.scope = ScopeFacts(rel.tier, rel.weight, canonical, why)
            tiers[c.id] = TIER_ORDER.index(rel.tier)
        candidates.sort(key=lambda c: (-c.score, tiers[c.id]))
        return candidates

    return rescore


def _looks_like_path(value: str) -> bool:
    """A working directory rather than a name ("org/repo" stays a name)."""
    return value.startswith(("/", "~", "./", "../", f".{os.sep}")) or value in (".", "..")


def _root_of(directory: str) -> Path:
    """The git root of a folder, or the folder itself outside git (blocking)."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ValidationError(f"{directory!r} is not a folder; give a project name or a folder")
    return find_git_root(path) or path.resolve()


class ProjectService:
    def __init__(
        self,
        storage: StorageBase,
        memory: MemoryService,
        teams: TeamService,
        settings: SessionBuddySettings,
    ) -> None:
        self.storage = storage
        self.memory = memory
        self.teams = teams
        self.settings = settings
        self._lock = asyncio.Lock()

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> ProjectService:
        return cls(
            resolve(StorageBase),
            resolve(MemoryService),
            resolve(TeamService),
            resolve(SessionBuddySettings),
        )

    # -- names, aliases and directories -----------------------------------------------------

    async def _alias_map(self) -> dict[str, str]:
        """alias -> project."""
        return {
            r.id: r.data["project"]
            for r in await self.storage.list_records(ALIASES, limit=_ALL, newest_first=False)
        }

    async def _aliases_of(self, name: str) -> list[str]:
        return sorted(
            r.id for r in await self.storage.list_records(ALIASES, project=name, limit=_ALL)
        )

    async def resolve(self, project: str) -> str:
        """The canonical name of a project given by name, alias or directory (its git root;
        the project is then registered implicitly with that path)."""
        value = check_name(project, "project") if not _looks_like_path(str(project)) else project
        if _looks_like_path(value):
            return await self.from_directory(value)
        alias = await self.storage.get_record(ALIASES, value)
        if alias is not None:
            return str(alias.data["project"])
        return value

    async def from_directory(self, directory: str) -> str:
        """The project of a working directory: its git root (or itself outside git), named
        as sessions name it (the manifest's name, else the git remote's, else the folder's:
        :func:`~session_buddy.core.project.project_identity`), unless a project was created
        explicitly with that path under another name. Registers the project when new, with
        its other names (the folder's, the remote's) as aliases where they are free."""
        root = await asyncio.to_thread(_root_of, directory)
        for record in await self.storage.list_records(PROJECTS, limit=_ALL):
            if record.data.get("path") == str(root) and record.data.get("explicit"):
                return record.id
        identity = await asyncio.to_thread(project_identity, root)
        name = await self.resolve(identity.name)
        await self._ensure(name, path=str(root))
        for alias in identity.aliases:
            with contextlib.suppress(ValidationError):  # a name taken by another project
                await self._add_alias(name, alias)
        return name

    async def _ensure(self, name: str, *, path: str | None = None) -> Record:
        """The project's record, created (implicitly) when missing."""

        def ensure(current: Record | None) -> Record | None:
            now = utcnow()
            if current is None:
                return Record(
                    collection=PROJECTS,
                    id=name,
                    project=name,
                    data={"path": path, "explicit": False},
                    created_at=now,
                    updated_at=now,
                )
            if path and not current.data.get("path"):
                current.data["path"] = path
                current.updated_at = now
                return current
            return None

        record = await ProjectRecords(self.storage).change(name, ensure)
        assert record is not None  # created when missing
        return record

    async def create_project(
        self,
        name: str,
        path: str | None = None,
        aliases: Iterable[str] = (),
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a project explicitly, or add a path, aliases or a description to one.

        With a ``path`` whose folder has another name, that folder name becomes an alias
        (when it is not a project of its own), so items stored by sessions there count."""
        project = check_name(name, "project name")
        if await self.storage.get_record(ALIASES, project) is not None:
            raise ValidationError(f"{project!r} is an alias of another project; pick another name")
        root: str | None = None
        if path:
            root = str(await asyncio.to_thread(_root_of, path))
        if description is not None:
            check_text(description, 64 * 1024, what="description")
        wanted = [check_name(a, "alias") for a in aliases]
        async with self._lock:
            await self._ensure(project)
            if root:
                folder_name = Path(root).name
                if (
                    folder_name != project
                    and await self.storage.get_record(PROJECTS, folder_name) is None
                ):
                    wanted.append(folder_name)
            for alias in dict.fromkeys(wanted):
                await self._add_alias(project, alias)

            def update(current: Record | None) -> Record:
                record = current or Record(
                    collection=PROJECTS, id=project, project=project, data={}
                )
                if root:
                    record.data["path"] = root
                if description is not None:
                    record.data["description"] = description
                record.data["explicit"] = True
                record.updated_at = utcnow()
                return record

            await ProjectRecords(self.storage).change(project, update)
        return await self.describe(project)

    async def _add_alias(self, project: str, alias: str) -> None:
        if alias == project:
            return
        if await self.storage.get_record(PROJECTS, alias) is not None:
            raise ValidationError(
                f"alias {alias!r} is the name of a project; an alias must be a free name"
            )

        def claim(taken: Record | None) -> Record | None:
            # one step: two services claiming one alias for two projects cannot both win
            if taken is None:
                return Record(
                    collection=ALIASES, id=alias, project=project, data={"project": project}
                )
            if taken.data["project"] != project:
                raise ValidationError(
                    f"alias {alias!r} already means project {taken.data['project']!r}"
                )
            return None

        await self.storage.modify_record(ALIASES, alias, claim)

    async def describe(self, project: str) -> dict[str, Any]:
        name = await self.resolve(project)
        record = await self.storage.get_record(PROJECTS, name)
        data = record.data if record else {}
        return {
            "name": name,
            "path": data.get("path"),
            "description": data.get("description"),
            "aliases": await self._aliases_of(name),
            "explicit": bool(data.get("explicit")),
            "registered": record is not None,
        }

    # -- groups -----------------------------------------------------------------------------

    async def create_project_group(
        self, name: str, projects: Iterable[str], description: str | None = None
    ) -> dict[str, Any]:
        """Create a group, or replace its projects and description when it exists."""
        group = check_name(name, "group name")
        members = [await self.resolve(p) for p in projects]
        if not members:
            raise ValidationError("projects is empty: a group needs at least one project")
        if description is not None:
            check_text(description, 64 * 1024, what="description")
        async with self._lock:
            for member in members:
                await self._ensure(member)
            existing = await self.storage.get_record(GROUPS, group)
            now = utcnow()
            record = Record(
                collection=GROUPS,
                id=group,
                data={"projects": list(dict.fromkeys(members)), "description": description},
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
            await self.storage.put_record(record)
        return {**self._group_view(record), "replaced": existing is not None}

    @staticmethod
    def _group_view(record: Record) -> dict[str, Any]:
        return {
            "name": record.id,
            "projects": list(record.data.get("projects", [])),
            "description": record.data.get("description"),
        }

    async def list_project_groups(self) -> list[dict[str, Any]]:
        records = await self.storage.list_records(GROUPS, limit=_ALL, newest_first=False)
        return sorted((self._group_view(r) for r in records), key=lambda g: g["name"])

    async def delete_project_group(self, name: str) -> None:
        if not await self.storage.delete_record(GROUPS, check_name(name, "group name")):
            raise NotFound(f"no project group {name!r} (list_project_groups shows them)")

    # -- dependencies -----------------------------------------------------------------------

    @staticmethod
    def _check_type(dependency_type: str) -> str:
        if dependency_type not in DEPENDENCY_TYPES:
            raise ValidationError(
                f"dependency_type must be one of {', '.join(DEPENDENCY_TYPES)}, "
                f"not {dependency_type!r}"
            )
        return dependency_type

    async def add_project_dependency(
        self, source: str, target: str, dependency_type: str, description: str | None = None
    ) -> dict[str, Any]:
        """Record that ``source`` uses/extends/references/shares code with ``target``."""
        kind = self._check_type(dependency_type)
        src, dst = await self.resolve(source), await self.resolve(target)
        if src == dst:
            raise ValidationError(f"a project cannot depend on itself ({src!r})")
        if description is not None:
            check_text(description, 64 * 1024, what="description")
        async with self._lock:
            await self._ensure(src)
            await self._ensure(dst)
            key = json.dumps([src, dst, kind])
            existing = await self.storage.get_record(DEPENDENCIES, key)
            now = utcnow()
            await self.storage.put_record(
                Record(
                    collection=DEPENDENCIES,
                    id=key,
                    project=src,
                    data={"source": src, "target": dst, "type": kind, "description": description},
                    created_at=existing.created_at if existing else now,
                    updated_at=now,
                )
            )
        return {
            "source": src,
            "target": dst,
            "dependency_type": kind,
            "description": description,
            "created": existing is None,
        }

    async def remove_project_dependency(
        self, source: str, target: str, dependency_type: str | None = None
    ) -> dict[str, Any]:
        """Remove the edge of that type (every type when None); NotFound when none exists."""
        kinds = [self._check_type(dependency_type)] if dependency_type else list(DEPENDENCY_TYPES)
        src, dst = await self.resolve(source), await self.resolve(target)
        removed = [
            k
            for k in kinds
            if await self.storage.delete_record(DEPENDENCIES, json.dumps([src, dst, k]))
        ]
        if not removed:
            what = f"{dependency_type} " if dependency_type else ""
            raise NotFound(f"no {what}dependency from {src!r} to {dst!r} (get_project_graph)")
        return {"source": src, "target": dst, "removed": removed}

    async def _edges(self) -> list[dict[str, Any]]:
        records = await self.storage.list_records(DEPENDENCIES, limit=_ALL, newest_first=False)
        return [dict(r.data) for r in records]

    # -- graph and scope --------------------------------------------------------------------

    async def related(self, project: str, include: Include = "related") -> list[Related]:
        """The projects a search from ``project`` covers, best tier first, with reasons."""
        if include not in INCLUDES:
            raise ValidationError(f"include must be one of {', '.join(INCLUDES)}, not {include!r}")
        name = await self.resolve(project)
        scope: dict[str, Related] = {name: Related(name, "current", ["current project"])}

        def add(other: str, tier: Tier, reason: str) -> None:
            entry = scope.get(other)
            if entry is None:
                scope[other] = Related(other, tier, [reason])
            elif TIER_ORDER.index(tier) < TIER_ORDER.index(entry.tier):
                entry.tier, entry.reasons = tier, [reason]
            elif tier == entry.tier and reason not in entry.reasons:
                entry.reasons.append(reason)

        for edge in await self._edges():
            text = f"{edge['source']} {_VERBS[edge['type']]} {edge['target']}"
            if edge["source"] == name:
                add(edge["target"], "dependency", text)
            elif edge["target"] == name:
                add(edge["source"], "dependency", text)
        if include in ("group", "all"):
            for group in await self.storage.list_records(GROUPS, limit=_ALL, newest_first=False):
                members = group.data.get("projects", [])
                if name in members:
                    for other in members:
                        add(other, "group", f"same group {group.id!r}")
        return sorted(scope.values(), key=lambda r: (TIER_ORDER.index(r.tier), r.project))

    async def get_project_graph(self, project: str | None = None) -> dict[str, Any]:
        """One project's neighbourhood (aliases, edges both ways, groups, search scopes), or
        with ``project=None`` every project, edge and group."""
        edges = await self._edges()
        groups = await self.list_project_groups()
        view = [
            {
                "source": e["source"],
                "target": e["target"],
                "dependency_type": e["type"],
                "description": e.get("description"),
            }
            for e in edges
        ]
        if project is None:
            names = {r.id for r in await self.storage.list_records(PROJECTS, limit=_ALL)}
            names |= {e["source"] for e in edges} | {e["target"] for e in edges}
            for g in groups:
                names.update(g["projects"])
            return {
                "projects": [await self.describe(n) for n in sorted(names)],
                "dependencies": view,
                "groups": groups,
            }
        name = await self.resolve(project)
        return {
            "project": await self.describe(name),
            "depends_on": [e for e in view if e["source"] == name],
            "used_by": [e for e in view if e["target"] == name],
            "groups": [g for g in groups if name in g["projects"]],
            "search_scope": {
                inc: [
                    {"project": r.project, "tier": r.tier, "weight": r.weight, "why": r.reasons}
                    for r in await self.related(name, inc)
                ]
                for inc in ("related", "group")
            },
        }

    async def _stored_names(self, scope: list[Related]) -> dict[str, str]:
        """Every name items may be stored under (projects and their aliases) -> project."""
        wanted = {r.project for r in scope}
        names = {p: p for p in wanted}
        for alias, target in (await self._alias_map()).items():
            if target in wanted:
                names[alias] = target
        return names

    # -- search -----------------------------------------------------------------------------

    async def search_across_projects(
        self,
        query: str,
        project: str,
        limit: int = 10,
        include: Include = "related",
        mode: SearchMode = "hybrid",
    ) -> CrossProjectSearch:
        """Search the project and its related ones, ranked by tier (module doc)."""
        if not 1 <= limit <= 100:
            raise ValidationError(f"limit must be between 1 and 100, not {limit}")
        scope = await self.related(project, include)
        current = scope[0].project
        by_name = {r.project: r for r in scope}
        stored = await self._stored_names(scope)
        alias_map = await self._alias_map()
        response = await self.memory.pipeline.run(
            SearchRequest(
                query,
                ItemFilter(projects=None if include == "all" else sorted(stored)),
                access=await self.memory.access(),
                mode=mode,
                limit=limit,
                half_life_days=self.settings.search.decay_half_life_days,
                rescore=tier_rescore(by_name, alias_map),
            )
        )
        return CrossProjectSearch(
            query=query,
            project=current,
            include=include,
            projects=scope,
            hits=response.hits,
            confidence=response.confidence,
            mode=response.mode,
            degraded=response.degraded,
        )

    # -- insights ---------------------------------------------------------------------------

    async def get_project_insights(self, project: str, limit: int = 10) -> dict[str, Any]:
        """Useful recent reflections/insights of related projects, and recurring patterns."""
        if not 1 <= limit <= 100:
            raise ValidationError(f"limit must be between 1 and 100, not {limit}")
        scope = await self.related(project, "group")
        current = scope[0].project
        by_name = {r.project: r for r in scope}
        stored = await self._stored_names(scope)
        # the newest the caller may see (the rule inside the listing: a teammate's many
        # private items do not crowd out the caller's own)
        flt = ItemFilter(
            projects=sorted(stored),
            kinds=["reflection", "insight"],
            access=await self.memory.access(),
        )
        items = await self.storage.list_items(flt, limit=PATTERN_CANDIDATES, newest_first=True)

        def canonical(item: MemoryItem) -> str:
            return stored.get(item.project or "", item.project or "")

        useful = rank_useful(items, {r.project: (r.tier, r.weight) for r in scope}, canonical)
        patterns = await recurring_patterns(items, canonical, self.memory.embeddings)
        return {
            "project": current,
            "related_projects": [
                {"project": r.project, "tier": r.tier, "why": r.reasons} for r in scope[1:]
            ],
            "insights": [
                {
                    "id": item.id,
                    "kind": item.kind,
                    "project": canonical(item),
                    "why": "; ".join(by_name[canonical(item)].reasons),
                    "usefulness": round(score, 4),
                    "content": item.content[:1000],
                    "tags": list(item.tags),
                    "created_at": item.created_at.isoformat(),
                }
                for score, item in useful[:limit]
            ],
            "patterns": patterns[:limit],
            "items_considered": len(items),
        }
