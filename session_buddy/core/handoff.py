"""Handoff documents: what the next session needs to pick up the work.

A handoff is Markdown written under ``<project>/.claude/handoff/`` (configurable, but always
inside the project or the data directory). Standard library only: the SessionStart hook reads
the latest handoff with it and must start fast.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from session_buddy.core.failures import one_line

DEFAULT_HANDOFF_DIR = ".claude/handoff"
MARKER = "<!-- session-buddy:handoff"
_NAME = re.compile(r"^\d{8}-\d{6}-[\w-]+\.md$")

# Lines in messages/reflections that say what they are ("Decision: use DuckDB", "TODO: ...").
_PATTERNS: dict[str, re.Pattern[str]] = {
    "decisions": re.compile(r"^(?:decision|decided|we decided|chose)\b[:\s-]*(.+)$", re.I),
    "todo": re.compile(r"^todo\b[:\s-]*(.+)$", re.I),
    "open_problems": re.compile(
        r"^(?:fixme|problem|open problem|issue|blocked|blocker|bug)\b[:\s-]*(.+)$", re.I
    ),
    "next_steps": re.compile(r"^(?:next(?: steps?)?|then)\s*:\s*(.+)$", re.I),
}
#: a heading whose list follows on the next lines ("Next steps:", "## Decisions")
_HEADINGS: dict[str, re.Pattern[str]] = {
    "decisions": re.compile(r"^(?:decisions?|decided)\s*:?$", re.I),
    "todo": re.compile(r"^(?:todos?)\s*:?$", re.I),
    "open_problems": re.compile(r"^(?:open problems?|problems|blockers?|known issues)\s*:?$", re.I),
    "next_steps": re.compile(r"^(?:next(?: steps?)?|what'?s next|remaining)\s*:?$", re.I),
}
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(?:\[[ x]\]\s*)?(.+)$")
_MARKUP = re.compile(r"^\s*(?:#+\s*|>\s*)?(?:[-*\u2022]\s+)?")
_TAGS = {
    "decisions": {"decision", "decisions", "adr"},
    "open_problems": {"problem", "todo", "blocker", "open", "open-problem", "open_problem"},
    "next_steps": {"next", "next-step", "next_steps", "plan"},
}
#: at most this many items in a section of the handoff (the newest evidence wins)
SECTION_ITEMS = 12
#: project-health advice shown in its own section
HEALTH_ITEMS = 3


class HandoffLocationError(ValueError):
    """The configured handoff folder is outside the project and the data directory."""


@dataclass
class HandoffContent:
    project: str
    session_id: str
    session_name: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    branch: str | None = None
    head: str | None = None
    start_head: str | None = None
    goal: str | None = None
    summary: str | None = None
    done: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # "path (how)"
    tests: list[str] = field(default_factory=list)  # one line per run
    decisions: list[str] = field(default_factory=list)
    insights: list[str] = field(default_factory=list)
    open_problems: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    health: list[str] = field(default_factory=list)  # the project's advice (lint config...)
    quality: dict[str, Any] | None = None  # QualityScore.to_dict()
    delta: int | None = None
    reflections: list[dict[str, Any]] = field(default_factory=list)  # id, content, tags
    counts: dict[str, int] = field(default_factory=dict)
    #: the project's quality trend (AnalyticsService.handoff_trend): chart file, sparklines
    trend: dict[str, Any] | None = None


def _within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
    except ValueError:
        return False
    return True


#: folders that are the system's, never a project: these and everything below them
SYSTEM_TREES = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/run",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/include",
    "/usr/share",
    "/System",
    "/private/etc",
)
#: folders that hold projects but are none themselves
SYSTEM_FOLDERS = (
    "/",
    "/usr",
    "/usr/local",
    "/var",
    "/opt",
    "/home",
    "/Users",
    "/root",
    "/tmp",
    "/mnt",
    "/media",
    "/srv",
    "/private",
    "/private/var",
    "/private/tmp",
    "/Library",
    "/Applications",
    "/Volumes",
)


def _home() -> Path | None:
    try:
        home = os.environ.get("HOME") or str(Path.home())
        return Path(home).expanduser().resolve()
    except (OSError, RuntimeError):
        return None


def system_folder(path: Path | str) -> str | None:
    """Why ``path`` is no place for a project's files (a system folder, the home folder
    itself), or None. Symlinks are resolved first."""
    try:
        folder = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return "it cannot be resolved"
    if folder == _home():
        return "it is the home folder itself, not a project"
    text = folder.as_posix()
    if text in SYSTEM_FOLDERS:
        return "it is a system folder, not a project"
    for tree in SYSTEM_TREES:
        if text == tree or text.startswith(tree + "/"):
            return f"it is inside the system folder {tree}"
    return None


def is_project_folder(root: Path) -> bool:
    """A folder session-buddy may write into: a git work tree's root, or a folder that has
    ``.claude/`` already; never a system folder or the home folder."""
    try:
        marked = (root / ".git").exists() or (root / ".claude").is_dir()
    except OSError:
        return False
    return marked and system_folder(root) is None


def data_handoff_dir(data_dir: Path | str, project_name: str | None) -> Path:
    """The data directory's handoff folder of a project (folders that are no project)."""
    safe = re.sub(r"[^\w.-]+", "_", project_name or "no-project").strip("._") or "no-project"
    return Path(data_dir).expanduser().resolve() / "handoffs" / safe


def resolve_handoff_dir(
    project_root: Path | str | None,
    data_dir: Path | str,
    configured: str | Path | None = None,
    project_name: str | None = None,
) -> Path:
    """Where handoffs of a project go: ``configured`` (relative to the project root, or
    absolute; default ``.claude/handoff``) in a project folder (:func:`is_project_folder`),
    else the data directory's folder of the project. The result must lie inside the project
    or the data directory (symlinks are resolved first), otherwise
    :class:`HandoffLocationError`."""
    data = Path(data_dir).expanduser().resolve()
    if project_root is None:
        return data_handoff_dir(data, project_name)
    root = Path(project_root).expanduser().resolve()
    if not is_project_folder(root):
        return data_handoff_dir(data, project_name or root.name)
    chosen = Path(configured).expanduser() if configured else Path(DEFAULT_HANDOFF_DIR)
    target = (chosen if chosen.is_absolute() else root / chosen).resolve()
    if not (_within(target, root) or _within(target, data)):
        raise HandoffLocationError(
            f"Handoff folder {target} is outside the project ({root}) and the data directory "
            f"({data}); choose a folder inside one of them"
        )
    return target


def _plain(line: str) -> str:
    """A line without its Markdown (heading marks, a bullet, bold or italic around words)."""
    text = _MARKUP.sub("", line).replace("**", "").replace("__", "")
    return text.strip().strip("*_").strip()


def extract_notes(texts: list[str]) -> dict[str, list[str]]:
    """What free text states as decisions, open problems, TODOs and next steps: lines such as
    ``Next: ...`` and ``**Decision:** ...``, and the list under a heading such as
    ``Next steps:``. Each text's items in order, each item once."""
    found: dict[str, list[str]] = {key: [] for key in _PATTERNS}
    for text in texts:
        for key, items in notes_of(text).items():
            found[key] += [i for i in items if i not in found[key]]
    return found


def notes_of(text: str) -> dict[str, list[str]]:
    """:func:`extract_notes` of one text."""
    found: dict[str, list[str]] = {key: [] for key in _PATTERNS}
    under: str | None = None  # the heading whose list is being read
    for line in text.splitlines():
        plain = _plain(line)
        if not plain:
            continue
        heading = next((k for k, p in _HEADINGS.items() if p.match(plain)), None)
        if heading:
            under = heading
            continue
        item = _LIST_ITEM.match(line)
        if under and item:
            _add(found[under], _plain(item.group(1)))
            continue
        under = None
        for key, pattern in _PATTERNS.items():
            match = pattern.match(plain)
            if match and match.group(1).strip():
                _add(found[key], match.group(1))
                break
    return found


def _add(items: list[str], text: str) -> None:
    item = text.strip().strip("*_").strip()[:300]
    if item and item not in items:
        items.append(item)


def classify_reflection(content: str, tags: list[str]) -> str | None:
    """Which handoff section a reflection belongs to, if any: by its tags, else by what its
    first line says (``Decision: ...``)."""
    lowered = {t.lower() for t in tags}
    for key, names in _TAGS.items():
        if lowered & names:
            return key
    first = _plain(content.strip().splitlines()[0]) if content.strip() else ""
    for key, pattern in _PATTERNS.items():
        if pattern.match(first):
            return "next_steps" if key == "todo" else key
    return None


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "?"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "?"
    minutes = int((end - start).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _bullets(items: list[str], empty: str) -> list[str]:
    if not items:
        return [f"- {empty}"]
    return [f"- {_one_line(item, 400)}" for item in items]


def _one_line(text: str, limit: int = 200) -> str:
    """On one line, cut at a word (a long word alone: within it) to at most ``limit``."""
    return one_line(text, limit)


def _cell(text: Any) -> str:
    return _one_line(str(text), 160).replace("|", "\\|")


def _trend_lines(trend: dict[str, Any] | None) -> list[str]:
    if not trend:
        return []
    spark = trend.get("sparkline") or {}
    lines = ["", "## Quality trend", ""]
    if trend.get("chart"):
        lines += [f"![score and test pass rate over the last sessions]({trend['chart']})", ""]
    lines.append(
        f"`score     {spark.get('score', '')}` over the last {trend.get('sessions', '?')} "
        f"session(s): {trend.get('direction', '?')}"
    )
    if spark.get("pass_rate"):
        lines.append(f"`pass rate {spark['pass_rate']}`")
    return lines


def _header(content: HandoffContent) -> list[str]:
    q = content.quality or {}
    score = q.get("score")
    delta = ""
    if content.delta is not None:
        delta = f" ({content.delta:+d} since the previous checkpoint)"
    lines = [
        f"# Session handoff: {content.project}",
        "",
        f"- Session: `{content.session_id}`"
        + (f" ({content.session_name})" if content.session_name else ""),
        f"- Started: {_fmt_time(content.started_at)}; ended: {_fmt_time(content.ended_at)}"
        f" ({_duration(content.started_at, content.ended_at)})",
    ]
    if content.branch or content.head:
        since = ""
        if content.start_head and content.start_head != content.head:
            since = f" (started at {content.start_head[:10]})"
        lines.append(
            f"- Branch: {content.branch or '(detached)'}"
            + (f" @ {content.head[:10]}" if content.head else "")
            + since
        )
    lines.append(f"- Quality: {score if score is not None else '?'}/100{delta}")
    if content.counts:
        lines.append("- Stored: " + ", ".join(f"{v} {k}" for k, v in content.counts.items()))
    return lines


def _health_lines(content: HandoffContent) -> list[str]:
    """The project's health (advice about the project, not about the session's work)."""
    q = content.quality or {}
    lines = ["", "## Project health", ""]
    lines += [f"- {_one_line(h, 300)}" for h in content.health[:HEALTH_ITEMS]] or ["- No advice."]
    breakdown = q.get("breakdown") or []
    lines += ["", "### Quality breakdown", ""]
    if breakdown:
        lines += ["| Component | Points | Evidence | Recommendation |", "|---|---|---|---|"]
        for c in breakdown:
            pts = "unknown" if c.get("points") is None else f"{c['points']:g}/{c['max_points']}"
            lines.append(
                f"| {_cell(c.get('label'))} | {pts} | {_cell(c.get('evidence'))} | {_cell(c.get('recommendation'))} |"
            )
        if q.get("unknown"):
            lines += ["", f"Unknown (left out of the score): {', '.join(q['unknown'])}."]
    else:
        lines.append("_No quality score._")
    return lines


def render_handoff(content: HandoffContent) -> str:
    """The handoff as Markdown: the session's work first (goal, summary, what was done, files,
    tests, decisions, insights, open problems, next steps), the project's health last."""
    lines = _header(content)
    lines += [
        "",
        "## Goal",
        "",
        _one_line(content.goal, 600) if content.goal else "_Not recorded._",
    ]
    lines += [
        "",
        "## Summary",
        "",
        content.summary.strip() if content.summary else "_No summary was recorded._",
    ]
    lines += ["", "## What was done", "", *_bullets(content.done, "Nothing recorded.")]
    lines += ["", "## Files changed", "", *_bullets(content.files, "None.")]
    lines += ["", "## Tests", "", *_bullets(content.tests, "No test run recorded.")]
    lines += ["", "## Decisions", "", *_bullets(content.decisions, "None recorded.")]
    lines += ["", "## Insights", "", *_bullets(content.insights, "None recorded.")]
    lines += ["", "## Open problems", "", *_bullets(content.open_problems, "None recorded.")]
    lines += ["", "## Next steps", "", *_bullets(content.next_steps, "None recorded.")]
    lines += ["", "## Stored reflections", ""]
    if content.reflections:
        for r in content.reflections:
            tags = f" [{', '.join(r.get('tags') or [])}]" if r.get("tags") else ""
            lines.append(f"- `{r['id']}`{tags}: {_one_line(str(r.get('content', '')), 160)}")
    else:
        lines.append("- None stored in this session.")
    lines += _trend_lines(content.trend)
    lines += _health_lines(content)
    lines += ["", f"{MARKER} session={content.session_id} project={content.project} -->", ""]
    return "\n".join(lines)


@dataclass
class GitFacts:
    """What git says about the session's project at its end."""

    branch: str | None = None
    head: str | None = None
    start_head: str | None = None  # HEAD when the session began
    commits: list[str] = field(default_factory=list)  # "<sha> <subject>", made in the session
    tracked_changes: list[str] = field(default_factory=list)  # uncommitted tracked files
    untracked: int = 0
    operation: str | None = None  # a merge or rebase in progress
    #: files changed since the session began: path (relative to the root) -> committed |
    #: uncommitted | new (untracked, created in the session)
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class HandoffMessage:
    role: str | None
    content: str


@dataclass
class HandoffReflection:
    id: str
    content: str
    tags: list[str] = field(default_factory=list)
    kind: str = "reflection"  # reflection | insight (a captured ★ Insight block)


@dataclass
class TranscriptFacts:
    """What the session's Claude Code transcript says (see ``transcripts.transcript_work``)."""

    goal: str | None = None
    texts: list[str] = field(default_factory=list)  # the assistant's texts, oldest first
    edited: list[str] = field(default_factory=list)  # files Edit/Write/... changed
    last_error: str | None = None


@dataclass
class HandoffInputs:
    """Everything a handoff is composed from (gathered by the session service)."""

    project: str
    session_id: str
    started_at: datetime
    ended_at: datetime
    session_name: str | None = None
    #: summary, goal, done, decisions, open_problems, next_steps (``end``'s arguments and
    #: ``update_session`` metadata): they come first, the evidence is merged after them
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[HandoffMessage] = field(default_factory=list)  # add_message, oldest first
    reflections: list[HandoffReflection] = field(default_factory=list)
    checkpoints: int = 0
    git: GitFacts = field(default_factory=GitFacts)
    transcript: TranscriptFacts = field(default_factory=TranscriptFacts)
    tests: list[dict[str, Any]] = field(default_factory=list)  # result_view of runs, oldest first
    quality: dict[str, Any] = field(default_factory=dict)  # the final QualityScore.to_dict()
    delta: int | None = None
    trend: dict[str, Any] | None = None  # AnalyticsService.handoff_trend: chart, sparklines


_SECTIONS = ("done", "decisions", "insights", "open_problems", "next_steps")


def _given(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return []


def _merge(into: list[str], items: list[str]) -> None:
    for item in items:
        if item not in into:
            into.append(item)


def file_lines(git: GitFacts, edited: list[str], limit: int = 30) -> list[str]:
    """``path (how)`` for each file changed: git's view first, then files the transcript's
    Edit/Write calls changed that git does not show (outside the repository, or no git)."""
    seen = dict(git.files)
    for path in edited:
        seen.setdefault(path, "edited")
    lines = [f"`{path}` ({how})" for path, how in seen.items()]
    if len(lines) > limit:
        lines = [*lines[:limit], f"… and {len(lines) - limit} more"]
    return lines


def run_line(run: dict[str, Any]) -> str:
    """One stored test run in a line: what ran, its result, the counts, what failed."""
    counts = [
        f"{run[k]} {k}"
        for k in ("passed", "failed", "skipped")
        if isinstance(run.get(k), int) and (run[k] or k == "passed")
    ]
    what = " ".join(str(x) for x in (run.get("runner"), run.get("source")) if x)
    line = f"{what or 'tests'}: {run.get('result') or '?'}"
    if counts:
        line += " (" + ", ".join(counts) + ")"
    failing = run.get("failing") or []
    if failing:
        line += "; failing: " + ", ".join(str(f) for f in failing[:5])
    if run.get("coverage") is not None:
        line += f"; coverage {run['coverage']}%"
    return line


def _problems_of(inputs: HandoffInputs) -> list[str]:
    """Open problems the evidence shows: failing tests, a failed last command, git state."""
    problems: list[str] = []
    runs = inputs.tests
    if runs and runs[-1].get("result") in ("failed", "error"):
        problems.append(f"Tests failing: {run_line(runs[-1])}")
    elif not runs:
        for c in inputs.quality.get("breakdown") or []:
            if c.get("key") == "test_result" and c.get("status") == "missing":
                problems.append(f"Tests failing: {c.get('evidence')}")
    if inputs.transcript.last_error:
        problems.append(f"The last command failed: {inputs.transcript.last_error}")
    git = inputs.git
    if git.tracked_changes:
        changed = git.tracked_changes
        shown = ", ".join(changed[:10]) + (
            f" (+{len(changed) - 10} more)" if len(changed) > 10 else ""
        )
        problems.append(f"Uncommitted changes in {len(changed)} tracked file(s): {shown}")
    if git.operation:
        problems.append(f"A {git.operation} is in progress")
    return problems


def session_goal(inputs: HandoffInputs) -> str | None:
    """The goal: given (``goal`` metadata), else the first user message, else the prompt the
    transcript's work began with."""
    given = _given(inputs.metadata.get("goal"))
    if given:
        return given[0]
    first = next((m.content.strip() for m in inputs.messages if m.role == "user"), None)
    return first or inputs.transcript.goal


def handoff_sections(inputs: HandoffInputs) -> dict[str, list[str]]:
    """What was done, decisions, insights, open problems and next steps: what the caller gave
    (``end``'s arguments, the session's metadata) first, then the evidence (the assistant's
    messages, reflections and insights, git, the tests, the transcript). Never the project's
    health advice: that is :func:`compose_handoff`'s own section."""
    meta = inputs.metadata
    sections: dict[str, list[str]] = {k: _given(meta.get(k)) for k in _SECTIONS}
    said = [m.content for m in inputs.messages if m.role in ("assistant", "system")]
    said += inputs.transcript.texts
    per_text = [notes_of(text) for text in said]
    for key in ("decisions", "open_problems"):
        _merge(sections[key], [i for notes in per_text for i in notes[key]])
    # the agent's latest statement of its next steps (earlier ones may be done), and TODOs
    stated = next((n["next_steps"] for n in reversed(per_text) if n["next_steps"]), [])
    _merge(sections["next_steps"], stated + [i for notes in per_text for i in notes["todo"]])
    for r in inputs.reflections:
        where = classify_reflection(r.content, r.tags) or "insights"
        text = r.content.strip()
        _merge(sections[where], [text if where != "insights" else _one_line(text, 300)])
    goal = session_goal(inputs)
    asked = [
        m.content.strip().splitlines()[0][:200]
        for m in inputs.messages
        if m.role == "user" and m.content.strip() and m.content.strip() != goal
    ]
    git = inputs.git
    done = [f"Commit {line}" for line in git.commits]
    changed = len(set(git.files) | set(inputs.transcript.edited))
    if changed:
        done.append(f"Changed {changed} file(s) (see Files changed)")
    if inputs.tests:
        done.append(f"Ran tests {len(inputs.tests)} time(s); last: {run_line(inputs.tests[-1])}")
    sections["done"] = [f"Also asked: {a}" for a in asked[:5]] + sections["done"] + done
    _merge(sections["open_problems"], _problems_of(inputs))
    return {
        k: v[-SECTION_ITEMS:] if k != "done" else v[:SECTION_ITEMS] for k, v in sections.items()
    }


def _auto_summary(inputs: HandoffInputs) -> str:
    """What the evidence says was done, in a line (when the agent gave no summary)."""
    git = inputs.git
    files = list(dict.fromkeys([*git.files, *inputs.transcript.edited]))
    parts = []
    if git.commits:
        parts.append(f"{len(git.commits)} commit(s)")
    if files:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        parts.append(f"{len(files)} file(s) changed ({shown})")
    if inputs.tests:
        last = inputs.tests[-1]
        failed = f", {last['failed']} failing" if last.get("failed") else ""
        parts.append(f"tests {last.get('result') or '?'}{failed}")
    if not parts:
        return (
            f"No file changed; {len(inputs.messages)} message(s), {len(inputs.reflections)} "
            f"reflection(s)/insight(s) and {inputs.checkpoints} checkpoint(s) in this session."
        )
    return "; ".join(parts) + "."


def compose_handoff(inputs: HandoffInputs) -> str:
    """The handoff document of a session (Markdown); a pure function of its inputs."""
    sections = handoff_sections(inputs)
    given = _given(inputs.metadata.get("summary"))
    q = inputs.quality
    content = HandoffContent(
        project=inputs.project,
        session_id=inputs.session_id,
        session_name=inputs.session_name,
        started_at=inputs.started_at,
        ended_at=inputs.ended_at,
        branch=inputs.git.branch,
        head=inputs.git.head,
        start_head=inputs.git.start_head,
        goal=session_goal(inputs),
        summary=given[0] if given else _auto_summary(inputs),
        done=sections["done"],
        files=file_lines(inputs.git, inputs.transcript.edited),
        tests=[run_line(r) for r in inputs.tests[-5:]],
        decisions=sections["decisions"],
        insights=sections["insights"],
        open_problems=sections["open_problems"],
        next_steps=sections["next_steps"],
        health=list(q.get("recommendations") or []),
        quality={
            "score": q.get("score"),
            "breakdown": q.get("breakdown"),
            "unknown": q.get("unknown"),
        },
        delta=inputs.delta,
        trend=inputs.trend,
        reflections=[
            {"id": r.id, "content": r.content, "tags": r.tags} for r in inputs.reflections
        ],
        counts={"messages": len(inputs.messages), "reflections": len(inputs.reflections)},
    )
    return render_handoff(content)


def handoff_filename(session_id: str, at: datetime) -> str:
    safe = re.sub(r"[^\w-]+", "", session_id)[:12] or "session"
    return f"{at.astimezone(UTC).strftime('%Y%m%d-%H%M%S')}-{safe}.md"


def write_handoff(
    folder: Path,
    session_id: str,
    markdown: str,
    at: datetime | None = None,
    *,
    chart: str | None = None,
) -> Path:
    """Write atomically (temp file + rename); returns the path. ``chart``: an SVG written
    beside it under the same name (``.svg``), first, so the handoff never links a missing file."""
    at = at or datetime.now(UTC)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / handoff_filename(session_id, at)
    if chart is not None:
        write_atomically(target.with_suffix(".svg"), chart)
    write_atomically(target, markdown)
    return target


def write_atomically(target: Path, text: str) -> None:
    """Write a text file through a temp file in its folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=".handoff-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def latest_handoff(folder: Path | str) -> Path | None:
    """The newest handoff file in ``folder`` (names start with their UTC time)."""
    folder = Path(folder)
    try:
        names = sorted(p.name for p in folder.iterdir() if _NAME.match(p.name) and p.is_file())
    except OSError:
        return None
    return folder / names[-1] if names else None


_BRIEF_SECTIONS = {
    "goal": "Goal",
    "summary": "Done",
    "what was done": "Done",
    "open problems": "Open",
    "next steps": "Next",
}
#: how many items of a section the short form keeps, and its characters per line
_BRIEF_ITEMS = {"Goal": 1, "Done": 2, "Open": 2, "Next": 3}
_BRIEF_CHARS = {"Goal": 150, "Done": 150, "Open": 120, "Next": 180}
_EMPTY = ("_", "- None recorded", "- Nothing recorded", "- None.", "- No ")


def _handoff_parts(markdown: str) -> tuple[str, str, dict[str, list[str]]]:
    """The title, the session's time line and the items of each section the short form uses."""
    title, when = "", ""
    parts: dict[str, list[str]] = {}
    section = ""
    for line in markdown.splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            section = line[3:].strip().lower()
        elif section == "" and line.startswith("- Started:"):
            when = line[2:].strip()
        elif (label := _BRIEF_SECTIONS.get(section)) and line.strip():
            if line.startswith(_EMPTY) or line.startswith(MARKER):
                continue
            if label == "Done" and section == "what was done" and "Done" in parts:
                continue  # the summary says it; the list is the fallback
            parts.setdefault(label, []).append(line[2:] if line.startswith("- ") else line)
    return title, when, parts


def summarize_handoff(markdown: str, max_lines: int = 6, max_chars: int = 800) -> str:
    """The handoff in a few hundred characters: the session, its goal, what was done (the
    summary), open problems and next steps (the full document stays a resource)."""
    title, when, parts = _handoff_parts(markdown)
    lines = []
    if title:
        project = title.split(":", 1)[1].strip() if ":" in title else title
        ended = when.split("ended:", 1)[1].strip() if "ended:" in when else ""
        head = f"Previous session of {project}" + (f" ended {ended}" if ended else "")
        lines.append(_one_line(head, 100))
    for label in ("Goal", "Done", "Open", "Next"):
        items = [i.strip() for i in parts.get(label, []) if i.strip()]
        if items:
            shown = items[: _BRIEF_ITEMS[label]]
            each = _BRIEF_CHARS[label] // len(shown)
            text = "; ".join(_one_line(i, each) for i in shown)
            if len(items) > len(shown):
                text += f" (+{len(items) - len(shown)} more)"
            lines.append(f"{label}: {text}")
    text = "\n".join(lines[:max_lines])
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def project_root_of(path: Path | str) -> Path:
    """The git root above ``path`` (found by looking for ``.git``, no subprocess), or ``path``."""
    start = Path(path).expanduser().resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def latest_handoff_summary(
    cwd: str,
    data_dir: Path | str,
    configured: str | Path | None = None,
    project_name: str | None = None,
    *,
    max_lines: int = 6,
    max_chars: int = 800,
) -> tuple[Path, str] | None:
    """The newest handoff of the project around ``cwd`` and its summary, or None (no handoff,
    or a configured folder outside the project and the data dir)."""
    root = project_root_of(cwd)
    try:
        folder = resolve_handoff_dir(root, data_dir, configured, project_name)
    except ValueError:
        return None
    latest = latest_handoff(folder)
    if latest is None:
        return None
    text = latest.read_text(encoding="utf-8", errors="replace")[:200_000]
    return latest, summarize_handoff(text, max_lines=max_lines, max_chars=max_chars)
