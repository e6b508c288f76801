"""MCP tools, prompts and resources of the session lifecycle (thin: shaping only).

Tools: ``start``, ``checkpoint``, ``end``, ``status`` and the session-records API
(``create_session`` ... ``export_session``). Prompts ``start``, ``checkpoint``, ``end`` and
``status`` appear as slash commands in Claude Code. Handoff documents are resources:
``session-buddy://handoff/{project}/latest`` and ``session-buddy://sessions/{session_id}/handoff``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from session_buddy import di
from session_buddy.core.failures import one_line
from session_buddy.core.sessions import SessionService
from session_buddy.core.sessions.lifecycle import EndNotes
from session_buddy.errors import SessionBuddyError
from session_buddy.tools import SHORT_ID, Tools, add_tools

log = logging.getLogger(__name__)

Role = Literal["user", "assistant", "system"]
Status = Literal["active", "ended"]
ExportFormat = Literal["json", "markdown"]

SessionId = Annotated[
    str, Field(description="A session id (from start, create_session or list_sessions)")
]
OptionalSessionId = Annotated[
    str | None, Field(description="A session id; default: the current session of this project")
]
Cursor = Annotated[
    str | None, Field(description="next_cursor from the previous page; omit for the first")
]


Detail = Annotated[
    bool,
    Field(description="The whole answer (every field, the breakdown) instead of the compact one"),
]
#: the characters of a reflection a compact brief shows, and how many recommendations
BRIEF_REFLECTION_CHARS = 200
TOP_RECOMMENDATIONS = 3


def sessions() -> SessionService:
    return di.get(SessionService)


def compact_brief(brief: dict[str, Any]) -> dict[str, Any]:
    """What ``start`` answers by default: the session, the project in short, the latest
    handoff's summary (open problems and next steps among it; the whole document is the
    resource at its uri), the newest reflections in a line each, the last score."""
    s, p = brief["session"], brief["project"]
    session = {k: s.get(k) for k in ("id", "project", "project_path", "status", "started_at")}
    if s.get("claude_session_id"):
        session["claude_session_id"] = s["claude_session_id"]
    project = {
        k: p.get(k) for k in ("name", "aliases", "name_source", "path", "package_manager", "git")
    }
    project["languages"] = list(p.get("languages") or {})[:5]
    q = brief.get("last_quality")
    return {
        "session": session,
        "how": brief["how"],
        "project": project,
        "handoff": brief["handoff"],
        "reflections": [
            {
                "id": r["id"][:SHORT_ID],
                "kind": r["kind"],
                "text": one_line(r["content"], BRIEF_REFLECTION_CHARS),
                **({"tags": r["tags"]} if r.get("tags") else {}),
            }
            for r in brief.get("reflections") or []
        ],
        "last_quality": {
            "score": q["score"],
            "at": q["at"],
            "recommendations": (q.get("recommendations") or [])[:TOP_RECOMMENDATIONS],
        }
        if q
        else None,
        "spool_events_applied": brief.get("spool_events_applied", 0),
    }


def compact_checkpoint(result: dict[str, Any]) -> dict[str, Any]:
    """What ``checkpoint`` answers by default: the score, its change, the top
    recommendations and what is unknown; ``detail`` adds the breakdown."""
    keys = ("checkpoint_id", "session_id", "project", "name", "at", "score")
    out = {k: result.get(k) for k in keys}
    out["previous_score"] = result.get("previous_score")
    out["delta"] = result.get("delta")
    out["recommendations"] = (result.get("recommendations") or [])[:TOP_RECOMMENDATIONS]
    out["unknown"] = result.get("unknown") or []
    if result.get("git_commit"):
        out["git_commit"] = result["git_commit"]
    if result.get("insights_captured"):
        out["insights_captured"] = result["insights_captured"]
    return out


def compact_end(result: dict[str, Any]) -> dict[str, Any]:
    """What ``end`` answers by default: where the handoff is and the final score."""
    keys = ("session_id", "status", "already_ended", "handoff_path", "handoff_uri")
    out = {k: result.get(k) for k in keys}
    if "insights_captured" in result:
        out["insights_captured"] = result["insights_captured"]
    final = result.get("final_checkpoint")
    if final is not None:
        out["final_checkpoint"] = compact_checkpoint(final)
    return out


async def health_summary() -> dict[str, Any]:
    """Overall health and each component's status, for ``status``."""
    try:
        from session_buddy.adapters.health._base import HealthBase

        report = await di.get(HealthBase).check()
    except Exception as exc:  # status must answer even when health cannot
        return {"status": "unknown", "error": f"{type(exc).__name__}: {exc}"}
    components = report.get("components") or {}
    if isinstance(components, list):
        shown = {str(c.get("name")): c.get("status") for c in components if isinstance(c, dict)}
    elif isinstance(components, dict):
        shown = {
            str(k): (v.get("status") if isinstance(v, dict) else v) for k, v in components.items()
        }
    else:
        shown = {}
    return {"status": report.get("status"), "components": shown}


def _brief_text(result: dict[str, Any]) -> str:
    s = result["session"]
    project = result.get("project") or {}
    git = project.get("git") or {}
    aliases = project.get("aliases") or []
    also = f", also known as {', '.join(aliases)}" if aliases else ""
    lines = [
        f"session-buddy: session `{s['id']}` {result.get('how', 'opened')} for project "
        f"{s.get('project')}{also} ({project.get('path')})."
    ]
    langs = ", ".join(list((project.get("languages") or {}).keys())[:4])
    facts = [
        f"languages: {langs or '-'}",
        f"package manager: {project.get('package_manager') or '-'}",
    ]
    if git:
        facts.append(
            f"branch: {git.get('branch') or '(detached)'}, {git.get('tracked_changes', 0)} uncommitted file(s)"
        )
    lines.append("; ".join(facts) + ".")
    q = result.get("last_quality")
    if q:
        lines.append(f"Last quality score: {q.get('score')}/100 ({q.get('at')}).")
    handoff = result.get("handoff")
    if handoff:
        where = handoff.get("uri") or handoff["path"]
        lines += ["", f"Latest handoff ({where}):", handoff["summary"]]
    else:
        lines.append("No handoff from a previous session.")
    refl = result.get("reflections") or []
    if refl:
        lines += ["", "Recent reflections:"]
        lines += [f"- {' '.join(r['content'].split())[:200]}" for r in refl]
    return "\n".join(lines)


def _checkpoint_text(result: dict[str, Any]) -> str:
    delta = result.get("delta")
    change = f" ({delta:+d} since the previous checkpoint)" if delta is not None else ""
    lines = [
        f"Quality: {result.get('score')}/100{change}.",
        "",
        "| Component | Points | Evidence |",
        "|---|---|---|",
    ]
    for c in result.get("breakdown", []):
        pts = "unknown" if c.get("points") is None else f"{c['points']:g}/{c['max_points']}"
        lines.append(f"| {c['label']} | {pts} | {c['evidence']} |")
    recs = result.get("recommendations") or []
    if recs:
        lines += ["", "Recommendations:", *[f"- {r}" for r in recs]]
    commit = result.get("git_commit")
    if commit:
        lines.append("")
        if commit.get("committed"):
            lines.append(f"Committed {commit.get('sha', '')[:10]}: {commit.get('message')}")
        else:
            lines.append(f"No commit: {commit.get('skipped_reason') or commit.get('error')}")
    return "\n".join(lines)


async def start(
    working_directory: Annotated[
        str | None,
        Field(description="A folder inside the project; default: the client's folder"),
    ] = None,
    detail: Detail = False,
) -> dict[str, Any]:
    brief = (await sessions().start(working_directory)).to_dict()
    return brief if detail else compact_brief(brief)


async def checkpoint(
    session_id: OptionalSessionId = None,
    name: Annotated[str | None, Field(description="A label for this checkpoint")] = None,
    git_commit: Annotated[
        bool,
        Field(
            description="Also commit changes of tracked files: 'checkpoint: <project> (quality: N/100)'"
        ),
    ] = False,
    detail: Detail = False,
) -> dict[str, Any]:
    result = (await sessions().checkpoint(session_id, name, git_commit)).to_dict()
    return result if detail else compact_checkpoint(result)


async def end(
    session_id: OptionalSessionId = None,
    summary: Annotated[
        str | None,
        Field(description="What the session did, in a paragraph (the handoff's summary)"),
    ] = None,
    decisions: Annotated[
        list[str] | None, Field(description="Decisions made, one short sentence each")
    ] = None,
    next_steps: Annotated[
        list[str] | None, Field(description="What the next session should do, one item each")
    ] = None,
    detail: Detail = False,
) -> dict[str, Any]:
    notes = EndNotes(summary=summary, decisions=decisions, next_steps=next_steps)
    result = (await sessions().end(session_id, notes)).to_dict()
    return result if detail else compact_end(result)


async def status() -> dict[str, Any]:
    result = (await sessions().status()).to_dict()
    result["health"] = await health_summary()
    return result


async def create_session(
    name: Annotated[str, Field(description="A human-readable name")],
    metadata: Annotated[dict[str, Any], Field(description="Any JSON object")] = {},  # noqa: B006
    working_directory: Annotated[
        str | None,
        Field(
            description="A folder inside the project the session is for (an absolute path "
            "on the service's machine); its checkpoints analyse it and end writes its handoff"
        ),
    ] = None,
) -> dict[str, Any]:
    return (await sessions().create_session(name, dict(metadata), working_directory)).view()


async def get_session(session_id: SessionId) -> dict[str, Any]:
    return (await sessions().get_session(session_id)).view()


async def update_session(
    session_id: SessionId,
    name: Annotated[str | None, Field(description="New name; omit to keep")] = None,
    metadata: Annotated[
        dict[str, Any] | None, Field(description="Keys to merge; omit to keep")
    ] = None,
) -> dict[str, Any]:
    return (await sessions().update_session(session_id, name, metadata)).view()


async def list_sessions(
    project: Annotated[str | None, Field(description="Exact project name")] = None,
    status: Annotated[Status | None, Field(description="active or ended")] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    return (await sessions().list_sessions(project, status, limit, cursor)).to_dict()


async def delete_session(session_id: SessionId) -> dict[str, Any]:
    return (await sessions().delete_session(session_id)).to_dict()


async def add_message(
    session_id: SessionId,
    role: Annotated[Role, Field(description="user, assistant or system")],
    content: Annotated[str, Field(description="The message text, verbatim")],
) -> dict[str, Any]:
    return (await sessions().add_message(session_id, role, content)).to_dict()


async def get_messages(
    session_id: SessionId,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    return (await sessions().get_messages(session_id, limit, cursor)).to_dict()


async def export_session(
    session_id: SessionId,
    format: Annotated[ExportFormat, Field(description="json or markdown")] = "json",
) -> dict[str, Any]:
    return (await sessions().export_session(session_id, format)).to_dict()


async def _run(action: Any) -> str | None:
    """Run a lifecycle call for a prompt; prompts are not behind the tool middleware."""
    try:
        await di.ready()
        result: str = await action()
        return result
    except SessionBuddyError as exc:
        return f"session-buddy could not do this: {exc}"


async def start_prompt(working_directory: str | None = None) -> str:
    async def action() -> str:
        return _brief_text((await sessions().start(working_directory)).to_dict())

    text = await _run(action)
    return (
        f"{text}\n\nSummarise this brief for me in a few lines: where we left off, open "
        "problems and the next steps. Then continue from there."
    )


async def checkpoint_prompt(name: str | None = None, git_commit: str | None = None) -> str:
    commit = (git_commit or "").strip().lower() in ("1", "true", "yes", "y", "commit")

    async def action() -> str:
        return _checkpoint_text((await sessions().checkpoint(None, name, commit)).to_dict())

    text = await _run(action)
    return (
        f"session-buddy checkpoint:\n\n{text}\n\nIf you learned something worth keeping since "
        "the last checkpoint, store it with store_reflection. Then tell me the score and the "
        "one recommendation to act on first."
    )


async def end_prompt() -> str:
    current = sessions().current_session_id()
    target = f" (session `{current}`)" if current else ""
    return (
        f"We are ending this session{target}. Please:\n"
        "1. Store each important thing learned as a reflection (store_reflection), with tags "
        "such as 'decision' or 'problem' where they fit.\n"
        "2. Call the session-buddy `end` tool with summary (one paragraph), decisions and "
        "next_steps (lists of short sentences); files changed, commits and tests are found "
        "on their own.\n"
        "3. Tell me the handoff path and the quality score."
    )


async def status_prompt() -> str:
    async def action() -> str:
        result = (await sessions().status()).to_dict()
        result["health"] = await health_summary()
        return json.dumps(result, indent=2, default=str)

    text = await _run(action)
    return f"session-buddy status:\n\n```json\n{text}\n```\n\nSummarise this for me in two or three lines."


async def latest_handoff(project: str) -> str:
    return await sessions().read_latest_handoff(project)


async def session_handoff(session_id: str) -> str:
    return await sessions().read_handoff_for_session(session_id)


#: The session tools, each with its options for ``mcp.tool``.
TOOLS: Tools = [
    (
        start,
        {
            "description": "Start a working session: analyse the project (git root, name, languages, package "
            "manager, tests, CI, branch, uncommitted changes), open a session record, and return "
            "a brief with the latest handoff of this project in short (the previous session's goal, "
            "what it did, open problems, next steps; the whole handoff is the resource in "
            "handoff.uri), its recent reflections in a line each and its last quality score. Changes nothing in the project. Call it at the beginning of a session. detail=true: every field."
        },
    ),
    (
        checkpoint,
        {
            "description": "Checkpoint the session: a quality score 0-100 with a breakdown (evidence, points and "
            "one recommendation per component; unknown data is left out of the score), the change "
            "since the previous checkpoint, and optionally a git commit of tracked files only "
            "(never untracked ones; refused during a merge or rebase). The answer has the score, the change "
            "and the top recommendations; detail=true adds the breakdown."
        },
    ),
    (
        end,
        {
            "description": "End the session: a final checkpoint and a Markdown handoff built from the "
            "session's evidence (goal = its first prompt, files changed and commits since it "
            "began, tests run, decisions and insights, the next steps you stated, open problems; "
            "project-health advice in its own section), written under <project>/.claude/handoff/ "
            "(the data dir for a folder that is no project) and available as a resource. Pass "
            "summary, decisions and next_steps here: they come first in the handoff. The next "
            "start brings the handoff back in short. detail=true: the final checkpoint's breakdown and the session record."
        },
    ),
    (
        status,
        {
            "annotations": {"readOnlyHint": True},
            "description": "The current session: its duration, counts (messages, reflections, checkpoints), the "
            "last quality score, and a health summary of session-buddy.",
        },
    ),
    (
        create_session,
        {
            "description": "Create a session record (for integrations, e.g. an orchestrator over "
            "HTTP: a container for messages, then checkpoint and end it by session_id). "
            "working_directory: the project it is for (checkpoints score it, end writes its "
            "handoff); or put 'project' in metadata to scope its messages to a project name."
        },
    ),
    (
        get_session,
        {
            "annotations": {"readOnlyHint": True},
            "description": "Get one session record by id, with its message count.",
        },
    ),
    (
        update_session,
        {
            "description": "Rename a session and/or merge metadata into it (a key set to null is removed). "
            "Keys summary, goal, done, decisions, open_problems and next_steps feed the handoff."
        },
    ),
    (
        list_sessions,
        {
            "annotations": {"readOnlyHint": True},
            "description": "List sessions, newest first, optionally by project and status (active or ended).",
        },
    ),
    (
        delete_session,
        {
            "annotations": {"destructiveHint": True},
            "description": "Delete a session record and its messages. Reflections stored during it stay.",
        },
    ),
    (
        add_message,
        {
            "description": "Add a message to a session (role: user, assistant or system). It is stored as a "
            "searchable conversation in the session's project."
        },
    ),
    (
        get_messages,
        {
            "annotations": {"readOnlyHint": True},
            "description": "The messages of a session, oldest first, paginated.",
        },
    ),
    (
        export_session,
        {
            "annotations": {"readOnlyHint": True},
            "description": "Export a session (record, messages, reflections, checkpoints) as JSON or Markdown text.",
        },
    ),
]

#: Prompts (slash commands in Claude Code), with their options for ``mcp.prompt``.
PROMPTS: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (
        start_prompt,
        {
            "name": "start",
            "description": "Start a session-buddy session for this project and bring back where you left off.",
        },
    ),
    (
        checkpoint_prompt,
        {
            "name": "checkpoint",
            "description": "Checkpoint the session: quality score with breakdown and change since last time.",
        },
    ),
    (
        end_prompt,
        {
            "name": "end",
            "description": "End the session: record decisions and next steps, then write the handoff.",
        },
    ),
    (
        status_prompt,
        {
            "name": "status",
            "description": "Show the current session, its counts, last score and health.",
        },
    ),
]

#: Resources: (URI template, function, options for ``mcp.resource``).
RESOURCES: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
    (
        "session-buddy://handoff/{project}/latest",
        latest_handoff,
        {
            "mime_type": "text/markdown",
            "description": "The latest handoff document of a project (Markdown).",
        },
    ),
    (
        "session-buddy://sessions/{session_id}/handoff",
        session_handoff,
        {
            "mime_type": "text/markdown",
            "description": "The handoff document written when a session ended (Markdown).",
        },
    ),
]


def register(mcp: FastMCP) -> None:
    add_tools(mcp, TOOLS)
    for function, options in PROMPTS:
        mcp.prompt(function, **options)
    for uri, function, options in RESOURCES:
        mcp.resource(uri, **options)(function)
