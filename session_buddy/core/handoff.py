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

DEFAULT_HANDOFF_DIR = ".claude/handoff"
MARKER = "<!-- session-buddy:handoff"
_NAME = re.compile(r"^\d{8}-\d{6}-[\w-]+\.md$")

# Lines in messages/reflections that say what they are ("Decision: use DuckDB", "TODO: ...").
_PATTERNS: dict[str, re.Pattern[str]] = {
    "decisions": re.compile(
        r"^\s*(?:[-*]\s*)?(?:decision|decided|we decided|chose)\b[:\s-]*(.+)$", re.I
    ),
    "open_problems": re.compile(
        r"^\s*(?:[-*]\s*)?(?:todo|fixme|problem|open problem|issue|blocked|blocker|bug)\b[:\s-]*(.+)$",
        re.I,
    ),
    "next_steps": re.compile(r"^\s*(?:[-*]\s*)?(?:next(?: step)?s?|then)\s*:\s*(.+)$", re.I),
}
_TAGS = {
    "decisions": {"decision", "decisions", "adr"},
    "open_problems": {"problem", "todo", "blocker", "open", "open-problem", "open_problem"},
    "next_steps": {"next", "next-step", "next_steps", "plan"},
}


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
    summary: str | None = None
    done: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    open_problems: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
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


def resolve_handoff_dir(
    project_root: Path | str | None,
    data_dir: Path | str,
    configured: str | Path | None = None,
    project_name: str | None = None,
) -> Path:
    """Where handoffs of a project go. ``configured`` is relative to the project root (or
    absolute); the result must lie inside the project or the data directory (symlinks are
    resolved first), otherwise :class:`HandoffLocationError`."""
    data = Path(data_dir).expanduser().resolve()
    if project_root is None:
        safe = re.sub(r"[^\w.-]+", "_", project_name or "no-project").strip("._") or "no-project"
        return data / "handoffs" / safe
    root = Path(project_root).expanduser().resolve()
    chosen = Path(configured).expanduser() if configured else Path(DEFAULT_HANDOFF_DIR)
    target = (chosen if chosen.is_absolute() else root / chosen).resolve()
    if not (_within(target, root) or _within(target, data)):
        raise HandoffLocationError(
            f"Handoff folder {target} is outside the project ({root}) and the data directory "
            f"({data}); choose a folder inside one of them"
        )
    return target


def extract_notes(texts: list[str]) -> dict[str, list[str]]:
    """Lines of free text that state a decision, an open problem or a next step."""
    found: dict[str, list[str]] = {key: [] for key in _PATTERNS}
    for text in texts:
        for line in text.splitlines():
            for key, pattern in _PATTERNS.items():
                match = pattern.match(line)
                if match and match.group(1).strip():
                    item = match.group(1).strip()[:300]
                    if item not in found[key]:
                        found[key].append(item)
                    break
    return found


def classify_reflection(content: str, tags: list[str]) -> str | None:
    """Which handoff section a tagged reflection belongs to, if any."""
    lowered = {t.lower() for t in tags}
    for key, names in _TAGS.items():
        if lowered & names:
            return key
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
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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


def render_handoff(content: HandoffContent) -> str:
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
        lines.append(
            f"- Branch: {content.branch or '(detached)'}"
            + (f" @ {content.head[:10]}" if content.head else "")
        )
    lines.append(f"- Quality: {score if score is not None else '?'}/100{delta}")
    if content.counts:
        lines.append("- Stored: " + ", ".join(f"{v} {k}" for k, v in content.counts.items()))
    lines += [
        "",
        "## Summary",
        "",
        content.summary.strip() if content.summary else "_No summary was recorded._",
    ]
    lines += ["", "## What was done", "", *_bullets(content.done, "Nothing recorded.")]
    lines += ["", "## Decisions", "", *_bullets(content.decisions, "None recorded.")]
    lines += ["", "## Open problems", "", *_bullets(content.open_problems, "None recorded.")]
    lines += ["", "## Next steps", "", *_bullets(content.next_steps, "None recorded.")]
    lines += _trend_lines(content.trend)
    lines += ["", "## Quality breakdown", ""]
    breakdown = q.get("breakdown") or []
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
    lines += ["", "## Stored reflections", ""]
    if content.reflections:
        for r in content.reflections:
            tags = f" [{', '.join(r.get('tags') or [])}]" if r.get("tags") else ""
            lines.append(f"- `{r['id']}`{tags}: {_one_line(str(r.get('content', '')), 160)}")
    else:
        lines.append("- None stored in this session.")
    lines += ["", f"{MARKER} session={content.session_id} project={content.project} -->", ""]
    return "\n".join(lines)


@dataclass
class GitFacts:
    """What git says about the session's project at its end."""

    branch: str | None = None
    head: str | None = None
    commits: list[str] = field(default_factory=list)  # "<sha> <subject>", made in the session
    tracked_changes: list[str] = field(default_factory=list)  # uncommitted tracked files
    untracked: int = 0
    operation: str | None = None  # a merge or rebase in progress


@dataclass
class HandoffMessage:
    role: str | None
    content: str


@dataclass
class HandoffReflection:
    id: str
    content: str
    tags: list[str] = field(default_factory=list)


@dataclass
class HandoffInputs:
    """Everything a handoff is composed from (gathered by the session service)."""

    project: str
    session_id: str
    started_at: datetime
    ended_at: datetime
    session_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # summary, done, decisions, ...
    messages: list[HandoffMessage] = field(default_factory=list)
    reflections: list[HandoffReflection] = field(default_factory=list)
    checkpoints: int = 0
    git: GitFacts = field(default_factory=GitFacts)
    quality: dict[str, Any] = field(default_factory=dict)  # the final QualityScore.to_dict()
    delta: int | None = None
    trend: dict[str, Any] | None = None  # AnalyticsService.handoff_trend: chart, sparklines


_SECTIONS = ("done", "decisions", "open_problems", "next_steps")


def _git_lines(git: GitFacts) -> tuple[list[str], list[str]]:
    """(done, open problems) lines from the git facts."""
    done = [f"Commit {line}" for line in git.commits]
    open_problems: list[str] = []
    changed = git.tracked_changes
    if changed:
        shown = ", ".join(changed[:10]) + (
            f" (+{len(changed) - 10} more)" if len(changed) > 10 else ""
        )
        open_problems.append(f"Uncommitted changes in {len(changed)} tracked file(s): {shown}")
    if git.untracked:
        open_problems.append(f"{git.untracked} untracked file(s) not in git")
    if git.operation:
        open_problems.append(f"A {git.operation} is in progress")
    return done, open_problems


def handoff_sections(inputs: HandoffInputs) -> dict[str, list[str]]:
    """What was done, decisions, open problems and next steps, from the session's metadata,
    its messages, its reflections, git and the final quality score."""
    meta = inputs.metadata
    sections: dict[str, list[str]] = {k: [] for k in _SECTIONS}
    for key in sections:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            sections[key].append(value.strip())
        elif isinstance(value, list):
            sections[key] += [str(v) for v in value if str(v).strip()]
    notes = extract_notes([m.content for m in inputs.messages if m.role in ("assistant", "user")])
    for key in ("decisions", "open_problems", "next_steps"):
        sections[key] += [n for n in notes[key] if n not in sections[key]]
    for r in inputs.reflections:
        where = classify_reflection(r.content, r.tags)
        if where:
            sections[where].append(r.content)
        else:
            sections["done"].append(f"Learned: {r.content.strip().splitlines()[0][:300]}")
    asked = [
        m.content.strip().splitlines()[0][:200]
        for m in inputs.messages
        if m.role == "user" and m.content.strip()
    ]
    sections["done"] = [f"Asked: {a}" for a in asked[:5]] + sections["done"]
    git_done, git_open = _git_lines(inputs.git)
    sections["done"] += git_done
    sections["open_problems"] += git_open
    for c in inputs.quality.get("breakdown") or []:
        if c.get("key") == "test_result" and c.get("status") == "missing":
            sections["open_problems"].append(f"Tests failing: {c.get('evidence')}")
    if not sections["next_steps"]:
        sections["next_steps"] = list(inputs.quality.get("recommendations") or [])
    return sections


def compose_handoff(inputs: HandoffInputs) -> str:
    """The handoff document of a session (Markdown); a pure function of its inputs."""
    sections = handoff_sections(inputs)
    summary = inputs.metadata.get("summary")
    if not isinstance(summary, str) or not summary:
        summary = (
            f"{len(inputs.messages)} message(s), {len(inputs.reflections)} "
            f"reflection(s)/insight(s) and {inputs.checkpoints} checkpoint(s) in this session."
        )
    q = inputs.quality
    content = HandoffContent(
        project=inputs.project,
        session_id=inputs.session_id,
        session_name=inputs.session_name,
        started_at=inputs.started_at,
        ended_at=inputs.ended_at,
        branch=inputs.git.branch,
        head=inputs.git.head,
        summary=summary,
        done=sections["done"],
        decisions=sections["decisions"],
        open_problems=sections["open_problems"],
        next_steps=sections["next_steps"],
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
    folder.mkdir(parents=True, exist_ok=True)
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


def summarize_handoff(markdown: str, max_lines: int = 14, max_chars: int = 1500) -> str:
    """A short extract: the header facts, the summary, open problems and next steps."""
    keep: list[str] = []
    section = ""
    for line in markdown.splitlines():
        if line.startswith("# "):
            keep.append(line[2:].strip())
            continue
        if line.startswith("## "):
            section = line[3:].strip().lower()
            continue
        if not line.strip() or line.startswith(MARKER):
            continue
        if (
            section == ""
            and line.startswith("- ")
            and ("Quality" in line or "Branch" in line or "Started" in line)
        ) or section == "summary":
            keep.append(line)
        elif (
            section in ("open problems", "next steps")
            and line.startswith("- ")
            and "None recorded" not in line
        ):
            keep.append(f"- {section.capitalize()}: {line[2:]}")
    text = "\n".join(keep[:max_lines])
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
    max_lines: int = 14,
    max_chars: int = 1500,
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
