"""Error -> fix memory: failures and what resolved them, stored, searched and recalled.

Two sources feed it:

* **transcripts**: while a Claude Code transcript is imported
  (:class:`~session_buddy.core.capture.CaptureService`), a
  :class:`~session_buddy.core.failures.FixTracker` follows its Bash results and edits and
  reports each failure when it is seen and when a later run shows it fixed;
* **test results**: at a checkpoint (:meth:`ErrorMemory.learn_tests`), a test failing in one
  of the session's stored runs (:mod:`session_buddy.core.testresults`) and passing in a later
  comparable run of the same source was fixed by the files changed in between: ``git diff``
  of the two runs' commits, else the edits of the session's transcript in that time.

One record per (session, signature) in the ``error_fixes`` collection (status ``open`` until
fixed, then ``fixed``; the same failure again in that session counts as an occurrence):

============ ============================ ======= =============================================
collection   id                           project data
============ ============================ ======= =============================================
error_fixes  sha256(session|signature)    project signature, kind, sample, session_id,
             [:32]                                sb_session, first_seen, times, occurrences,
                                                  failed_command, fixed_at, files, description,
                                                  command (the passing run), origin
============ ============================ ======= =============================================

:meth:`ErrorMemory.search` answers ``search_errors``'s "this error was fixed by ..." pairs;
:meth:`ErrorMemory.recall` the UserPromptSubmit hook's (a prompt holding a known error's
signature: a pasted exception line, a failing test id, an error code). No MCP in here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from session_buddy.adapters.storage._base import ItemFilter, Record, StorageBase
from session_buddy.core.access import own_authors
from session_buddy.core.correlation import changed_files
from session_buddy.core.failures import (
    MAX_FILES,
    FixEvent,
    edited_file,
    normalise,
    one_line,
    recognise,
)
from session_buddy.core.testresults import COLLECTION as TEST_RESULTS
from session_buddy.core.testresults import MAX_FAILING
from session_buddy.core.users import acting_user
from session_buddy.settings import SessionBuddySettings

COLLECTION = "error_fixes"
#: fixed records looked at by one search (newest first)
SCAN = 2000
#: occurrence times kept per record
MAX_TIMES = 20
#: a search hit below this match is no hit
MIN_MATCH = 0.5
_TEST_ID = re.compile(r"(?<![\w/.-])([\w./-]+\.py::[\w\[\]\-.:/]+)")
_CODE = re.compile(r"\b(?:[A-Z]{1,4}\d{3,5}|TS\d{3,5})\b|\[([a-z][a-z0-9]*(?:-[a-z0-9]+)+)\]")
#: an exception anywhere in a line of a query (``it crashed: KeyError: 'user_id'``)
_INLINE_EXCEPTION = re.compile(
    r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception|Failure))(?::\s*(.*))?$", re.M
)
_WORD = re.compile(r"[A-Za-z_][\w']+")


def record_id(session_id: str | None, signature: str) -> str:
    return hashlib.sha256(f"{session_id or ''}|{signature}".encode()).hexdigest()[:32]


def _time(value: str | None) -> datetime:
    if value:
        try:
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def merge(
    current: Record | None,
    event: FixEvent,
    origin: str,
    sb_session: str | None,
    author: str | None = None,
) -> Record:
    """The record after ``event``: a new open one, one more occurrence, or now fixed.
    ``author``: who it belongs to (as an item's author; kept from the first event)."""
    now = datetime.now(UTC)
    data: dict[str, Any] = dict(current.data) if current else {}
    if current is None:
        data = {
            "signature": event.signature,
            "kind": event.kind,
            "sample": event.sample,
            "session_id": event.session_id,
            "sb_session": sb_session,
            "first_seen": event.at,
            "times": [],
            "occurrences": 0,
            "failed_command": event.command if event.event == "seen" else None,
            "origin": origin,
        }
        if author is not None:
            data["author"] = author
    if sb_session and not data.get("sb_session"):
        data["sb_session"] = sb_session
    times = list(data.get("times") or [])
    if event.event == "seen" and event.at not in times:
        times = [*times, event.at][-MAX_TIMES:]
        data["occurrences"] = int(data.get("occurrences") or 0) + 1
    data["times"] = times
    data["last_seen"] = max(filter(None, [data.get("last_seen"), event.at]), default=None)
    status = current.status if current else "open"
    if event.event == "fixed":
        status = "fixed"
        files = list(dict.fromkeys([*(data.get("files") or []), *event.files]))[:MAX_FILES]
        data.update(
            files=files,
            fixed_at=event.fixed_at,
            command=event.command,
            description=event.description or data.get("description"),
        )
        data["occurrences"] = max(1, int(data.get("occurrences") or 0))
    return Record(
        collection=COLLECTION,
        id=record_id(event.session_id, event.signature),
        data=data,
        project=current.project if current else event.project,
        status=status,
        created_at=current.created_at if current else _time(event.at),
        updated_at=now,
    )


def fix_view(record: Record, match: float | None = None) -> dict[str, Any]:
    """The compact "this error was fixed by ..." pair."""
    d = record.data
    view: dict[str, Any] = {
        "error": d.get("signature"),
        "kind": d.get("kind"),
        "fixed_by": d.get("description")
        or (
            "edits to " + ", ".join(d["files"][:3])
            if d.get("files")
            else f"not known (a later run of {d.get('command') or 'it'} passed)"
        ),
        "files": (d.get("files") or [])[:8],
        "run": d.get("command"),
        "session_id": d.get("session_id"),
        "project": record.project,
        "fixed_at": d.get("fixed_at"),
    }
    if match is not None:
        view["match"] = round(match, 2)
    return {k: v for k, v in view.items() if v not in (None, [], "")}


def query_signatures(text: str) -> set[str]:
    """What in ``text`` can name a known error: recognised failures, test ids, error codes."""
    found = {f.signature for f in recognise(text)}
    for exception in _INLINE_EXCEPTION.finditer(text):
        message = normalise(exception[2] or "")
        found.add(exception[1] + (f": {message}" if message else ""))
    for test in _TEST_ID.findall(text):  # as pytest prints it, and as its JUnit XML spells it
        found.add(f"test {test}")
        path, _, name = test.partition("::")
        found.add(f"test {path.removesuffix('.py').replace('/', '.')}::{name}")
    for code in _CODE.finditer(text):
        found.add(code[0] if not code[1] else f"mypy [{code[1]}]")
    return found


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 2}


def match_score(query: str, signatures: set[str], record: Record) -> float:
    """How well ``record`` answers ``query``: 1 for the same signature, 0.9 when the query is
    part of it, else the share of the query's words it holds (0.5-0.8)."""
    d = record.data
    signature = str(d.get("signature") or "")
    if signature in signatures:
        return 1.0
    wanted = normalise(query).lower()
    if wanted and len(wanted) >= 3 and wanted in signature.lower():
        return 0.9
    if signature.split(":", 1)[0] in signatures:  # the same exception, another message
        return 0.6
    words = _words(wanted)
    if not words:
        return 0.0
    have = _words(" ".join(str(d.get(k) or "") for k in ("signature", "sample", "description")))
    share = len(words & have) / len(words)
    return 0.5 + 0.3 * share if share >= 0.6 else 0.0


class ErrorMemory:
    """Stores failures and their fixes; answers searches and the recall."""

    def __init__(
        self,
        storage: StorageBase,
        settings: SessionBuddySettings | None = None,
        authors: frozenset[str | None] | None = None,
    ) -> None:
        """``settings``: records carry their author (the acting user) and reads show only
        the caller's own, as for items; None (a library without users): everything.
        ``authors``: reads show the records of these authors instead (an access rule's)."""
        self.storage = storage
        self.settings = settings
        self.authors = authors

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> ErrorMemory:
        return cls(resolve(StorageBase), resolve(SessionBuddySettings))

    def _author(self) -> str | None:
        return None if self.settings is None else acting_user(self.settings)

    def visible(self, records: list[Record]) -> list[Record]:
        """The records the acting user owns (an author-less one: the install's own user)."""
        if self.authors is not None:
            return [r for r in records if r.data.get("author") in self.authors]
        if self.settings is None:
            return records
        mine = own_authors(acting_user(self.settings), self.settings)
        return [r for r in records if r.data.get("author") in mine]

    async def record(
        self,
        events: Iterable[FixEvent],
        *,
        origin: str = "transcript",
        sb_session: str | None = None,
    ) -> int:
        """Store the events (each merged into its record); how many fixes they hold."""
        fixed, author = 0, self._author()
        for event in events:
            if event.event == "fixed":
                fixed += 1

            def change(current: Record | None, event: FixEvent = event) -> Record:
                return merge(current, event, origin, sb_session, author)

            await self.storage.modify_record(
                COLLECTION, record_id(event.session_id, event.signature), change
            )
        return fixed

    async def _visible(self, project: str | None, status: str | None, limit: int) -> list[Record]:
        """The newest ``limit`` records the acting user owns, read page by page: a teammate's
        newer records on a shared store do not take the places of the caller's own."""
        found: list[Record] = []
        offset = 0
        while len(found) < limit:
            page = await self.storage.list_records(
                COLLECTION, project=project, status=status, limit=limit, offset=offset
            )
            found += self.visible(page)
            if len(page) < limit:
                break
            offset += len(page)
        return found[:limit]

    async def _fixed(self, projects: Sequence[str] | None, limit: int = SCAN) -> list[Record]:
        if not projects:
            return await self._visible(None, "fixed", limit)
        found: list[Record] = []
        for project in dict.fromkeys(projects):
            found += await self._visible(project, "fixed", limit)
        return found

    async def search(
        self, query: str, *, projects: Sequence[str] | None = None, limit: int = 5
    ) -> list[dict[str, Any]]:
        """The stored fixes of errors matching ``query``, best match first, then newest."""
        signatures = query_signatures(query)
        best: dict[str, tuple[float, str, Record]] = {}
        fixes: dict[str, int] = {}
        for record in await self._fixed(projects):
            score = match_score(query, signatures, record)
            if score < MIN_MATCH:
                continue
            key, at = str(record.data.get("signature")), str(record.data.get("fixed_at") or "")
            fixes[key] = fixes.get(key, 0) + 1
            if key not in best or (score, at) > best[key][:2]:
                best[key] = (score, at, record)
        ordered = sorted(best.values(), key=lambda s: s[:2], reverse=True)[:limit]
        out = []
        for score, _, record in ordered:
            view = fix_view(record, score)
            times = fixes[str(record.data.get("signature"))]
            out.append({**view, "times_fixed": times} if times > 1 else view)
        return out

    async def recall(
        self, prompt: str, projects: Sequence[str] | None, limit: int = 2
    ) -> list[Record]:
        """Fixes of the errors a prompt names exactly (its signatures), newest first."""
        signatures = query_signatures(prompt[:20_000])
        if not signatures:
            return []
        found = [r for r in await self._fixed(projects) if r.data.get("signature") in signatures]
        found.sort(key=lambda r: str(r.data.get("fixed_at") or ""), reverse=True)
        seen: set[str] = set()
        out = []
        for record in found:
            if record.data.get("signature") not in seen:
                seen.add(str(record.data.get("signature")))
                out.append(record)
        return out[:limit]

    # -- test results -------------------------------------------------------------------------

    async def learn_tests(
        self,
        session_id: str,
        project: str | None,
        project_path: str | None,
        transcript_session: str | None = None,
    ) -> int:
        """Failures and fixes of the session's stored test runs (idempotent); how many fixes."""
        rows = await self.storage.list_records(TEST_RESULTS, project=project, limit=500)
        runs = [r for r in reversed(rows) if r.data.get("session_id") == session_id]
        owner = transcript_session or session_id
        events: list[FixEvent] = []
        last_of: dict[str, dict[str, Any]] = {}
        for record in runs:
            run = record.data
            at = run.get("recorded_at") or record.created_at.isoformat()
            failing = [str(t) for t in run.get("failing") or []]
            for test in failing:
                events.append(FixEvent("seen", f"test {test}", "test", test, owner, project, at))
            source = str(run.get("source"))
            before = last_of.get(source)
            last_of[source] = {**run, "recorded_at": at}
            if before is None or not (_comparable(before) and _comparable(run)):
                continue
            gone = sorted(set(before.get("failing") or []) - set(failing))
            if gone:
                files, description = await self._between(before, run, at, project_path, owner)
                for test in gone:
                    events.append(
                        FixEvent(
                            "fixed", f"test {test}", "test", test, owner, project,
                            before["recorded_at"], command=source, fixed_at=at,
                            files=files, description=description,
                        )
                    )  # fmt: skip
        return await self.record(events, origin="test_results", sb_session=session_id)

    async def _between(
        self,
        before: dict[str, Any],
        after: dict[str, Any],
        at: str,
        project_path: str | None,
        transcript_session: str,
    ) -> tuple[list[str], str | None]:
        """The files changed between two runs and the assistant's last words before the later."""
        a, b = before.get("commit"), after.get("commit")
        files: list[str] = []
        if a and b and a != b and project_path:
            diff = await asyncio.to_thread(changed_files, project_path, a, b)
            files = list(diff or [])
        start, end = _time(before["recorded_at"]), _time(at) + timedelta(seconds=1)
        flt = ItemFilter(session_id=transcript_session, role="tool", after=start, before=end)
        items = await self.storage.list_items(flt, limit=500, newest_first=False)
        for item in items:
            path = edited_file(item.metadata)
            if path and path not in files:
                files.append(path)
        flt.role = "assistant"
        said = await self.storage.list_items(flt, limit=1, newest_first=True)
        description = one_line(said[0].content, 240) if said else None
        return files[:MAX_FILES], description

    async def records(
        self, project: str | None, since: datetime | None, limit: int = 5000
    ) -> list[Record]:
        """Every record of a project (all projects: None) since ``since``, newest first."""
        rows = await self._visible(project, None, limit)
        return [r for r in rows if since is None or r.created_at >= since]


def _comparable(run: dict[str, Any]) -> bool:
    return len(run.get("failing") or []) < MAX_FAILING and run.get("total") is not None
