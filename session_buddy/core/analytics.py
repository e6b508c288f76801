"""Quality over time: the history of a project's sessions, scores and test runs.

Read only. What it reads (records of the storage):

* ``sessions`` and ``quality`` (the session service's: one record per session, one per
  checkpoint with its score, breakdown and the test run it was scored on);
* ``test_results`` (:mod:`session_buddy.core.testresults`: runs reported with
  ``store_test_result`` or picked up from the project's reports, stored once each);
* reflections and insights (memory items), counted per session.

A session's test pass rate and coverage come from its newest stored test result, else from
its newest checkpoint's ``test_run``. Most-touched files come from ``git log`` of the
project's folder over the period.

:meth:`AnalyticsService.history` gathers it once; ``quality_trend`` and
``session_analytics`` shape compact answers from it (a model reads them: a few hundred to
~2,000 characters by default, per-session details on request), and
:mod:`session_buddy.core.report` renders it as Markdown, HTML or JSON with charts.
No MCP in here.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from session_buddy.adapters.storage._base import ItemFilter, Record, StorageBase
from session_buddy.core.charts import Series, line_chart, sparkline
from session_buddy.core.correlation import transitions
from session_buddy.core.temporal import parse_datetime, parse_expression
from session_buddy.core.testresults import COLLECTION as TEST_RESULTS
from session_buddy.errors import ValidationError

#: the session service's collections (read only here)
SESSIONS = "sessions"
QUALITY = "quality"
PAGE = 1000
#: sessions shown in charts and compact answers
CHART_SESSIONS = 30
_SHORT = re.compile(r"(\d+)\s*([hdw])")
_UNIT = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``30d``, ``12h``, ``2w``, an ISO date, or any expression of core.temporal
    ("last 3 days", "since March 3"); None or empty: the whole history."""
    if text is None or not text.strip():
        return None
    now = now or datetime.now(UTC)
    short = _SHORT.fullmatch(text.strip().lower())
    if short:
        return now - timedelta(seconds=int(short.group(1)) * _UNIT[short.group(2)])
    after = parse_expression(text, now).after
    if after is None:
        raise ValidationError(f"since={text!r} has no start; use e.g. 30d, 2026-11-01")
    return after


def _time(value: Any) -> datetime | None:
    """A stored ISO time, or None when absent or unreadable."""
    try:
        return parse_datetime(value) if isinstance(value, str) and value else None
    except ValidationError:
        return None


@dataclass
class SessionStats:
    """One session over the period: its score, checkpoints and test runs. ``final_score``,
    ``checkpoints`` and the times come from the session record (every session of the period);
    ``scores`` (each checkpoint's) are read for the recent sessions only."""

    id: str
    name: str | None
    status: str | None
    started_at: datetime
    ended_at: datetime | None
    final_score: int | None = None  # the score of its last checkpoint
    checkpoints: int = 0
    last_checkpoint_at: datetime | None = None
    scores: list[int] = field(default_factory=list)  # chronological (recent sessions only)
    test: dict[str, Any] | None = None  # newest test run (test_results data or test_run)
    test_runs: int = 0
    reflections: int = 0
    insights: int = 0

    @property
    def duration_s(self) -> float:
        end = self.ended_at or self.last_checkpoint_at or self.started_at
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def last_score(self) -> int | None:
        return (
            self.final_score if self.final_score is not None or not self.scores else self.scores[-1]
        )

    @property
    def pass_rate(self) -> float | None:
        return _pass_rate(self.test)

    @property
    def coverage(self) -> float | None:
        return self.test.get("coverage") if self.test else None

    def view(self, detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id if detail else self.id[:12],
            "started_at": self.started_at.isoformat(timespec="minutes"),
            "minutes": round(self.duration_s / 60),
            "checkpoints": self.checkpoints,
            "score": _score_stats(self.scores)
            or ({"last": self.last_score} if self.last_score is not None else None),
            "pass_rate": self.pass_rate,
            "coverage": self.coverage,
            "reflections": self.reflections,
            "insights": self.insights,
        }
        if detail:
            out.update(
                name=self.name,
                status=self.status,
                ended_at=self.ended_at.isoformat() if self.ended_at else None,
                test_runs=self.test_runs,
                test=self.test,
            )
        return out


def _pass_rate(test: dict[str, Any] | None) -> float | None:
    if not test:
        return None
    if test.get("pass_rate") is not None:
        return float(test["pass_rate"])
    passed, failed = test.get("passed"), test.get("failed") or 0
    if passed is None or passed + failed == 0:
        return None
    return round(100.0 * passed / (passed + failed), 1)


def _score_stats(scores: list[int]) -> dict[str, Any] | None:
    if not scores:
        return None
    return {
        "min": min(scores),
        "avg": round(statistics.fmean(scores), 1),
        "last": scores[-1],
    }


@dataclass
class History:
    project: str | None
    since: datetime | None
    sessions: list[SessionStats]  # oldest first
    lost: dict[str, float]  # component label -> points lost on average (recent checkpoints)
    files: list[tuple[str, int]] = field(default_factory=list)  # most-touched, with counts
    #: tests that went failing -> passing or back, with the files changed in between
    test_changes: list[dict[str, Any]] = field(default_factory=list)
    #: patterns across sessions (core.recurring.find_patterns), for the report
    patterns: dict[str, Any] | None = None

    @property
    def checkpoints(self) -> int:
        return sum(s.checkpoints for s in self.sessions)

    @property
    def scores(self) -> list[int]:
        """Each session's final score, oldest first."""
        return [s.last_score for s in self.sessions if s.last_score is not None]

    def recent(self, count: int = CHART_SESSIONS) -> list[SessionStats]:
        return self.sessions[-count:]

    def direction(self) -> str:
        """improving / declining / steady: the mean of the later half of the sessions'
        last scores against the earlier half (a change of 3 points or more counts)."""
        last = [s.last_score for s in self.recent() if s.last_score is not None]
        if len(last) < 2:
            return "not enough data"
        half = len(last) // 2
        change = statistics.fmean(last[half:]) - statistics.fmean(last[:half])
        return "improving" if change >= 3 else "declining" if change <= -3 else "steady"

    def chart(self) -> str:
        recent = self.recent()
        labels = [s.started_at.strftime("%m-%d") for s in recent]
        return line_chart(
            f"Quality of {self.project or 'all projects'}: last {len(recent)} session(s)",
            labels,
            [
                Series("score", [s.last_score for s in recent]),
                Series("test pass rate", [s.pass_rate for s in recent]),
            ],
        )

    def sparklines(self) -> dict[str, str]:
        recent = self.recent()
        return {
            "score": sparkline([s.last_score for s in recent]),
            "pass_rate": sparkline([s.pass_rate for s in recent]),
        }


class AnalyticsService:
    def __init__(self, storage: StorageBase) -> None:
        self.storage = storage

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> AnalyticsService:
        return cls(resolve(StorageBase))

    async def _since(
        self, collection: str, project: str | None, since: datetime | None, page: int = PAGE
    ) -> list[Record]:
        """A collection's records of the period, oldest first (read newest first in pages
        of ``page``: every record of a page is decoded, so a good guess saves time)."""
        out: list[Record] = []
        offset = 0
        while True:
            rows = await self.storage.list_records(
                collection, project=project, limit=page, offset=offset, newest_first=True
            )
            for record in rows:
                if since is not None and record.created_at < since:
                    out.reverse()
                    return out
                out.append(record)
            if len(rows) < page:
                out.reverse()
                return out
            offset += page

    async def history(
        self,
        project: str | None,
        since: datetime | None,
        *,
        files: bool = True,
        reflections: bool = True,
    ) -> History:
        """Every session of the period from the session records; each checkpoint (its score
        and test run) only for the last :data:`CHART_SESSIONS` sessions: a checkpoint record
        holds the whole breakdown, and reading 10,000 of them would cost seconds.
        ``reflections=False`` leaves the per-session reflection and insight counts at 0
        (they read every such memory of the period: seconds on a large store)."""
        sessions_rec, tests = await asyncio.gather(
            self._since(SESSIONS, project, since), self._since(TEST_RESULTS, project, since)
        )
        stats = {r.id: _stats_of(r) for r in sessions_rec}
        ordered = sorted(stats.values(), key=lambda s: s.started_at)
        recent = ordered[-CHART_SESSIONS:]
        window = recent[0].started_at if recent else since
        expected = sum(s.checkpoints for s in recent) + 10  # other projects' may interleave
        checkpoints = await self._since(
            QUALITY,
            project,
            max(filter(None, (since, window)), default=None),
            page=min(PAGE, expected if project else PAGE),
        )
        for record in checkpoints:
            s = stats.get(str(record.data.get("session_id")))
            if s is None:
                continue
            score = record.data.get("score")
            if isinstance(score, int):
                s.scores.append(score)
            run = (record.data.get("quality") or {}).get("test_run")
            if run and not s.test_runs:
                s.test = run
        for record in tests:
            s = stats.get(str(record.data.get("session_id")))
            if s is not None:
                s.test_runs += 1
                s.test = {**record.data, "id": record.id}
        if reflections:
            await self._count_reflections(project, since, ordered)
        history = History(project, since, ordered, _lost_points(checkpoints[-20:]))
        if files:
            path = _project_path(sessions_rec)
            if path is not None:
                history.files = await asyncio.to_thread(most_touched_files, path, since)
            runs = [r.data for r in tests]
            history.test_changes = await asyncio.to_thread(transitions, runs, path)
        return history

    async def _count_reflections(
        self, project: str | None, since: datetime | None, sessions: list[SessionStats]
    ) -> None:
        """Reflections and insights per session: by the item's session id, else by time
        (the session that was open when it was stored)."""
        if not sessions:
            return
        by_id = {s.id: s for s in sessions}
        starts = [s.started_at for s in sessions]
        flt = ItemFilter(
            projects=[project] if project else None,
            kinds=["reflection", "insight"],
            after=since or sessions[0].started_at,
        )
        offset = 0
        while True:
            items = await self.storage.list_items(flt, limit=PAGE, offset=offset)
            for item in items:
                owner = by_id.get(item.session_id or "")
                if owner is None:
                    index = bisect.bisect_right(starts, item.created_at) - 1
                    if index < 0:
                        continue
                    owner = sessions[index]
                if item.kind == "insight":
                    owner.insights += 1
                else:
                    owner.reflections += 1
            if len(items) < PAGE:
                return
            offset += PAGE

    async def handoff_trend(
        self, project: str | None, handoff_name: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """For a handoff named ``handoff_name`` (``.md``): what it shows of the project's
        trend (``HandoffContent.trend``) and the SVG chart to write beside it
        (``write_handoff(..., chart=...)``); (None, None) before the first checkpoint."""
        history = await self.history(project, None, files=False)
        if not history.scores:
            return None, None
        trend = {
            "chart": Path(handoff_name).with_suffix(".svg").name,
            "sparkline": history.sparklines(),
            "sessions": len(history.recent()),
            "direction": history.direction(),
        }
        return trend, history.chart()

    async def quality_trend(
        self, project: str | None, since: datetime | None, *, points: int = 15
    ) -> dict[str, Any]:
        history = await self.history(project, since, files=False)
        return trend_answer(history, points)

    async def session_analytics(
        self, project: str | None, since: datetime | None, *, limit: int = 5, detail: bool = False
    ) -> dict[str, Any]:
        history = await self.history(project, since)
        return analytics_answer(history, limit, detail)


def _stats_of(record: Record) -> SessionStats:
    d = record.data
    score, checkpoints = d.get("last_score"), d.get("checkpoints")
    return SessionStats(
        id=record.id,
        name=d.get("name"),
        status=record.status,
        started_at=record.created_at,
        ended_at=_time(d.get("ended_at")),
        final_score=score if isinstance(score, int) else None,
        checkpoints=checkpoints if isinstance(checkpoints, int) else 0,
        last_checkpoint_at=_time(d.get("last_checkpoint_at")),
    )


def _project_path(sessions: list[Record]) -> str | None:
    for record in reversed(sessions):
        path = record.data.get("project_path")
        if isinstance(path, str) and Path(path).is_dir():
            return path
    return None


def _lost_points(checkpoints: list[Record]) -> dict[str, float]:
    """Points lost per component, averaged over the given checkpoints (known ones only)."""
    lost: dict[str, list[float]] = {}
    for record in checkpoints:
        for c in (record.data.get("quality") or {}).get("breakdown") or []:
            if c.get("points") is None:
                continue
            lost.setdefault(str(c.get("label")), []).append(
                float(c.get("max_points", 0)) - float(c["points"])
            )
    means = {k: round(statistics.fmean(v), 1) for k, v in lost.items()}
    return dict(sorted(((k, v) for k, v in means.items() if v > 0), key=lambda kv: -kv[1]))


def most_touched_files(path: str, since: datetime | None, limit: int = 10) -> list[tuple[str, int]]:
    """Files changed by the most commits in the period (``git log --name-only``)."""
    from session_buddy.core.project import run_git

    args = ["log", "--name-only", "--format=", "-n", "2000"]
    if since is not None:
        args.insert(1, f"--since={since.isoformat()}")
    try:
        result = run_git(args, path)
    except (OSError, ValueError):
        return []
    if result.returncode != 0:
        return []
    counts = Counter(line.strip() for line in result.stdout.splitlines() if line.strip())
    return counts.most_common(limit)


def _summary(history: History) -> dict[str, Any]:
    scores = history.scores
    recent = history.recent()
    return {
        "project": history.project,
        "since": history.since.isoformat(timespec="minutes") if history.since else None,
        "sessions": len(history.sessions),
        "checkpoints": history.checkpoints,
        "score": _score_stats(scores),  # over the sessions' final scores
        "direction": history.direction(),
        "sparkline": history.sparklines(),
        "sessions_in_sparkline": len(recent),
    }


def trend_answer(history: History, points: int) -> dict[str, Any]:
    """quality_trend: the score and pass rate per session (last ``points``), the direction,
    and where points are lost."""
    out = _summary(history)
    if not history.checkpoints:
        out["message"] = "No checkpoint in this period: the trend starts with the first checkpoint."
        return out
    out["points"] = [
        {
            "at": s.started_at.strftime("%Y-%m-%d %H:%M"),
            "score": s.last_score,
            "pass_rate": s.pass_rate,
            "coverage": s.coverage,
        }
        for s in history.recent(points)
    ]
    out["losing_points"] = dict(list(history.lost.items())[:3])
    return out


def analytics_answer(history: History, limit: int, detail: bool) -> dict[str, Any]:
    """session_analytics: totals over the period, then the last ``limit`` sessions."""
    out = _summary(history)
    sessions = history.sessions
    if not sessions:
        out["message"] = "No session in this period."
        return out
    durations = [s.duration_s for s in sessions]
    tested = [s for s in sessions if s.pass_rate is not None]
    covered = [s.coverage for s in sessions if s.coverage is not None]
    out.update(
        active=sum(1 for s in sessions if s.status == "active"),
        minutes={
            "total": round(sum(durations) / 60),
            "avg": round(statistics.fmean(durations) / 60, 1),
        },
        tests={
            "sessions_with_results": len(tested),
            "last_pass_rate": tested[-1].pass_rate if tested else None,
            "avg_pass_rate": round(statistics.fmean(s.pass_rate or 0.0 for s in tested), 1)
            if tested
            else None,
            "last_coverage": covered[-1] if covered else None,
        },
        reflections=sum(s.reflections for s in sessions),
        insights=sum(s.insights for s in sessions),
        most_touched_files=[f"{name} ({n})" for name, n in history.files[: 10 if detail else 5]],
        test_changes=history.test_changes if detail else len(history.test_changes),
        last_sessions=[s.view(detail) for s in sessions[-limit:]],
    )
    return out
