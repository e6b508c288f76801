"""The evidence of a session's work, for its handoff.

What the handoff says was done comes from what the session left behind, not from what the
agent remembered to report: git since the HEAD recorded when the session began (commits,
files changed, committed or not, files created), the session's Claude Code transcript (the
prompt that began the work, the files its Edit/Write calls changed, the assistant's texts
with their stated next steps, a failed last command) and the test runs stored while it ran.
Each part is best effort: a handoff is written without the part that failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from session_buddy.adapters.storage._base import StorageBase
from session_buddy.core.capture import find_session_transcripts
from session_buddy.core.handoff import GitFacts, TranscriptFacts
from session_buddy.core.project import ProjectInfo, run_git
from session_buddy.core.sessions.state import SessionState
from session_buddy.core.testresults import COLLECTION as TEST_RESULTS
from session_buddy.core.testresults import result_view
from session_buddy.core.transcripts import transcript_work

log = logging.getLogger(__name__)

#: test runs recorded this long before the session began still count as its own (clocks)
RUN_SLACK = timedelta(seconds=60)
#: untracked files looked at for "created in the session"
UNTRACKED_CHECKED = 500


def _git_lines(args: list[str], root: str) -> list[str] | None:
    try:
        result = run_git(args, root)
    except Exception as exc:  # the handoff is still written without this part
        log.debug("git %s for the handoff failed: %s", args[0], exc)
        return None
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line.strip()]


def _base_commit(root: str, start_head: str | None, since: datetime) -> str | None:
    """The commit the session began on: the one recorded at its start when it still exists,
    else the last commit before it began."""
    if start_head and _git_lines(["cat-file", "-e", f"{start_head}^{{commit}}"], root) is not None:
        return start_head
    found = _git_lines(["rev-list", "-1", f"--before={since.isoformat()}", "HEAD"], root)
    return found[0].strip() if found else None


def _created_since(root: str, paths: list[str], since: datetime) -> list[str]:
    """Untracked files created (or written) since the session began."""
    cutoff = since.timestamp() - 1
    created = []
    for path in paths[:UNTRACKED_CHECKED]:
        try:
            if os.stat(os.path.join(root, path)).st_mtime >= cutoff:
                created.append(path)
        except OSError:
            continue
    return created


def git_work(info: ProjectInfo | None, start_head: str | None, since: datetime) -> GitFacts:
    """Commits made and files changed since the session began (blocking: git runs)."""
    if info is None or info.git is None:
        return GitFacts(start_head=start_head)
    g, root = info.git, info.path
    own = set(g.own)
    facts = GitFacts(
        branch=g.branch,
        head=g.head,
        start_head=start_head,
        tracked_changes=[p for p in g.tracked_changes if p not in own],
        untracked=len([p for p in g.untracked or [] if p not in own]),
        operation=g.operation,
    )
    base = _base_commit(root, start_head, since)
    if base:
        commits = _git_lines(["log", "--format=%h %s", "-n", "50", f"{base}..HEAD"], root)
        changed = _git_lines(["diff", "--name-only", "--no-renames", base], root)
    else:  # no commit before the session: every commit is its own
        commits = _git_lines(["log", "--format=%h %s", "-n", "50"], root) if g.head else []
        changed = None
    facts.commits = commits or []
    uncommitted = set(facts.tracked_changes)
    for path in changed if changed is not None else sorted(uncommitted):
        if path not in own:
            facts.files[path] = "uncommitted" if path in uncommitted else "committed"
    untracked = [p for p in g.untracked or [] if p not in own]
    for path in _created_since(root, untracked, since):
        facts.files[path] = "new, untracked"
    return facts


def relative_to(root: str | None, paths: list[str]) -> list[str]:
    """Paths inside ``root`` relative to it (as git names them); others as they are."""
    if not root:
        return paths
    base = Path(root).resolve()
    shown = []
    for path in paths:
        try:
            rel = Path(path).resolve().relative_to(base).as_posix()
        except (ValueError, OSError):
            rel = path
        if rel not in shown:
            shown.append(rel)
    return shown


def transcript_facts(state: SessionState, root: str | None) -> TranscriptFacts:
    """What the session's Claude Code transcript says (blocking: reads the file)."""
    files = find_session_transcripts(
        state.claude_session_id,
        state.transcript_path,
        state.working_directory or state.project_path,
    )
    if not files:
        return TranscriptFacts()
    facts = transcript_work(files, state.started_at)
    facts.edited = relative_to(root, facts.edited)
    return facts


async def session_test_runs(storage: StorageBase, state: SessionState) -> list[dict[str, Any]]:
    """The test runs of the session (stored with it, or in its project while it ran), oldest
    first."""
    after = state.started_at - RUN_SLACK
    records = await storage.list_records(TEST_RESULTS, project=state.project, limit=50)
    runs = [
        r
        for r in records
        if r.created_at >= after
        and (
            r.data.get("session_id") == state.id or (state.project and not r.data.get("session_id"))
        )
    ]
    return [result_view(r) for r in sorted(runs, key=lambda r: r.created_at)]


async def gather(
    storage: StorageBase, state: SessionState, info: ProjectInfo | None, *, transcripts: bool
) -> tuple[GitFacts, TranscriptFacts, list[dict[str, Any]]]:
    """git, the transcript (when transcripts are captured) and the test runs of a session."""
    root = info.path if info is not None else state.project_path
    git = await asyncio.to_thread(git_work, info, state.start_head, state.started_at)
    transcript = TranscriptFacts()
    if transcripts:
        try:
            transcript = await asyncio.to_thread(transcript_facts, state, root)
        except Exception as exc:  # the handoff is still written without it
            log.warning("reading the transcript for the handoff failed: %s", exc)
    try:
        runs = await session_test_runs(storage, state)
    except Exception as exc:
        log.warning("reading the test runs for the handoff failed: %s", exc)
        runs = []
    return git, transcript, runs
