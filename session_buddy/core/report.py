"""The quality report of a project: Markdown, HTML or JSON, with the trend chart.

Built from a :class:`~session_buddy.core.analytics.History`: the summary (sessions,
checkpoints, score min/avg/last and its direction, test pass rate and coverage), the chart
of the score and the test pass rate over the last sessions, where points are lost, the most
touched files, the patterns across sessions (recurring errors, files that keep breaking,
topics that come back: :mod:`session_buddy.core.recurring`) and a table of the last sessions. Markdown links the chart (an SVG file
written beside the report) and shows a one-line sparkline a terminal reader sees too; HTML
embeds the SVG. No MCP in here.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Literal

from session_buddy.core.analytics import History, SessionStats, analytics_answer
from session_buddy.core.charts import span

Format = Literal["md", "html", "json"]
FORMATS: tuple[Format, ...] = ("md", "html", "json")
TABLE_ROWS = 30


def _num(value: float | int | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def _change(change: dict[str, Any]) -> str:
    """`test` fixed/broke between two commits, and what changed in between."""
    where = f"{change.get('from') or '?'}..{change.get('to') or '?'}"
    if change.get("note"):
        what = change["note"]
    elif change.get("files_changed") is None:
        what = "files changed: unknown"
    else:
        shown = ", ".join(change.get("files") or [])
        more = (change["files_changed"] or 0) - len(change.get("files") or [])
        what = f"files changed: {shown or 'none'}" + (f" (+{more} more)" if more > 0 else "")
    return f"`{change['test']}` {change['went']} ({where}); {what}"


def _range(values: list[Any]) -> str:
    low, high = span(values)
    return f"({low:g}-{high:g})"


def _rows(history: History) -> list[list[str]]:
    def row(s: SessionStats) -> list[str]:
        score = s.view()["score"] or {}
        return [
            s.started_at.strftime("%Y-%m-%d %H:%M"),
            s.id[:12],
            f"{round(s.duration_s / 60)} min",
            str(s.checkpoints),
            f"{_num(score.get('last'))} ({_num(score.get('min'))}-{_num(score.get('avg'))})",
            _num(s.pass_rate, "%"),
            _num(s.coverage, "%"),
            f"{s.reflections}/{s.insights}",
        ]

    return [row(s) for s in reversed(history.sessions[-TABLE_ROWS:])]


HEADER = [
    "started",
    "session",
    "duration",
    "checkpoints",
    "score last (min-avg)",
    "pass rate",
    "coverage",
    "reflections/insights",
]


def _facts(data: dict[str, Any]) -> list[str]:
    score = data.get("score") or {}
    tests = data.get("tests") or {}
    minutes = data.get("minutes") or {}
    return [
        f"Sessions: {data['sessions']} ({data.get('active', 0)} active), "
        f"{minutes.get('total', 0)} min in all, {minutes.get('avg', 0)} min on average",
        f"Checkpoints: {data['checkpoints']}; score min {_num(score.get('min'))}, "
        f"avg {_num(score.get('avg'))}, last {_num(score.get('last'))} ({data['direction']})",
        f"Tests: last pass rate {_num(tests.get('last_pass_rate'), '%')}, average "
        f"{_num(tests.get('avg_pass_rate'), '%')} over {tests.get('sessions_with_results', 0)} "
        f"session(s); coverage {_num(tests.get('last_coverage'), '%')}",
        f"Reflections: {data.get('reflections', 0)}, insights: {data.get('insights', 0)}",
    ]


def pattern_lines(patterns: dict[str, Any] | None) -> list[tuple[str, list[str]]]:
    """The patterns section as (heading, lines): recurring errors, files that keep
    breaking, topics that come back (only the headings with something under them)."""
    if not patterns:
        return []
    errors = []
    for e in patterns.get("recurring_errors") or []:
        fix = e.get("last_fix") or {}
        how = f"; last fixed by: {fix['fixed_by']}" if fix.get("fixed_by") else ""
        files = f" ({', '.join(fix['files'][:3])})" if fix.get("files") else ""
        errors.append(f"`{e['error']}`: {e['sessions']} sessions, fixed {e['fixed']}x{how}{files}")
    files_ = [
        f"`{f['file']}`: {f['sessions']} sessions ({f['in_fixes']} in fixes, "
        f"{f['failing_tests']} failing tests)"
        for f in patterns.get("breaking_files") or []
    ]
    topics = [
        f"{t['topic']} ({t['items']} items, {t['sessions']} sessions)"
        for t in patterns.get("topics") or []
    ]
    return [
        (heading, lines)
        for heading, lines in (
            ("Recurring errors", errors),
            ("Files that keep breaking", files_),
            ("Topics that come back", topics),
        )
        if lines
    ]


def render_markdown(history: History, chart_link: str | None) -> str:
    data = analytics_answer(history, TABLE_ROWS, False)
    title = history.project or "all projects"
    since = f" since {data['since']}" if data.get("since") else ""
    lines = [f"# Quality report: {title}{since}", ""]
    if not history.sessions:
        return "\n".join([*lines, "No session in this period.", ""])
    lines += [f"- {fact}" for fact in _facts(data)]
    spark = history.sparklines()
    lines += ["", "## Trend", ""]
    if chart_link:
        lines += [f"![score and test pass rate over the last sessions]({chart_link})", ""]
    recent = history.recent()
    lines += [
        f"`score     {spark['score']}` {_range([s.last_score for s in recent])}, "
        f"last {len(recent)} sessions",
        f"`pass rate {spark['pass_rate']}` {_range([s.pass_rate for s in recent])}",
    ]
    if history.lost:
        lines += ["", "## Where points are lost (recent checkpoints, average)", ""]
        lines += [f"- {label}: {points:g}" for label, points in list(history.lost.items())[:5]]
    if history.files:
        lines += ["", "## Most-touched files", ""]
        lines += [f"- `{name}`: {n} commit(s)" for name, n in history.files]
    if history.test_changes:
        lines += ["", "## Tests that changed state", ""]
        lines += [f"- {_change(c)}" for c in history.test_changes[:10]]
    sections = pattern_lines(history.patterns)
    if sections:
        lines += ["", "## Patterns across sessions"]
        for heading, found in sections:
            lines += ["", f"### {heading}", ""] + [f"- {line}" for line in found]
    lines += ["", "## Sessions", "", "| " + " | ".join(HEADER) + " |"]
    lines.append("|" + "---|" * len(HEADER))
    lines += ["| " + " | ".join(r) + " |" for r in _rows(history)]
    return "\n".join(lines) + "\n"


def render_html(history: History) -> str:
    data = analytics_answer(history, TABLE_ROWS, False)
    title = escape(f"Quality report: {history.project or 'all projects'}")
    body = [f"<h1>{title}</h1>"]
    if not history.sessions:
        body.append("<p>No session in this period.</p>")
    else:
        body.append("<ul>" + "".join(f"<li>{escape(f)}</li>" for f in _facts(data)) + "</ul>")
        body.append(f'<figure class="chart">{history.chart()}</figure>')
        if history.lost:
            body.append("<h2>Where points are lost</h2><ul>")
            body += [f"<li>{escape(k)}: {v:g}</li>" for k, v in list(history.lost.items())[:5]]
            body.append("</ul>")
        if history.files:
            body.append("<h2>Most-touched files</h2><ul>")
            body += [f"<li><code>{escape(f)}</code>: {n}</li>" for f, n in history.files]
            body.append("</ul>")
        if history.test_changes:
            body.append("<h2>Tests that changed state</h2><ul>")
            body += [f"<li>{escape(_change(c))}</li>" for c in history.test_changes[:10]]
            body.append("</ul>")
        sections = pattern_lines(history.patterns)
        if sections:
            body.append("<h2>Patterns across sessions</h2>")
        for heading, found in sections:
            body.append(f"<h3>{escape(heading)}</h3><ul>")
            body += [f"<li>{escape(line.replace('`', ''))}</li>" for line in found]
            body.append("</ul>")
        body.append("<h2>Sessions</h2><table><tr>")
        body += [f"<th>{escape(h)}</th>" for h in HEADER]
        body.append("</tr>")
        for row in _rows(history):
            body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
        body.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#111827}"
        "table{border-collapse:collapse}td,th{border:1px solid #e5e7eb;padding:.2rem .5rem}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def render_json(history: History) -> str:
    data = analytics_answer(history, len(history.sessions) or 1, True)
    data["losing_points"] = history.lost
    if history.patterns is not None:
        data["patterns"] = history.patterns
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
