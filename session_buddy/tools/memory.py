"""MCP tools: store and search memories (thin: argument shaping and answers only).

The search mechanics live in :mod:`session_buddy.search.pipeline`, the ways of asking
(favouring code or errors, summaries, time spans) in :mod:`session_buddy.core.searches`.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from fastmcp import FastMCP
from pydantic import BaseModel, Field

from session_buddy import di
from session_buddy.core import searches
from session_buddy.core.errorfix import ErrorMemory
from session_buddy.core.memory import ItemInput, MemoryService, SearchHit, SearchResponse
from session_buddy.core.temporal import parse_datetime, parse_expression
from session_buddy.core.users import acting_user
from session_buddy.errors import ConfigurationError, ValidationError
from session_buddy.search.snippets import snippet
from session_buddy.settings import SessionBuddySettings
from session_buddy.tools import READ, READ_UNCHECKED, SHORT_ID, Tools, add_tools

Mode = Literal["hybrid", "semantic", "keyword"]
KindFilter = Literal["conversation", "reflection", "insight"]
Role = Literal["user", "assistant", "system", "tool"]
MAX_LIMIT = searches.MAX_LIMIT
MAX_BATCH = 5000
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
Expand = Literal["graph"]
HitField = Literal[
    "id",
    "content",
    "content_length",
    "session_id",
    "role",
    "created_at",
    "tags",
    "metadata",
    "semantic_score",
    "keyword_score",
    "fused_score",
]
#: a hit reached through the graph shows a shorter snippet, and a compact answer shows at
#: most ``limit`` of them (verbose: all)
VIA_SNIPPET_CHARS = 120
Verbose = Annotated[
    bool,
    Field(
        description="Every field of each hit (whole id, content up to search.snippet_chars, "
        "scores, metadata) instead of the compact hit"
    ),
]
Fields = Annotated[
    list[HitField] | None,
    Field(description="Fields to add to each compact hit, e.g. ['content', 'metadata']"),
]


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
    via: str | None = Field(default=None, description="Set on a graph-expanded hit: how")


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


class FixPair(BaseModel):
    error: str = Field(description="The error's signature (exception + message, test id, code)")
    kind: str | None = None
    fixed_by: str = Field(description="What fixed it: the assistant's words, else the edits")
    files: list[str] = []
    run: str | None = Field(default=None, description="The run that showed it fixed")
    session_id: str | None = None
    project: str | None = None
    fixed_at: str | None = None
    match: float | None = Field(default=None, description="1 = the same error")
    times_fixed: int | None = None


class ErrorResults(BaseModel):
    fixes: list[FixPair] = Field(
        description="This error was fixed by ...: stored fixes of matching errors, best first"
    )
    query: str
    mode: str
    confidence: str
    degraded: str | None = None
    count: int = Field(description="How many other mentions (hits) follow")
    hits: list[Hit]
    next_cursor: str | None = None


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
    role: Role = "user"
    project: str | None = None
    session_id: str | None = None
    timestamp: str | None = Field(default=None, description="ISO timestamp; default now")
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchQuery(BaseModel):
    """One search as the tools run it; a cursor is this, encoded, with the next offset."""

    query: str
    project: str | None = None
    kinds: list[KindFilter] | None = None
    tags: list[str] | None = None
    role: str | None = None
    after: str | None = None
    before: str | None = None
    mode: Mode = "hybrid"
    limit: Limit = 10
    offset: Annotated[int, Field(ge=0)] = 0
    expand: Expand | None = None
    verbose: bool = False
    fields: list[HitField] | None = None

    def cursor(self) -> str:
        raw = self.model_dump_json(exclude_defaults=True).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str) -> SearchQuery:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            return cls.model_validate(json.loads(base64.urlsafe_b64decode(padded.encode())))
        except (ValueError, binascii.Error, UnicodeDecodeError, pydantic.ValidationError):
            raise ValidationError(
                "cursor is not valid: pass the next_cursor value of an earlier search unchanged"
            ) from None


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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def hit_view(h: SearchHit) -> dict[str, Any]:
    """Every field a tool may show of a hit, as the tools present them (each answer's model
    keeps the fields it declares): the search fields, plus the team facts of a team hit and
    the scope facts of a cross-project hit (whose ``project`` is the canonical one)."""
    view: dict[str, Any] = {
        "id": h.id,
        "kind": h.kind,
        "content": h.content,
        "content_length": h.content_length,
        "truncated": h.truncated,
        "score": round(h.score, 4),
        "fused_score": round(h.fused_score, 4),
        "confidence": h.confidence,
        "semantic_score": _round(h.semantic_score),
        "keyword_score": _round(h.keyword_score),
        "project": h.project,
        "session_id": h.session_id,
        "role": h.role,
        "created_at": h.created_at.isoformat(),
        "tags": h.tags,
        "metadata": h.metadata,
    }
    if h.via is not None:
        view["via"] = h.via
    if h.team is not None:
        t = h.team
        view.update(
            net_votes=t.net_votes,
            votes_up=t.votes_up,
            votes_down=t.votes_down,
            your_vote=t.your_vote,
            author=t.author,
            shared_by=t.shared_by,
        )
    if h.scope is not None:
        view.update(tier=h.scope.tier, why=h.scope.why, project=h.scope.source_project or h.project)
    return view


def brief_hit(h: SearchHit, query: str, fields: list[HitField] | None = None) -> dict[str, Any]:
    """A hit as a compact answer shows it: what an agent needs to decide whether to read
    it (``get`` with the short id gives the item whole); ``fields`` adds fields of the full
    hit."""
    out: dict[str, Any] = {
        "id": h.id[:SHORT_ID],
        "kind": h.kind,
        "project": h.project,
        "date": h.created_at.date().isoformat(),
        "score": round(h.score, 2),
        "confidence": h.confidence,
        "snippet": snippet(h.content, query, VIA_SNIPPET_CHARS)
        if h.via is not None
        else h.snippet or snippet(h.content, query),
    }
    if h.tags:
        out["tags"] = h.tags
    if h.via is not None:
        out["via"] = h.via
    if fields:
        full = hit_view(h)
        out.update({f: full[f] for f in fields if f in full})
    return out


def shown_hit(h: SearchHit, query: str, verbose: bool) -> dict[str, Any]:
    """:func:`hit_view`, its content the snippet around the query's words unless
    ``verbose`` (the answers of cross-project and team search)."""
    view = hit_view(h)
    if not verbose:
        view["content"] = h.snippet or snippet(h.content, query)
        view["truncated"] = len(view["content"]) < h.content_length
    return view


def nothing_stored(query: str, weak: int, mode: str) -> dict[str, Any]:
    """The answer of a search that found nothing relevant: no hit list, a plain message."""
    shown = query if len(query) <= 120 else query[:120] + "…"
    more = f" ({weak} weak matches hidden: verbose=true shows them)" if weak else ""
    return {
        "query": shown,
        "mode": mode,
        "confidence": "none",
        "count": 0,
        "hits": [],
        "message": f"Nothing relevant is stored for {shown!r}{more}.",
    }


def _results(
    query: str,
    response: SearchResponse,
    next_query: SearchQuery | None = None,
    *,
    verbose: bool = False,
    fields: list[HitField] | None = None,
) -> dict[str, Any]:
    """A search's answer: compact hits, or every field with ``verbose``; the plain
    :func:`nothing_stored` when nothing relevant came back (unless ``verbose``)."""
    cursor = next_query.cursor() if (response.has_more and next_query) else None
    if verbose:
        full = [Hit.model_validate(hit_view(h)) for h in response.hits]
        return SearchResults(
            query=query,
            mode=response.mode,
            confidence=response.confidence,
            degraded=response.degraded,
            count=len(full),
            hits=full,
            next_cursor=cursor,
        ).model_dump()
    if response.confidence == "none":
        return nothing_stored(query, len(response.hits), response.mode)
    hits = response.hits
    via = [h for h in hits if h.via is not None]
    limit = next_query.limit if next_query else len(hits)
    out: dict[str, Any] = {
        "query": query,
        "mode": response.mode,
        "confidence": response.confidence,
        "degraded": response.degraded,
        "count": len(hits),
        "hits": [brief_hit(h, query, fields) for h in hits if h.via is None]
        + [brief_hit(h, query, fields) for h in via[:limit]],
        "next_cursor": cursor,
    }
    if len(via) > limit:
        out["count"] = len(out["hits"])
        out["more_via_graph"] = (
            f"{len(via) - limit} more hits through the graph: verbose=true shows them"
        )
    return out


async def run_search(q: SearchQuery) -> dict[str, Any]:
    """Run one search (also what a cursor holds)."""
    response = await memory().search(
        q.query,
        projects=[q.project] if q.project else None,
        kinds=list(q.kinds) if q.kinds else None,
        tags=q.tags or None,
        role=q.role,
        after=_time(q.after, "after"),
        before=_time(q.before, "before"),
        mode=q.mode,
        limit=q.limit,
        offset=q.offset,
        expand=q.expand,
    )
    following = q.model_copy(update={"offset": q.offset + q.limit})
    return _results(q.query, response, following, verbose=q.verbose, fields=q.fields)


def _stored(result: Any) -> Stored:
    return Stored(id=result.id, created=result.created, embedded=result.embedded)


# -- the tools -------------------------------------------------------------------------------


async def store_reflection(
    content: Annotated[str, Field(description="The text to remember, verbatim")],
    tags: Annotated[list[str], Field(description="Topic tags, e.g. ['duckdb', 'locking']")] = [],  # noqa: B006
    project: Annotated[
        str | None, Field(description="Project name; default: the session's")
    ] = None,
) -> Stored:
    item = ItemInput(
        content=content,
        kind="reflection",
        tags=list(tags),
        project=default_project(project),
        author=author(),
    )
    return _stored((await memory().store([item]))[0])


async def store_conversation(
    content: str,
    role: Role = "user",
    project: str | None = None,
    session_id: str | None = None,
    timestamp: str | None = None,
    metadata: dict[str, Any] = {},  # noqa: B006
) -> Stored:
    item = ItemInput(
        content=content,
        kind="conversation",
        role=role,
        author=author(),
        project=default_project(project),
        session_id=session_id,
        metadata=dict(metadata),
        created_at=_time(timestamp, "timestamp"),
    )
    return _stored((await memory().store([item]))[0])


async def store_conversations(
    items: Annotated[list[ConversationItem], Field(min_length=1, max_length=MAX_BATCH)],
) -> StoredBatch:
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
    created = sum(1 for r in results if r.created)
    return StoredBatch(
        stored=created, duplicates=len(results) - created, items=[_stored(r) for r in results]
    )


async def search(
    query: str,
    project: str | None = None,
    kind: KindFilter | None = None,
    tags: list[str] | None = None,
    after: str | None = None,
    before: str | None = None,
    mode: Mode = "hybrid",
    limit: Limit = 10,
    cursor: str | None = None,
    expand: Expand | None = None,
    verbose: Verbose = False,
    fields: Fields = None,
) -> dict[str, Any]:
    if cursor:
        return await run_search(SearchQuery.from_cursor(cursor))
    return await run_search(
        SearchQuery(
            query=query,
            project=project,
            kinds=[kind] if kind else None,
            tags=tags,
            after=after,
            before=before,
            mode=mode,
            limit=limit,
            expand=expand,
            verbose=verbose,
            fields=fields,
        )
    )


async def quick_search(
    query: str, project: str | None = None, limit: Limit = 5, verbose: Verbose = False
) -> dict[str, Any]:
    return await run_search(SearchQuery(query=query, project=project, limit=limit, verbose=verbose))


async def search_summary(query: str, project: str | None = None) -> dict[str, Any]:
    found = await memory().search(query, projects=[project] if project else None, limit=20)
    return searches.summarise(query, found)


async def get_more_results(cursor: str) -> dict[str, Any]:
    return await run_search(SearchQuery.from_cursor(cursor))


async def _graph_search(
    query: str, project: str | None, mode: Mode, limit: int, verbose: bool
) -> dict[str, Any]:
    """A search whose hits are followed by memories about related entities (the graph)."""
    q = SearchQuery(
        query=query, project=project, mode=mode, limit=limit, expand="graph", verbose=verbose
    )
    return await run_search(q)


async def search_by_file(
    path: str, project: str | None = None, limit: Limit = 10, verbose: Verbose = False
) -> dict[str, Any]:
    if not path.strip():
        raise ValidationError("path must not be empty")
    name = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    query = path if name == path else f"{path} {name}"
    return await _graph_search(query, project, "keyword", limit, verbose)


async def search_by_concept(
    concept: str, project: str | None = None, limit: Limit = 10, verbose: Verbose = False
) -> dict[str, Any]:
    return await _graph_search(concept, project, "semantic", limit, verbose)


async def search_code(
    query: str, project: str | None = None, limit: Limit = 10, verbose: Verbose = False
) -> dict[str, Any]:
    found = await searches.search_favouring(memory(), query, "code", project=project, limit=limit)
    return _results(query, found, verbose=verbose)


async def search_errors(
    query: str, project: str | None = None, limit: Limit = 10, verbose: Verbose = False
) -> dict[str, Any]:
    if not query.strip():
        raise ValidationError("query must not be empty")
    fixes = await ErrorMemory.from_container(di.get).search(
        query, projects=[project] if project else None, limit=min(limit, 5)
    )
    found = await searches.search_favouring(memory(), query, "errors", project=project, limit=limit)
    mentions = _results(query, found, verbose=verbose)
    pairs = [FixPair(**f) for f in fixes]
    if verbose:
        return ErrorResults(fixes=pairs, **mentions).model_dump()
    if pairs and mentions["confidence"] == "none":
        mentions.pop("message", None)  # the fixes are what is relevant
    return {"fixes": [p.model_dump(exclude_none=True) for p in pairs], **mentions}


async def search_temporal(
    expression: str,
    query: str | None = None,
    project: str | None = None,
    limit: Limit = 10,
    verbose: Verbose = False,
) -> dict[str, Any]:
    span = parse_expression(expression)
    if query and query.strip():
        found = await memory().search(
            query,
            projects=[project] if project else None,
            after=span.after,
            before=span.before,
            limit=limit,
        )
        return _results(query, found, verbose=verbose)
    listed = await searches.items_in_span(memory(), span, project=project, limit=limit)
    return _results(f"({span.description})", listed, verbose=verbose)


async def reflection_stats(project: str | None = None) -> dict[str, Any]:
    return await memory().stats(project)


async def get(
    id: Annotated[str, Field(description="An item id, or its short id from a search answer")],
    offset: Annotated[
        int, Field(ge=0, description="Start the content here (the rest of a cut answer)")
    ] = 0,
) -> dict[str, Any]:
    item = await memory().get_by_id(id)
    return {
        "id": item.id,
        "kind": item.kind,
        "project": item.project,
        "session_id": item.session_id,
        "role": item.role,
        "author": item.author,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "tags": item.tags,
        "metadata": item.metadata,
        "content_length": len(item.content),
        "offset": offset,
        "content": item.content[offset:],
    }


async def delete_memory(id: str) -> dict[str, Any]:
    item_id = (await memory().get_by_id(id)).id
    await memory().delete(item_id)
    return {"id": item_id, "deleted": True}


async def update_reflection(
    id: str, content: str | None = None, tags: list[str] | None = None
) -> dict[str, Any]:
    if content is None and tags is None:
        raise ValidationError("give content, tags, or both to update")
    item = await memory().update((await memory().get_by_id(id)).id, content=content, tags=tags)
    return {
        "id": item.id,
        "kind": item.kind,
        "content": item.content,
        "tags": item.tags,
        "updated_at": item.updated_at.isoformat(),
    }


TOOLS: Tools = [
    (
        store_reflection,
        {
            "description": (
                "Store a reflection: something learned worth remembering across sessions (a "
                "fix, a decision, a gotcha). Identical content you stored in the same project "
                "is stored once; the existing id is returned. project defaults to the current "
                "session's project."
            )
        },
    ),
    (
        store_conversation,
        {
            "description": (
                "Store one conversation turn (user, assistant, system or tool text) so it can "
                "be searched later. timestamp is ISO (default now)."
            )
        },
    ),
    (
        store_conversations,
        {
            "description": (
                f"Store many conversation turns at once (imports); up to {MAX_BATCH} per call. "
                "Each item has the fields of store_conversation. Duplicates are reported, not "
                "stored."
            )
        },
    ),
    (
        search,
        {
            **READ_UNCHECKED,
            "description": (
                "Search memory by meaning and keywords (hybrid), or mode='semantic' / "
                "'keyword'. project=None searches every project; a project name scopes to it. "
                "Filters: kind (conversation|reflection|insight), tags (all must match), "
                "after/before (ISO). Each hit has a score and a confidence; the result's "
                "confidence is 'none' when nothing relevant is stored (then no hits, a plain "
                "message). Hits are compact: short id, kind, project, date, a snippet around "
                "the matching words, score, confidence; get(id) gives one whole, verbose=true "
                "or fields=[...] more of each. expand='graph' adds memories about related "
                "entities below (marked via). Pass next_cursor to get_more_results for more."
            ),
        },
    ),
    (
        quick_search,
        {
            **READ_UNCHECKED,
            "description": "Fast hybrid search returning the top few hits (default 5).",
        },
    ),
    (
        search_summary,
        {
            **READ,
            "description": (
                "Summarise what memory holds about a query: how many relevant items, by kind "
                "and project, the time span, and the best few excerpts."
            ),
        },
    ),
    (
        get_more_results,
        {
            **READ_UNCHECKED,
            "description": "Next page of a search: pass the next_cursor of an earlier result.",
        },
    ),
    (
        search_by_file,
        {
            **READ_UNCHECKED,
            "description": (
                "Find memories that mention a file path (whole path or its file name), then "
                "memories about related entities (marked via)."
            ),
        },
    ),
    (
        search_by_concept,
        {
            **READ_UNCHECKED,
            "description": (
                "Find memories about a concept by meaning (semantic search), e.g. 'retry "
                "backoff', then memories about related entities (marked via)."
            ),
        },
    ),
    (
        search_code,
        {
            **READ_UNCHECKED,
            "description": "Hybrid search that ranks memories containing code first.",
        },
    ),
    (
        search_errors,
        {
            **READ_UNCHECKED,
            "description": (
                "What fixed an error before: first the stored 'this error was fixed by' pairs "
                "(the files changed, the session; learned from transcripts and test runs), "
                "then other memories about the error (tracebacks, codes, failures first). "
                "Paste an exception line, a failing test id or an error code."
            ),
        },
    ),
    (
        search_temporal,
        {
            **READ_UNCHECKED,
            "description": (
                "Memories from a time range: 'today', 'yesterday', 'last week', 'last 3 days', "
                "'since March 3', 'before 2026-01-01', '2026-11-01..2026-11-05' or an ISO date. "
                "With a query, searches within the range; without, lists newest first."
            ),
        },
    ),
    (
        reflection_stats,
        {
            **READ,
            "description": (
                "Counts of stored memories: total, by kind, by project, how many have vectors, "
                "and the model."
            ),
        },
    ),
    (
        get,
        {
            **READ_UNCHECKED,
            "description": (
                "One memory whole (content, tags, metadata, session) by its id or the short "
                "id a search answer shows. offset= starts the content further on (the rest of "
                "a content longer than responses.max_chars)."
            ),
        },
    ),
    (
        delete_memory,
        {
            "annotations": {"destructiveHint": True},
            "description": (
                "Delete one memory (conversation, reflection or insight) by id or short id."
            ),
        },
    ),
    (
        update_reflection,
        {"description": "Change a reflection's content and/or tags (new content is re-embedded)."},
    ),
]


def register(mcp: FastMCP) -> None:
    add_tools(mcp, TOOLS)
