"""MCP tools: teams, shared reflections and votes.

Thin: who may see and do what is decided in :mod:`session_buddy.core.teams`, for every front
alike. The acting user comes from the server (``settings.user``, or the HTTP service's
authenticated token); a ``user`` argument may only name that same user.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import BaseModel, Field

from session_buddy import di
from session_buddy.core.teams import TeamService
from session_buddy.tools import READ, Tools, add_tools
from session_buddy.tools.memory import Verbose, shown_hit

UserArg = Annotated[
    str | None,
    Field(description="Must be you (the server's user); omit it to act as yourself"),
]


class TeamHitOut(BaseModel):
    id: str
    kind: str
    content: str
    content_length: int
    truncated: bool
    score: float = Field(description="fused_score x (1 + 0.1 x net votes, capped at +-5)")
    fused_score: float
    net_votes: int = Field(description="Sum of the team members' votes")
    votes_up: int
    votes_down: int
    your_vote: int | None
    confidence: str
    project: str | None
    author: str
    shared_by: str | None
    created_at: str
    tags: list[str]


class TeamResults(BaseModel):
    query: str
    team: str
    user: str
    shared_items: int = Field(description="Items shared with the team")
    confidence: str
    mode: str
    degraded: str | None = None
    count: int
    hits: list[TeamHitOut]


def teams() -> TeamService:
    return di.get(TeamService)


async def create_team(
    name: str,
    members: Annotated[list[str], Field(description="Users to add besides you")] = [],  # noqa: B006
    projects: Annotated[list[str], Field(description="Projects the team works on")] = [],  # noqa: B006
) -> dict[str, Any]:
    return await teams().create_team(name, list(members), list(projects))


async def add_team_member(team: str, user: str) -> dict[str, Any]:
    return await teams().add_team_member(team, user)


async def remove_team_member(team: str, user: str) -> dict[str, Any]:
    return await teams().remove_team_member(team, user)


async def unshare_reflection(
    id: Annotated[str, Field(description="The id of the shared item")],
    team: str,
) -> dict[str, Any]:
    return await teams().unshare_reflection(id, team)


async def share_reflection(
    id: Annotated[str, Field(description="The id of your reflection")],
    team: str,
) -> dict[str, Any]:
    return await teams().share_reflection(id, team)


async def search_team_knowledge(
    query: str,
    team: str,
    user: UserArg = None,
    limit: Annotated[int, Field(ge=1, le=100)] = 10,
    verbose: Verbose = False,
) -> TeamResults:
    found = await teams().search_team_knowledge(query, team, user, limit)
    return TeamResults(
        query=query,
        team=found.team,
        user=found.user,
        shared_items=found.shared_items,
        confidence=found.confidence,
        mode=found.mode,
        degraded=found.degraded,
        count=len(found.hits),
        hits=[TeamHitOut.model_validate(shown_hit(h, query, verbose)) for h in found.hits],
    )


async def vote_on_reflection(
    id: Annotated[str, Field(description="The id of a reflection shared with your team")],
    user: UserArg = None,
    vote: Literal[1, -1] = 1,
) -> dict[str, Any]:
    return await teams().vote_on_reflection(id, vote, user)


async def get_team_statistics(team: str) -> dict[str, Any]:
    return await teams().get_team_statistics(team)


TOOLS: Tools = [
    (
        create_team,
        {
            "description": (
                "Create a team; you are its first member. members: other users to add; "
                "projects: the projects the team works on. A team's knowledge is visible to its "
                "members only."
            )
        },
    ),
    (add_team_member, {"description": "Add a user to a team you belong to."}),
    (
        remove_team_member,
        {
            "description": (
                "Remove a user from a team: yourself (leave the team), or anyone if you created "
                "it. What they shared stays shared; their votes stop counting."
            )
        },
    ),
    (
        unshare_reflection,
        {
            "description": (
                "Withdraw an item from a team (you must be its author or the member who shared "
                "it). It stays in your memory."
            )
        },
    ),
    (
        share_reflection,
        {
            "description": (
                "Share one of your reflections (or insights) with a team you belong to, so its "
                "members can find it with search_team_knowledge."
            )
        },
    ),
    (
        search_team_knowledge,
        {
            **READ,
            "description": (
                "Search the knowledge shared with a team you belong to (hybrid search), ranked "
                "by relevance and the members' votes: score = fused score x (1 + 0.1 x net "
                "votes, net capped at +-5)."
            ),
        },
    ),
    (
        vote_on_reflection,
        {
            "description": (
                "Vote +1 (useful) or -1 (wrong or outdated) on a reflection shared with one of "
                "your teams. One vote per user: voting again replaces your earlier vote."
            )
        },
    ),
    (
        get_team_statistics,
        {
            **READ,
            "description": (
                "Statistics of a team you belong to: members, projects, shared items by kind, "
                "project and member, votes, and the best-voted items."
            ),
        },
    ),
]


def register(mcp: FastMCP) -> None:
    add_tools(mcp, TOOLS)
