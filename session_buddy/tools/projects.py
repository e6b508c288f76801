"""MCP tools: projects, their groups and dependencies, and search across related projects.

Thin: the rules (scopes, tier weights, access) live in :mod:`session_buddy.core.projects`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import BaseModel, Field

from session_buddy import di
from session_buddy.core.project import default_directory
from session_buddy.core.projects import CrossProjectSearch, ProjectService
from session_buddy.tools import READ, Tools, add_tools
from session_buddy.tools.memory import Verbose, default_project, shown_hit

DependencyType = Literal["uses", "extends", "references", "shares_code"]
IncludeArg = Literal["related", "group", "all"]

ProjectArg = Annotated[
    str, Field(description="A project name, one of its aliases, or a folder (its git root)")
]


class ScopeProject(BaseModel):
    project: str
    tier: str = Field(description="current | dependency | group | other")
    weight: float = Field(description="Multiplies the fused score of this project's hits")
    why: list[str]


class ProjectHitOut(BaseModel):
    id: str
    kind: str
    content: str = Field(
        description="A snippet around the query's words (verbose: the text, up to "
        "search.snippet_chars); content_length is the whole length"
    )
    content_length: int
    truncated: bool
    score: float = Field(description="fused_score x tier weight; hits are ordered by it")
    fused_score: float = Field(description="Plain hybrid relevance, 0..1")
    tier: str
    confidence: str = Field(description="high | medium | low | none")
    project: str | None = Field(description="The project the item came from")
    why: str = Field(description="Why this project was searched, e.g. 'A uses B'")
    created_at: str
    tags: list[str]


class CrossProjectResults(BaseModel):
    query: str
    project: str = Field(description="The current project (canonical name)")
    include: str
    searched: list[ScopeProject] = Field(description="Projects searched, best tier first")
    confidence: str
    mode: str
    degraded: str | None = None
    count: int
    hits: list[ProjectHitOut]


def projects() -> ProjectService:
    return di.get(ProjectService)


def caller_project(project: str | None) -> str:
    """The project given, else the caller's: its current session's project, else the
    project of its working directory."""
    return default_project(project) or default_directory("project")


def _results(found: CrossProjectSearch, verbose: bool = False) -> CrossProjectResults:
    return CrossProjectResults(
        query=found.query,
        project=found.project,
        include=found.include,
        searched=[
            ScopeProject(project=r.project, tier=r.tier, weight=r.weight, why=r.reasons)
            for r in found.projects
        ],
        confidence=found.confidence,
        mode=found.mode,
        degraded=found.degraded,
        count=len(found.hits),
        hits=[ProjectHitOut.model_validate(shown_hit(h, found.query, verbose)) for h in found.hits],
    )


async def create_project(
    name: Annotated[str, Field(description="The project's stable name")],
    path: Annotated[str | None, Field(description="Its folder (the git root is used)")] = None,
    aliases: Annotated[list[str], Field(description="Other names of the project")] = [],  # noqa: B006
    description: str | None = None,
) -> dict[str, Any]:
    return await projects().create_project(name, path, list(aliases), description)


async def create_project_group(
    name: Annotated[str, Field(description="Group name, e.g. 'payments'")],
    projects: Annotated[list[str], Field(description="Project names, aliases or folders")],
    description: str | None = None,
) -> dict[str, Any]:
    return await di.get(ProjectService).create_project_group(name, projects, description)


async def list_project_groups() -> dict[str, Any]:
    groups = await projects().list_project_groups()
    return {"count": len(groups), "groups": groups}


async def add_project_dependency(
    source: ProjectArg,
    target: ProjectArg,
    dependency_type: DependencyType,
    description: str | None = None,
) -> dict[str, Any]:
    return await projects().add_project_dependency(source, target, dependency_type, description)


async def remove_project_dependency(
    source: ProjectArg,
    target: ProjectArg,
    dependency_type: DependencyType | None = None,
) -> dict[str, Any]:
    return await projects().remove_project_dependency(source, target, dependency_type)


async def get_project_graph(
    project: Annotated[
        str | None, Field(description="Project name, alias or folder; omit for all")
    ] = None,
) -> dict[str, Any]:
    return await projects().get_project_graph(project)


async def search_across_projects(
    query: str,
    project: Annotated[
        str | None,
        Field(
            description="A project name, one of its aliases, or a folder (its git root); "
            "default: the caller's project"
        ),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
    include: IncludeArg = "related",
    verbose: Verbose = False,
) -> CrossProjectResults:
    found = await projects().search_across_projects(query, caller_project(project), limit, include)
    return _results(found, verbose)


async def get_project_insights(
    project: ProjectArg,
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    return await projects().get_project_insights(project, limit)


TOOLS: Tools = [
    (
        create_project,
        {
            "description": (
                "Create a project explicitly (projects also exist implicitly from a session's "
                "git root), or add a folder, aliases (other names meaning the same project, "
                "e.g. an old name) or a description to an existing one."
            )
        },
    ),
    (
        create_project_group,
        {
            "description": (
                "Create a named group of related projects (a monorepo's packages, a set of "
                "microservices), or replace the projects of an existing group. Group members "
                "are searched together by search_across_projects(include='group')."
            )
        },
    ),
    (list_project_groups, {**READ, "description": "List the project groups with their projects."}),
    (
        add_project_dependency,
        {
            "description": (
                "Record that source depends on target: uses, extends, references or "
                "shares_code. Direct dependencies (either direction) are searched by "
                "search_across_projects."
            )
        },
    ),
    (
        remove_project_dependency,
        {
            "annotations": {"destructiveHint": True},
            "description": (
                "Remove a dependency between two projects (of the given type, or of every type "
                "when dependency_type is omitted)."
            ),
        },
    ),
    (
        get_project_graph,
        {
            **READ,
            "description": (
                "A project's dependencies (both directions), aliases, groups and which projects "
                "search_across_projects covers from it, with tiers; project omitted: the whole "
                "graph."
            ),
        },
    ),
    (
        search_across_projects,
        {
            **READ,
            "description": (
                "Search a project together with its related projects. include: 'related' (the "
                "project and its direct dependencies), 'group' (plus projects sharing a group), "
                "'all' (every project). Ranking: fused score x tier weight (current 1.0, "
                "dependency 0.85, group 0.7, other 0.5), so the current project wins ties. Each "
                "hit says which project it came from and why that project was searched. "
                "Unrelated projects are never searched unless include='all'. project defaults "
                "to the caller's project (the current session's, else the working directory's)."
            ),
        },
    ),
    (
        get_project_insights,
        {
            **READ,
            "description": (
                "What related projects learned: their most useful recent reflections and "
                "insights (tier weight x recency), and patterns that recur across projects (the "
                "same error code, exception or near-identical fix in two or more projects)."
            ),
        },
    ),
]


def register(mcp: FastMCP) -> None:
    add_tools(mcp, TOOLS)
