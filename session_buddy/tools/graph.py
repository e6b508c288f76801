"""MCP tools and the resource of the knowledge graph (thin: shaping only).

The names and semantics are the reference MCP memory server's (``create_entities`` ...
``open_nodes``), plus ``get_entity_context`` and ``find_path``; the service is
:class:`session_buddy.core.graph.GraphService`. Writes go to ``project`` (default the
session's project, else global); reads look in ``project`` and the global scope, or in
every project when it is left out.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastmcp import FastMCP
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from session_buddy import di
from session_buddy.core.graph import (
    MAX_DEPTH,
    MAX_PAGE,
    MAX_PATH,
    EntitySpec,
    GraphService,
    RelationSpec,
)
from session_buddy.tools import READ_UNCHECKED, Tools, add_tools
from session_buddy.tools.memory import default_project

MAX_BATCH = 500
Project = Annotated[str | None, Field(description="Project; default: the session's, else global")]
Scope = Annotated[str | None, Field(description="Project (and global); default: every project")]


class EntityIn(BaseModel):
    name: str
    entity_type: str = Field(validation_alias=AliasChoices("entity_type", "entityType"))
    observations: list[str] = []


class RelationIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(validation_alias=AliasChoices("from", "source"))
    target: str = Field(validation_alias=AliasChoices("to", "target"))
    relation_type: str = Field(validation_alias=AliasChoices("relation_type", "relationType"))

    def spec(self) -> RelationSpec:
        return RelationSpec(self.source, self.target, self.relation_type)


class ObservationsIn(BaseModel):
    entity_name: str = Field(validation_alias=AliasChoices("entity_name", "entityName"))
    contents: list[str] = Field(validation_alias=AliasChoices("contents", "observations"))


def graph() -> GraphService:
    return di.get(GraphService)


Batch = Field(min_length=1, max_length=MAX_BATCH)


async def create_entities(
    entities: Annotated[list[EntityIn], Batch], project: Project = None
) -> dict[str, Any]:
    specs = [EntitySpec(e.name, e.entity_type, tuple(e.observations)) for e in entities]
    return {"created": await graph().create_entities(specs, default_project(project))}


async def create_relations(
    relations: Annotated[list[RelationIn], Batch], project: Project = None
) -> dict[str, Any]:
    specs = [r.spec() for r in relations]
    return {"created": await graph().create_relations(specs, default_project(project))}


async def add_observations(
    observations: Annotated[list[ObservationsIn], Batch], project: Project = None
) -> dict[str, Any]:
    additions = [(o.entity_name, o.contents) for o in observations]
    return {"added": await graph().add_observations(additions, default_project(project))}


async def delete_entities(
    entity_names: Annotated[list[str], Batch], project: Project = None
) -> dict[str, Any]:
    return {"deleted": await graph().delete_entities(entity_names, default_project(project))}


async def delete_observations(
    deletions: Annotated[list[ObservationsIn], Batch], project: Project = None
) -> dict[str, Any]:
    pairs = [(d.entity_name, d.contents) for d in deletions]
    return {"deleted": await graph().delete_observations(pairs, default_project(project))}


async def delete_relations(
    relations: Annotated[list[RelationIn], Batch], project: Project = None
) -> dict[str, Any]:
    specs = [r.spec() for r in relations]
    return {"deleted": await graph().delete_relations(specs, default_project(project))}


async def read_graph(
    project: Scope = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> dict[str, Any]:
    return await graph().read_graph(project, limit, offset)


async def search_nodes(
    query: str, project: Scope = None, limit: Annotated[int, Field(ge=1, le=50)] = 10
) -> dict[str, Any]:
    return await graph().search_nodes(query, project, limit)


async def open_nodes(
    names: Annotated[list[str], Field(min_length=1, max_length=100)], project: Scope = None
) -> dict[str, Any]:
    return await graph().open_nodes(names, project)


async def get_entity_context(
    name: str,
    depth: Annotated[int, Field(ge=1, le=MAX_DEPTH)] = 2,
    project: Scope = None,
    limit: Annotated[int, Field(ge=1, le=50, description="Memories to return")] = 10,
) -> dict[str, Any]:
    return await graph().entity_context(name, depth, project, limit)


async def find_path(
    source: str,
    target: str,
    project: Scope = None,
    max_depth: Annotated[int, Field(ge=1, le=MAX_PATH)] = 4,
) -> dict[str, Any]:
    return await graph().find_path(source, target, project, max_depth)


async def graph_resource(project: str) -> str:
    """The first page of a project's graph (and the global entities), as JSON."""
    return json.dumps(await graph().read_graph(project, MAX_PAGE, 0), ensure_ascii=False)


_DESTRUCTIVE = {"annotations": {"destructiveHint": True}}

TOOLS: Tools = [
    (
        create_entities,
        {
            "description": (
                "Knowledge graph: create entities {name, entity_type, observations}. A name "
                "that exists is left unchanged. Returns those created."
            )
        },
    ),
    (
        create_relations,
        {
            "description": (
                "Knowledge graph: create relations {from, to, relation_type} between existing "
                "entities, relation_type in active voice (e.g. 'defined_in'). Stored as given."
            )
        },
    ),
    (
        add_observations,
        {"description": "Knowledge graph: add observations {entity_name, contents} to entities."},
    ),
    (
        delete_entities,
        {
            **_DESTRUCTIVE,
            "description": "Knowledge graph: delete entities by name, with their relations.",
        },
    ),
    (
        delete_observations,
        {
            **_DESTRUCTIVE,
            "description": "Knowledge graph: delete observations {entity_name, contents}.",
        },
    ),
    (
        delete_relations,
        {
            **_DESTRUCTIVE,
            "description": "Knowledge graph: delete relations {from, to, relation_type}.",
        },
    ),
    (
        read_graph,
        {
            **READ_UNCHECKED,
            "description": (
                "Knowledge graph: one page of entities (by name) and their relations; pass "
                "next_offset as offset for more."
            ),
        },
    ),
    (
        search_nodes,
        {
            **READ_UNCHECKED,
            "description": (
                "Knowledge graph: find entities by meaning and keywords in names, types and "
                "observations."
            ),
        },
    ),
    (
        open_nodes,
        {
            **READ_UNCHECKED,
            "description": "Knowledge graph: entities by name, with the relations among them.",
        },
    ),
    (
        get_entity_context,
        {
            **READ_UNCHECKED,
            "description": (
                "Knowledge graph: an entity, its neighbours up to depth relations away, and the "
                "memories that mention them."
            ),
        },
    ),
    (
        find_path,
        {
            **READ_UNCHECKED,
            "description": "Knowledge graph: a shortest chain of relations from source to target.",
        },
    ),
]

#: Resources: (URI template, function, options for ``mcp.resource``).
RESOURCES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "session-buddy://graph/{project}",
        graph_resource,
        {
            "mime_type": "application/json",
            "description": "A project's knowledge graph (first page of entities and relations).",
        },
    ),
]


def register(mcp: FastMCP) -> None:
    add_tools(mcp, TOOLS)
    for uri, function, options in RESOURCES:
        mcp.resource(uri, **options)(function)
