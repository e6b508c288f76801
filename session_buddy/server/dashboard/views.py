"""The sessions, quality, projects and health pages' contexts (read only, core services)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from session_buddy import di
from session_buddy.adapters.health._base import HealthBase
from session_buddy.adapters.storage._base import StorageBase
from session_buddy.core.analytics import AnalyticsService
from session_buddy.core.charts import Series, line_chart
from session_buddy.core.memory import MemoryService
from session_buddy.core.projects import ProjectService
from session_buddy.core.sessions import SessionService
from session_buddy.core.sessions.state import SessionState
from session_buddy.core.teams import TeamService
from session_buddy.errors import NotFound, SessionBuddyError
from session_buddy.server.dashboard.graph_svg import project_graph_svg
from session_buddy.server.dashboard.pages import PAGE_SIZE, item_view, project_names, service_facts

log = logging.getLogger(__name__)

#: checkpoints read to find one session's (they are stored per project, newest first)
CHECKPOINT_SCAN = 500
TIMELINE_MESSAGES = 200


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def duration(state: SessionState) -> str:
    end = state.ended_at or state.last_checkpoint_at or state.updated_at
    seconds = max(0, int((end - state.started_at).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def session_row(state: SessionState) -> dict[str, Any]:
    return {
        "id": state.id,
        "name": state.name,
        "project": state.project,
        "status": state.status,
        "started_at": _when(state.started_at),
        "ended_at": _when(state.ended_at),
        "duration": duration(state),
        "score": state.last_score,
        "checkpoints": state.checkpoints,
        "messages": state.message_count,
        "has_handoff": bool(state.handoff_path),
    }


async def sessions_page(project: str, page: int) -> dict[str, Any]:
    service = di.get(SessionService)
    # the dashboard's user's own sessions (on a shared store, not a teammate's)
    states, more = await service.store.owned_page(
        service.records.owners.mine(), project=project or None, limit=page * PAGE_SIZE
    )
    return {
        "sessions": [session_row(s) for s in states[(page - 1) * PAGE_SIZE :]],
        "project": project,
        "page": page,
        "has_more": more is not None,
        "projects": await project_names(),
    }


async def find_session(session_id: str) -> SessionState:
    """A session by its id, or by the Claude Code session id its items carry."""
    service = di.get(SessionService)
    found = await service.store.find(session_id)
    if found is None:
        found = await service.store.by_claude_id(session_id)
    mine = service.records.owners.mine()
    if found is None or not found.owned_by(mine):  # another user's: like an unknown id
        raise NotFound(f"no session with id {session_id!r}")
    return found


def _checkpoint_events(state: SessionState, checkpoints: list[Any]) -> list[dict[str, Any]]:
    events = []
    for c in checkpoints:
        if c.session_id != state.id:
            continue
        text = f"score {c.score}" + (f" ({c.delta:+d})" if c.delta else "")
        events.append({"at": c.at, "type": "checkpoint", "text": text, "title": c.name or ""})
        commit = c.git_commit or {}
        if commit.get("committed"):
            sha = str(commit.get("sha") or "")[:10]
            events.append(
                {
                    "at": c.at,
                    "type": "commit",
                    "text": str(commit.get("message") or ""),
                    "title": sha,
                }
            )
    return events


async def _handoff_html(state: SessionState) -> str | None:
    from markdown_it import MarkdownIt

    try:
        text = await di.get(SessionService).docs.read_for_session(state)
    except SessionBuddyError:
        return None
    # no raw HTML from the document: it is rendered as text
    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


async def session_page(session_id: str) -> dict[str, Any]:
    """A session's timeline (start, checkpoints, commits, messages, insights, end) and its
    handoff rendered as Markdown."""
    state = await find_session(session_id)
    service, memory = di.get(SessionService), di.get(MemoryService)
    messages, notes, checkpoints, handoff = await asyncio.gather(
        service.get_messages(state.id, limit=TIMELINE_MESSAGES),
        memory.list_recent(session_id=state.id, kinds=["reflection", "insight"], limit=100),
        service.store.checkpoints(state.project, limit=CHECKPOINT_SCAN),
        _handoff_html(state),
    )
    events: list[dict[str, Any]] = [
        {"at": state.started_at, "type": "start", "text": "session started", "title": ""}
    ]
    events += _checkpoint_events(state, checkpoints)
    for m in messages.messages:
        events.append(
            {"at": m.created_at, "type": "message", "title": m.role or "", "text": m.content}
        )
    for n in notes:
        events.append(
            {"at": n.created_at, "type": n.kind, "title": ", ".join(n.tags), "text": n.content}
        )
    if state.ended_at:
        events.append({"at": state.ended_at, "type": "end", "text": "session ended", "title": ""})
    events.sort(key=lambda e: e["at"])
    for e in events:
        e["at"] = _when(e["at"])
        e["text"] = str(e["text"])[:2000]
    return {
        "session": session_row(state),
        "working_directory": state.working_directory or state.project_path,
        "transcript": state.transcript_path,
        "events": events,
        "more_messages": messages.next_cursor is not None,
        "handoff": handoff,
        "notes": [item_view(n) for n in notes],
    }


async def quality_page(project: str) -> dict[str, Any]:
    """Per project: the score trend and the test pass rate, one point per session (the
    analytics history: checkpoints, and test runs when stored)."""
    projects = await project_names()
    history = await di.get(AnalyticsService).history(
        project or None, None, files=False, reflections=False
    )
    recent = history.recent()
    labels = [s.started_at.strftime("%m-%d %H:%M") for s in recent]
    name = project or "all projects"
    score = line_chart(
        f"Quality score of {name}", labels, [Series("score", [s.last_score for s in recent])]
    )
    rate = line_chart(
        f"Test pass rate of {name}",
        labels,
        [Series("test pass rate", [s.pass_rate for s in recent])],
    )
    return {
        "project": project,
        "projects": projects,
        "score_chart": score,
        "pass_chart": rate,
        "direction": history.direction(),
        "sessions": len(history.sessions),
        "checkpoints": history.checkpoints,
        "lost": sorted(history.lost.items(), key=lambda kv: -kv[1])[:8],
        "rows": [
            {
                "id": s.id,
                "started_at": _when(s.started_at),
                "score": s.last_score,
                "pass_rate": s.pass_rate,
                "checkpoints": s.checkpoints,
            }
            for s in reversed(recent)
        ],
    }


async def _team_views() -> list[dict[str, Any]]:
    teams = di.get(TeamService)
    out = []
    for team in await teams.list_teams():
        try:
            out.append(await teams.get_team_statistics(team["name"]))
        except SessionBuddyError as exc:  # removed meanwhile
            log.info("team %s: %s", team["name"], exc)
    return out


async def projects_page() -> dict[str, Any]:
    """Projects, dependencies and groups drawn as a graph; teams and what each shares."""
    graph = await di.get(ProjectService).get_project_graph()
    return {
        "graph": graph,
        "svg": project_graph_svg(graph),
        "teams": await _team_views(),
    }


async def health_page() -> dict[str, Any]:
    """Adapters, model, storage size, uptime and the sync state (the health check's view)."""
    report, stats = await asyncio.gather(di.get(HealthBase).check(), di.get(MemoryService).stats())
    storage = await di.get(StorageBase).stats()
    components = report.get("components") or []
    sync = next((c for c in components if c.get("name") == "sync"), None)
    return {
        "report": report,
        "components": components,
        "adapters": (report.get("metadata") or {}).get("adapters") or {},
        "memory": stats,
        "size_bytes": storage.size_bytes,
        "vector_search": storage.vector_search,
        "service": service_facts(),
        "sync": sync,
    }
