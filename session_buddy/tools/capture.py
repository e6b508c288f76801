"""MCP tools: import Claude Code transcripts, search and count the insights captured."""

from __future__ import annotations

from typing import Annotated, Any

from fastmcp import Context, FastMCP
from pydantic import BaseModel, Field

from session_buddy import di
from session_buddy.core.capture import CaptureService
from session_buddy.errors import ValidationError

MAX_LIMIT = 100


class ImportSummary(BaseModel):
    path: str = Field(description="What was imported (a folder or one transcript file)")
    files: int = Field(description="Transcript files looked at")
    files_read: int = Field(description="Files with new lines read this time")
    files_unchanged: int
    files_restarted: int = Field(
        description="Files truncated or rewritten, read again from the start"
    )
    turns: int = Field(description="Conversation turns found in the new lines")
    stored: int = Field(description="Turns stored")
    duplicates: int = Field(description="Turns already stored (same project and content)")
    rejected: int = Field(description="Turns the storage refused (see errors)")
    insights: int = Field(description="New insights stored")
    insight_duplicates: int
    errors_fixed: int = Field(
        default=0, description="Failures the transcripts show fixed (see search_errors)"
    )
    lines: int
    malformed: int = Field(description="Lines skipped because they are not valid transcript JSON")
    invalid_utf8: int = Field(description="Lines with non-UTF-8 bytes (the bytes were replaced)")
    oversized: int
    skipped: int = Field(
        description="Lines with nothing to store (bookkeeping, thinking or tool calls only)"
    )
    pending_bytes: int = Field(description="An incomplete last line, left until it is complete")
    bytes_read: int
    seconds: float
    errors: list[str]


class Insight(BaseModel):
    id: str
    content: str
    project: str | None
    session_id: str | None
    created_at: str
    tags: list[str]
    confidence: float | None = Field(description="How likely this is a real insight, 0..1")
    score: float | None = Field(
        default=None, description="Search relevance, 0..1 (None when listing)"
    )
    metadata: dict[str, Any]


class InsightResults(BaseModel):
    query: str
    count: int
    insights: list[Insight]


def capture() -> CaptureService:
    return di.get(CaptureService)


def _insight(item: Any) -> Insight:
    confidence = item.metadata.get("confidence")
    return Insight(
        id=item.id,
        content=item.content,
        project=item.project,
        session_id=item.session_id,
        created_at=item.created_at.isoformat(),
        tags=list(item.tags),
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        score=round(item.score, 4) if hasattr(item, "score") else None,
        metadata=item.metadata,
    )


async def index_transcripts(
    ctx: Context,
    path: Annotated[
        str | None, Field(description="Folder or .jsonl file; default ~/.claude/projects")
    ] = None,
) -> ImportSummary:
    async def progress(done: int, total: int) -> None:
        await ctx.report_progress(done, total or None, "importing transcripts")

    from session_buddy.core.transcripts import claude_projects_dir

    root = path or str(claude_projects_dir())
    report = await capture().import_transcripts(root, progress=progress)
    return ImportSummary(path=root, **report.to_dict())


async def search_insights(
    query: Annotated[str, Field(description="What to look for, or '*' for all")],
    project: str | None = None,
    limit: int = 20,
) -> InsightResults:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if not query.strip():
        raise ValidationError("query must not be empty: give words to look for, or '*' for all")
    found = await capture().search_insights(query, project=project, limit=limit)
    insights = [_insight(i) for i in found]
    return InsightResults(query=query, count=len(insights), insights=insights)


async def insights_statistics() -> dict[str, Any]:
    return await capture().insight_statistics()


def register(mcp: FastMCP) -> None:
    mcp.tool(
        index_transcripts,
        description=(
            "Import Claude Code transcripts into memory: user and assistant text as "
            "conversations (the tools a turn called are its metadata, never a turn of their "
            "own; long tool results cut; session-buddy's own answers and Claude Code's "
            "helper agents left out) and the '★ Insight' blocks as insights. path: a folder "
            "or one .jsonl file (default "
            "~/.claude/projects). Incremental: only lines added since the last import are "
            "read; re-running stores nothing twice. Sends progress notifications."
        ),
    )
    mcp.tool(
        search_insights,
        annotations={"readOnlyHint": True},
        description=(
            "Search the insights captured from Claude Code sessions (hybrid search), or "
            "query='*' to list them all, newest first. project scopes to one project."
        ),
    )
    mcp.tool(
        insights_statistics,
        annotations={"readOnlyHint": True},
        description="Counts of captured insights: total, by project, by topic tag and by day.",
    )
