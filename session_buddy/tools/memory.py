"""MCP tools: store and search memories (thin: validation and shaping only)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import BaseModel, Field

from session_buddy import di
from session_buddy.core.memory import ItemInput, MemoryService, SearchResponse
from session_buddy.core.temporal import parse_datetime, parse_expression
from session_buddy.core.users import acting_user
from session_buddy.errors import ConfigurationError, ValidationError
from session_buddy.settings import SessionBuddySettings

Mode = Literal["hybrid", "semantic", "keyword"]
KindFilter = Literal["conversation", "reflection", "insight"]
MAX_LIMIT = 100
MAX_BATCH = 5000

CODE_RE = re.compile(r"```|^\s{4}\S|\bdef |\bclass |\bfunction\b|=>|;\s*$|\{\s*$", re.M)
ERROR_RE = re.compile(
    r"error|exception|traceback|failed|failure|panic|segfault|errno|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\bE\d{3,}\b",
    re.I,
)


class Hit(BaseModel):
    id: str
    kind: str
    content: str = Field(description="Full text, or a snippet when content_length is larger")
    content_length: int
    truncated: bool
    score: float = Field(description="Fused relevance, 0..1")
    confidence: str = Field(description="high | medium | low")
    semantic_score: float | None = None
    keyword_score: float | None = None
    project: str | None
    session_id: str | None
    role: str | None
    created_at: str
    tags: list[str]
    metadata: dict[str, Any]


class SearchResults(BaseModel):
    query: str
    mode: str = Field(description="Mode actually used (hybrid falls back to keyword if degraded)")
    confidence: str = Field(
        description="Of the best hit: high/medium/low, or none when nothing relevant is stored"
    )
    degraded: str | None = None
    count: int
    hits: list[Hit]
    next_cursor: str | None = Field(default=None, description="Pass to get_more_results")


class Stored(BaseModel):
    id: str
    created: bool = Field(description="False when an identical item already existed")
    embedded: bool = Field(description="False when stored without a vector (keyword-only)")


class StoredBatch(BaseModel):
    stored: int
    duplicates: int
    items: list[Stored]


class ConversationItem(BaseModel):
    content: str
    role: Literal["user", "assistant", "system", "tool"] = "user"
    project: str | None = None
    session_id: str | None = None
    timestamp: str | None = Field(default=None, description="ISO timestamp; default now")
    metadata: dict[str, Any] = Field(default_factory=dict)


def memory() -> MemoryService:
    return di.get(MemoryService)


def author() -> str:
    """Who stores: the authenticated user of the request, else the install's user."""
    return acting_user(di.get(SessionBuddySettings))


def default_project(project: str | None) -> str | None:
    """The given project, else the current session's project when one is known."""
    if project:
        return project
    try:
        from session_buddy.core.sessions import SessionService

        current: str | None = di.get(SessionService).current_project()
        return current
    except (ImportError, ConfigurationError, AttributeError):
        return None


def _time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_datetime(value)
    except ValidationError:
        raise ValidationError(f"{name}={value!r} is not an ISO date or timestamp") from None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def _encode_cursor(params: dict[str, Any]) -> str:
    raw = json.dumps(params, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        params = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(params, dict) or "query" not in params:
            raise ValueError
        return params
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError(
            "cursor is not valid: pass the next_cursor value of an earlier search unchanged"
        ) from None


def hit_fields(h: Any) -> dict[str, Any]:
    """The fields every kind of search hit returns, as the tools present them (a core hit:
    search, cross-project and team hits share these attributes)."""
    return {
        "id": h.id,
        "kind": h.kind,
        "content": h.content,
        "content_length": h.content_length,
        "truncated": h.truncated,
        "score": round(h.score, 4),
        "confidence": h.confidence,
        "created_at": h.created_at.isoformat(),
        "tags": h.tags,
    }


def _results(
    query: str, response: SearchResponse, next_params: dict[str, Any] | None
) -> SearchResults:
    hits = [
        Hit(
            **hit_fields(h),
            semantic_score=None if h.semantic_score is None else round(h.semantic_score, 4),
            keyword_score=None if h.keyword_score is None else round(h.keyword_score, 4),
            project=h.project,
            session_id=h.session_id,
            role=h.role,
            metadata=h.metadata,
        )
        for h in response.hits
    ]
    return SearchResults(
        query=query,
        mode=response.mode,
        confidence=response.confidence,
        degraded=response.degraded,
        count=len(hits),
        hits=hits,
        next_cursor=_encode_cursor(next_params) if (response.has_more and next_params) else None,
    )


async def run_search(params: dict[str, Any]) -> SearchResults:
    """Run a search described by plain parameters (also what a cursor holds)."""
    query = params["query"]
    if not isinstance(query, str) or not query.strip():
        raise ValidationError("query must be a non-empty string")
    limit = _limit(int(params.get("limit", 10)))
    offset = int(params.get("offset", 0))
    if offset < 0:
        raise ValidationError("offset must not be negative")
    kinds = params.get("kinds")
    response = await memory().search(
        query,
        projects=[params["project"]] if params.get("project") else None,
        kinds=kinds,
        tags=params.get("tags") or None,
        role=params.get("role"),
        after=_time(params.get("after"), "after"),
        before=_time(params.get("before"), "before"),
        mode=params.get("mode", "hybrid"),
        limit=limit,
        offset=offset,
    )
    return _results(query, response, {**params, "offset": offset + limit})


async def _rerank(params: dict[str, Any], pattern: re.Pattern[str]) -> SearchResults:
    """Search wider, then put hits matching ``pattern`` first (stable within each group)."""
    limit = _limit(int(params.get("limit", 10)))
    wide = await run_search({**params, "limit": min(MAX_LIMIT, limit * 4)})
    matching = [h for h in wide.hits if pattern.search(h.content)]
    others = [h for h in wide.hits if not pattern.search(h.content)]
    wide.hits = (matching + others)[:limit]
    wide.count = len(wide.hits)
    wide.next_cursor = None
    return wide


def register(mcp: FastMCP) -> None:
    @mcp.tool(
        description=(
            "Store a reflection: something learned worth remembering across sessions (a fix, a "
            "decision, a gotcha). Identical content you stored in the same project is stored "
            "once; the existing id is returned. project defaults to the current session's "
            "project."
        )
    )
    async def store_reflection(
        content: Annotated[str, Field(description="The text to remember, verbatim")],
        tags: Annotated[
            list[str], Field(description="Topic tags, e.g. ['duckdb', 'locking']")
        ] = [],  # noqa: B006
        project: Annotated[
            str | None, Field(description="Project name; default: the session's")
        ] = None,
    ) -> Stored:
        result = (
            await memory().store(
                [
                    ItemInput(
                        content=content,
                        kind="reflection",
                        tags=list(tags),
                        project=default_project(project),
                        author=author(),
                    )
                ]
            )
        )[0]
        return Stored(id=result.id, created=result.created, embedded=result.embedded)

    @mcp.tool(
        description=(
            "Store one conversation turn (user, assistant, system or tool text) so it can be "
            "searched later. timestamp is ISO (default now)."
        )
    )
    async def store_conversation(
        content: str,
        role: Literal["user", "assistant", "system", "tool"] = "user",
        project: str | None = None,
        session_id: str | None = None,
        timestamp: str | None = None,
        metadata: dict[str, Any] = {},  # noqa: B006
    ) -> Stored:
        result = (
            await memory().store(
                [
                    ItemInput(
                        content=content,
                        kind="conversation",
                        role=role,
                        author=author(),
                        project=default_project(project),
                        session_id=session_id,
                        metadata=dict(metadata),
                        created_at=_time(timestamp, "timestamp"),
                    )
                ]
            )
        )[0]
        return Stored(id=result.id, created=result.created, embedded=result.embedded)

    @mcp.tool(
        description=(
            f"Store many conversation turns at once (imports); up to {MAX_BATCH} per call. "
            "Each item has the fields of store_conversation. Duplicates are reported, not stored."
        )
    )
    async def store_conversations(items: list[ConversationItem]) -> StoredBatch:
        if not items:
            raise ValidationError("items is empty: give at least one conversation turn")
        if len(items) > MAX_BATCH:
            raise ValidationError(
                f"at most {MAX_BATCH} items per call, got {len(items)}; split the batch"
            )
        who = author()
        inputs = [
            ItemInput(
                content=i.content,
                kind="conversation",
                role=i.role,
                author=who,
                project=default_project(i.project),
                session_id=i.session_id,
                metadata=dict(i.metadata),
                created_at=_time(i.timestamp, f"items[{n}].timestamp"),
            )
            for n, i in enumerate(items)
        ]
        results = await memory().store(inputs)
        out = [Stored(id=r.id, created=r.created, embedded=r.embedded) for r in results]
        created = sum(1 for r in results if r.created)
        return StoredBatch(stored=created, duplicates=len(results) - created, items=out)

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description=(
            "Search memory by meaning and keywords (hybrid), or mode='semantic' / 'keyword'. "
            "project=None searches every project; a project name scopes to it. Filters: kind "
            "(conversation|reflection|insight), tags (all must match), after/before (ISO). "
            "Each hit has a score and a confidence; the result's confidence is 'none' when "
            "nothing relevant is stored. Pass next_cursor to get_more_results for more."
        ),
    )
    async def search(
        query: str,
        project: str | None = None,
        kind: KindFilter | None = None,
        tags: list[str] | None = None,
        after: str | None = None,
        before: str | None = None,
        mode: Mode = "hybrid",
        limit: int = 10,
        cursor: str | None = None,
    ) -> SearchResults:
        if cursor:
            return await run_search(_decode_cursor(cursor))
        return await run_search(
            {
                "query": query,
                "project": project,
                "kinds": [kind] if kind else None,
                "tags": tags,
                "after": after,
                "before": before,
                "mode": mode,
                "limit": limit,
            }
        )

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description="Fast hybrid search returning the top few hits (default 5).",
    )
    async def quick_search(query: str, project: str | None = None, limit: int = 5) -> SearchResults:
        return await run_search({"query": query, "project": project, "limit": limit})

    @mcp.tool(
        annotations={"readOnlyHint": True},
        description=(
            "Summarise what memory holds about a query: how many relevant items, by kind and "
            "project, the time span, and the best few excerpts."
        ),
    )
    async def search_summary(query: str, project: str | None = None) -> dict[str, Any]:
        results = await run_search({"query": query, "project": project, "limit": 20})
        relevant = [h for h in results.hits if h.confidence in ("high", "medium")]
        by_kind: dict[str, int] = {}
        by_project: dict[str, int] = {}
        for h in relevant:
            by_kind[h.kind] = by_kind.get(h.kind, 0) + 1
            key = h.project or "(none)"
            by_project[key] = by_project.get(key, 0) + 1
        dates = sorted(h.created_at for h in relevant)
        return {
            "query": query,
            "confidence": results.confidence,
            "relevant": len(relevant),
            "weak": len(results.hits) - len(relevant),
            "by_kind": by_kind,
            "by_project": by_project,
            "first": dates[0] if dates else None,
            "last": dates[-1] if dates else None,
            "top": [
                {
                    "id": h.id,
                    "kind": h.kind,
                    "project": h.project,
                    "excerpt": h.content[:240],
                    "confidence": h.confidence,
                }
                for h in (relevant or results.hits)[:5]
            ],
            "degraded": results.degraded,
        }

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description="Next page of a search: pass the next_cursor of an earlier result.",
    )
    async def get_more_results(cursor: str) -> SearchResults:
        return await run_search(_decode_cursor(cursor))

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description="Find memories that mention a file path (whole path or its file name).",
    )
    async def search_by_file(
        path: str, project: str | None = None, limit: int = 10
    ) -> SearchResults:
        if not path.strip():
            raise ValidationError("path must not be empty")
        name = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        query = path if name == path else f"{path} {name}"
        return await run_search(
            {"query": query, "project": project, "mode": "keyword", "limit": limit}
        )

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description="Find memories about a concept by meaning (semantic search), e.g. 'retry backoff'.",
    )
    async def search_by_concept(
        concept: str, project: str | None = None, limit: int = 10
    ) -> SearchResults:
        return await run_search(
            {"query": concept, "project": project, "mode": "semantic", "limit": limit}
        )

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description="Hybrid search that ranks memories containing code first.",
    )
    async def search_code(query: str, project: str | None = None, limit: int = 10) -> SearchResults:
        return await _rerank({"query": query, "project": project, "limit": limit}, CODE_RE)

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description="Hybrid search that ranks memories about errors (tracebacks, error codes, failures) first.",
    )
    async def search_errors(
        query: str, project: str | None = None, limit: int = 10
    ) -> SearchResults:
        return await _rerank({"query": query, "project": project, "limit": limit}, ERROR_RE)

    @mcp.tool(
        annotations={"readOnlyHint": True},
        # no declared output schema: the Python MCP client re-validates each result with
        # jsonschema (~30 ms a call, docs/performance.md); the result is still structured
        output_schema=None,
        description=(
            "Memories from a time range: 'today', 'yesterday', 'last week', 'last 3 days', "
            "'since March 3', 'before 2026-01-01', '2026-11-01..2026-11-05' or an ISO date. "
            "With a query, searches within the range; without, lists newest first."
        ),
    )
    async def search_temporal(
        expression: str, query: str | None = None, project: str | None = None, limit: int = 10
    ) -> SearchResults:
        span = parse_expression(expression)
        after = span.after.isoformat() if span.after else None
        before = span.before.isoformat() if span.before else None
        if query and query.strip():
            return await run_search(
                {
                    "query": query,
                    "project": project,
                    "after": after,
                    "before": before,
                    "limit": limit,
                }
            )
        items = await memory().list_recent(
            projects=[project] if project else None,
            after=span.after,
            before=span.before,
            limit=_limit(limit),
        )
        return SearchResults(
            query=f"({span.description})",
            mode="list",
            confidence="high" if items else "none",
            count=len(items),
            hits=[
                Hit(
                    id=i.id,
                    kind=i.kind,
                    content=i.content,
                    content_length=len(i.content),
                    truncated=False,
                    score=1.0,
                    confidence="high",
                    project=i.project,
                    session_id=i.session_id,
                    role=i.role,
                    created_at=i.created_at.isoformat(),
                    tags=i.tags,
                    metadata=i.metadata,
                )
                for i in items
            ],
        )

    @mcp.tool(
        annotations={"readOnlyHint": True},
        description="Counts of stored memories: total, by kind, by project, how many have vectors, and the model.",
    )
    async def reflection_stats(project: str | None = None) -> dict[str, Any]:
        return await memory().stats(project)

    @mcp.tool(
        annotations={"destructiveHint": True},
        description="Delete one memory (conversation, reflection or insight) by id.",
    )
    async def delete_memory(id: str) -> dict[str, Any]:
        await memory().delete(id)
        return {"id": id, "deleted": True}

    @mcp.tool(
        description="Change a reflection's content and/or tags (new content is re-embedded).",
    )
    async def update_reflection(
        id: str, content: str | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        if content is None and tags is None:
            raise ValidationError("give content, tags, or both to update")
        item = await memory().update(id, content=content, tags=tags)
        return {
            "id": item.id,
            "kind": item.kind,
            "content": item.content,
            "tags": item.tags,
            "updated_at": item.updated_at.isoformat(),
        }
