"""MCP tools: test results and quality over time (thin: the work is in core).

``store_test_result`` reports a run (runs the project's runners leave behind are picked up by
checkpoints without it); ``quality_trend`` and ``session_analytics`` answer from the stored
history (:mod:`session_buddy.core.analytics`), compactly by default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from session_buddy import di
from session_buddy.adapters.storage._base import StorageBase
from session_buddy.core.analytics import AnalyticsService, parse_since
from session_buddy.core.errorfix import ErrorMemory
from session_buddy.core.memory import MemoryService
from session_buddy.core.recurring import find_patterns
from session_buddy.core.sessions import SessionService
from session_buddy.core.testresults import TestResultService
from session_buddy.errors import ValidationError
from session_buddy.tools.memory import default_project

Project = Annotated[
    str | None,
    Field(description="A project name; default: the current session's project (else all)"),
]
Since = Annotated[
    str | None,
    Field(
        description="Start of the period: 30d, 12h, 2w, an ISO date, or 'last 3 days'; "
        "default: the whole history",
        max_length=100,
    ),
]
Count = Annotated[int, Field(ge=0, le=10_000_000)]


async def store_test_result(
    test_file: Annotated[
        str,
        Field(
            min_length=1,
            max_length=500,
            description="What ran: a test file, a suite, or the command (e.g. 'pytest tests/')",
        ),
    ],
    result: Annotated[
        Literal["passed", "failed", "error", "skipped"],
        Field(description="The run's outcome"),
    ],
    session_id: Annotated[
        str | None, Field(description="The session it belongs to; default: the current session")
    ] = None,
    coverage: Annotated[
        float | None, Field(ge=0, le=100, description="Line coverage, percent")
    ] = None,
    duration_ms: Annotated[float | None, Field(ge=0, description="How long it ran")] = None,
    passed: Annotated[Count | None, Field(description="Tests passed")] = None,
    failed: Annotated[
        Count | None, Field(description="Tests failed or errored; default: len(failing_tests)")
    ] = None,
    skipped: Annotated[Count, Field(description="Tests skipped")] = 0,
    failing_tests: Annotated[
        list[Annotated[str, Field(max_length=500)]],
        Field(max_length=200, description="Ids of the failing tests (first 50 kept)"),
    ] = [],  # noqa: B006
) -> dict[str, Any]:
    sessions = di.get(SessionService)
    wanted = session_id or sessions.current_session_id()
    if not wanted:
        raise ValidationError("No current session: call start, or pass session_id")
    session = await sessions.get_session(wanted)
    stored = await di.get(TestResultService).store(
        session_id=session.id,
        project=session.project,
        project_path=session.project_path,
        test_file=test_file,
        result=result,
        passed=passed,
        failed=failed,
        skipped=skipped,
        coverage=coverage,
        duration_ms=duration_ms,
        failing=list(failing_tests),
    )
    if stored["created"]:  # its failures, and the earlier failures it shows fixed
        await ErrorMemory.from_container(di.get).learn_tests(
            session.id, session.project, session.project_path, session.claude_session_id
        )
    return stored


async def quality_trend(
    project: Project = None,
    since: Since = None,
    points: Annotated[int, Field(ge=1, le=100, description="Sessions listed")] = 15,
) -> dict[str, Any]:
    return await di.get(AnalyticsService).quality_trend(
        default_project(project), parse_since(since), points=points
    )


async def session_analytics(
    project: Project = None,
    since: Since = None,
    limit: Annotated[int, Field(ge=1, le=100, description="Last sessions listed")] = 5,
    detail: Annotated[
        bool, Field(description="Full ids, names and each session's newest test run")
    ] = False,
) -> dict[str, Any]:
    return await di.get(AnalyticsService).session_analytics(
        default_project(project), parse_since(since), limit=limit, detail=detail
    )


async def patterns(
    project: Project = None,
    since: Since = None,
    limit: Annotated[int, Field(ge=1, le=50, description="Entries of each kind")] = 5,
) -> dict[str, Any]:
    storage, access = di.get(StorageBase), await di.get(MemoryService).access()
    return await find_patterns(
        storage, default_project(project), parse_since(since), limit, access=access
    )


def register(mcp: FastMCP) -> None:
    mcp.tool(
        description=(
            "Record a test run for a session (the quality score's test component and the "
            "history use it). Runs that leave JUnit XML, pytest's cache or coverage files "
            "are picked up at checkpoints without this. Stored once per run."
        )
    )(store_test_result)
    mcp.tool(
        annotations={"readOnlyHint": True},
        description=(
            "Is the project getting healthier? The quality score per session (min/avg/last, "
            "improving/declining/steady, sparklines of score and test pass rate), the last "
            "sessions' points and the components losing the most points."
        ),
    )(quality_trend)
    mcp.tool(
        annotations={"readOnlyHint": True},
        description=(
            "Sessions of a project over a period: count, durations, checkpoints, score "
            "min/avg/last, test pass rate and coverage, reflections and insights, most-touched "
            "files, and the last sessions (detail=true for full ids and test runs)."
        ),
    )(session_analytics)
    mcp.tool(
        annotations={"readOnlyHint": True},
        description=(
            "Patterns across sessions: errors that recur (same signature in 2+ sessions, how "
            "often fixed, the last fix), files that keep breaking (in fixes or failing tests "
            "of 2+ sessions) and topics that come back (insights and reflections clustered "
            "by meaning). limit entries of each, with totals."
        ),
    )(patterns)
