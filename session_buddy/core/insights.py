"""Insights: the ``★ Insight`` blocks of Claude Code's explanatory output style.

The explanatory style writes, in assistant prose::

    `★ Insight ─────────────────────────────────────`
    - two or three points about the code just written
    `─────────────────────────────────────────────────`

:class:`InsightExtractor` finds such blocks in a stream of assistant text segments (an opening
line with ``★ Insight`` and a run of ``─``, a closing line of ``─`` only, backticks optional).
Marker lines inside fenced code blocks do not count, and only assistant prose is fed to it
(never tool results or user text), so quoted markers are not mistaken for insights. A block
may span several text segments (Claude Code writes each content block on its own transcript
line): the open block is carried over, and can be saved and restored with the import state.

:class:`InsightRecorder` stores each block once as an item of kind ``insight`` (session,
project, topic tags, and a confidence in its metadata), deduplicated by the SHA-256 of the
normalised text, persisted in the ``insight_hashes`` records collection: no duplicates across
restarts, re-imports, sessions or projects.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from session_buddy.adapters.storage._base import (
    Access,
    ItemFilter,
    MemoryItem,
    Record,
    StorageBase,
)
from session_buddy.core.events import INSIGHT_CAPTURED, EventBus
from session_buddy.core.memory import ItemInput, MemoryService

HASH_COLLECTION = "insight_hashes"
KIND = "insight"

OPEN_RE = re.compile(r"^\s*`?\s*★\s*Insight\b[^`\n]*?─{3,}[─\s]*`?\s*$")
CLOSE_RE = re.compile(r"^\s*`?\s*─{5,}\s*`?\s*$")
FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
#: A block longer than this is not an insight (an opening marker that was never closed).
MAX_LINES = 80
MAX_CHARS = 8000
MAX_TAGS = 5

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[.\-/][A-Za-z0-9_]+)*")
_BACKTICKED = re.compile(r"`([^`\n]{2,60})`")
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.\-/:]*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.M)
STOPWORDS = frozenset(
    """
    a about above after again against all also always an and any are aren't as at be because
    been before being below between both but by can can't cannot could did do does doing done
    down during each easy even every few first for from further get gets getting give given
    gives good had has have having here how however if in instead into is isn't it it's its
    itself just keep keeps know last less let like likely lot make makes making many may means
    might more most much must need needs never new next no not now of off often on once one
    only or other otherwise our out over own per point points rather really right same see
    seen should since so some something still such sure take than that that's the their them
    then there these they thing things this those though through thus time to too two under
    until up upon us use used uses using very via want was way ways we well were what when
    where whether which while who why will with without work works would yet you your
    insight insights here's let's i'm we're you're don't doesn't won't
    """.split()  # noqa: SIM905
)


def normalise_insight(text: str) -> str:
    """The form that is hashed: NFC, markdown emphasis, backticks and list markers removed,
    white space folded, case folded."""
    text = unicodedata.normalize("NFC", text)
    text = _BULLET.sub("", text)
    text = re.sub(r"[`*]", "", text)
    return re.sub(r"\s+", " ", text).strip().casefold()


def insight_hash(text: str) -> str:
    return hashlib.sha256(normalise_insight(text).encode("utf-8", "surrogatepass")).hexdigest()


def topic_tags(text: str, limit: int = MAX_TAGS) -> list[str]:
    """A few topics of ``text``: code identifiers first (backticked names, snake_case,
    CamelCase, dotted names), then the most frequent significant words."""
    scores: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    long_words: set[str] = set()
    for match in _BACKTICKED.finditer(text):
        name = match.group(1).strip().strip("()")
        if _IDENTIFIER.match(name) and len(name) <= 40 and name.lower() not in STOPWORDS:
            key = name.lower()
            scores[key] += 3
            first_seen.setdefault(key, match.start())
    for match in _WORD.finditer(text):
        word = match.group(0).strip(".-/")
        key = word.lower()
        if len(key) < 3 or key in STOPWORDS or key.isdigit():
            continue
        is_identifier = "_" in word or "." in word or re.search(r"[a-z][A-Z]", word) is not None
        if not is_identifier and len(key) < 4:
            continue
        scores[key] += 2 if is_identifier else 1
        first_seen.setdefault(key, match.start())
        if not is_identifier and len(key) >= 6:
            long_words.add(key)
    # a plain word counts once it repeats, or when it is long enough to be specific
    ranked = sorted(
        (k for k in scores if scores[k] >= 2 or k in long_words),
        key=lambda k: (-scores[k], first_seen[k]),
    )
    return ranked[:limit]


def confidence_of(text: str, *, segments: int = 1) -> float:
    """How likely the block is a real, useful insight (0..1): well-sized, structured, concrete."""
    score = 0.6
    size = len(text)
    if 60 <= size <= 1500:
        score += 0.15
    elif size < 30:
        score -= 0.25
    if len(_BULLET.findall(text)) >= 2:
        score += 0.1
    if _BACKTICKED.search(text) or re.search(r"\w+\.\w{1,5}\b|\w+_\w+|\w+\(\)", text):
        score += 0.1
    if segments > 1:
        score -= 0.05
    return round(min(1.0, max(0.05, score)), 2)


@dataclass
class InsightBlock:
    """One insight found in assistant text."""

    text: str
    segments: int  # 1, or how many text segments it was reassembled from
    context: dict[str, Any] = field(default_factory=dict)  # of the segment where it opened

    @property
    def hash(self) -> str:
        return insight_hash(self.text)


class InsightExtractor:
    """Finds insight blocks in a sequence of assistant text segments (see the module doc).

    ``feed(text, context)`` returns the blocks completed by that text; a block still open at
    the end of it continues with the next segment. ``interrupt()`` drops an open block (a
    person spoke in between). ``state()``/``InsightExtractor(state)`` save and restore an
    open block across batches and processes."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._lines: list[str] | None = None
        self._segments = 0
        self._context: dict[str, Any] = {}
        self._fenced = False  # inside a fence within the open block
        if state:
            self._lines = list(state.get("lines", []))
            self._segments = int(state.get("segments", 1))
            self._context = dict(state.get("context", {}))
            self._fenced = bool(state.get("fenced", False))

    @property
    def open(self) -> bool:
        return self._lines is not None

    def state(self) -> dict[str, Any] | None:
        if self._lines is None:
            return None
        return {
            "lines": list(self._lines),
            "segments": self._segments,
            "context": dict(self._context),
            "fenced": self._fenced,
        }

    def interrupt(self) -> None:
        self._lines = None
        self._fenced = False

    def feed(self, text: str, context: dict[str, Any] | None = None) -> list[InsightBlock]:
        found: list[InsightBlock] = []
        fenced = False  # outside a block, a fence only lasts within one segment
        if self._lines is not None:
            self._segments += 1
        for line in text.splitlines():
            if self._lines is None:
                if FENCE_RE.match(line):
                    fenced = not fenced
                elif not fenced and OPEN_RE.match(line):
                    self._lines = []
                    self._segments = 1
                    self._context = dict(context or {})
                    self._fenced = False
                continue
            if FENCE_RE.match(line):
                self._fenced = not self._fenced
            elif not self._fenced and OPEN_RE.match(line):  # an unclosed block, a new one opens
                self._lines = []
                self._segments = 1
                self._context = dict(context or {})
                continue
            elif not self._fenced and CLOSE_RE.match(line):
                body = "\n".join(self._lines).strip()
                if body:
                    found.append(InsightBlock(body, self._segments, self._context))
                self._lines = None
                continue
            self._lines.append(line)
            if len(self._lines) > MAX_LINES or sum(len(x) for x in self._lines) > MAX_CHARS:
                self.interrupt()
        return found


@dataclass
class FoundInsight:
    """An insight block with where it came from, ready to store."""

    block: InsightBlock
    project: str | None
    session_id: str | None
    created_at: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)


class InsightRecorder:
    """Stores insights once each (SHA-256 of the normalised text, persisted)."""

    def __init__(
        self, memory: MemoryService, storage: StorageBase, events: EventBus | None = None
    ) -> None:
        self.memory = memory
        self.storage = storage
        self.events = events or EventBus()

    async def record(self, found: list[FoundInsight]) -> tuple[int, int]:
        """Store what is new; returns ``(stored, duplicates)``."""
        if not found:
            return 0, 0
        new: dict[str, FoundInsight] = {}
        duplicates = 0
        for item in found:
            key = item.block.hash
            if key in new:
                duplicates += 1
                continue
            existing = await self.storage.get_record(HASH_COLLECTION, key)
            if existing is not None:
                duplicates += 1
                await self._note_session(existing, item.session_id)
                continue
            new[key] = item
        if not new:
            return 0, duplicates
        inputs = []
        for key, item in new.items():
            text = item.block.text
            inputs.append(
                ItemInput(
                    content=text,
                    kind=KIND,
                    project=item.project,
                    session_id=item.session_id,
                    role="assistant",
                    tags=topic_tags(text),
                    author="claude-code",
                    metadata={
                        **item.metadata,
                        "confidence": confidence_of(text, segments=item.block.segments),
                        "insight_hash": key,
                        "segments": item.block.segments,
                    },
                    created_at=item.created_at,
                )
            )
        results = await self.memory.store(inputs)
        stored = 0
        for (key, item), result in zip(new.items(), results, strict=True):
            stored += 1 if result.created else 0
            duplicates += 0 if result.created else 1
            if result.created:
                self._told(result.id, item)
            first = Record(
                collection=HASH_COLLECTION,
                id=key,
                data={
                    "item_id": result.id,
                    "sessions": [item.session_id] if item.session_id else [],
                },
                project=item.project,
            )

            def keep_first(
                current: Record | None, first: Record = first, sid: str | None = item.session_id
            ) -> Record | None:
                # another service may have recorded it meanwhile: keep its record, note ours
                return first if current is None else _with_session(current, sid)

            await self.storage.modify_record(HASH_COLLECTION, key, keep_first)
        return stored, duplicates

    def _told(self, item_id: str, item: FoundInsight) -> None:
        text = item.block.text
        self.events.emit(
            INSIGHT_CAPTURED,
            item_id=item_id,
            project=item.project,
            session_id=item.session_id,
            preview=text[:200],
            tags=topic_tags(text),
        )

    async def _note_session(self, record: Record, session_id: str | None) -> None:
        if _with_session(record, session_id) is not None:
            await self.storage.modify_record(
                HASH_COLLECTION,
                record.id,
                lambda current: None if current is None else _with_session(current, session_id),
            )


def _with_session(record: Record, session_id: str | None) -> Record | None:
    """The record with ``session_id`` added to the sessions that wrote the insight (at most
    50 kept), or None when there is nothing to add."""
    sessions = record.data.get("sessions")
    if (
        not session_id
        or not isinstance(sessions, list)
        or session_id in sessions
        or len(sessions) >= 50
    ):
        return None
    return replace(record, data={**record.data, "sessions": [*sessions, session_id]})


# -- reading back ---------------------------------------------------------------------------


async def list_insights(
    storage: StorageBase,
    *,
    project: str | None = None,
    limit: int = 20,
    offset: int = 0,
    access: Access | None = None,
) -> list[MemoryItem]:
    """Insights newest first (those ``access`` lets through; None: all)."""
    flt = ItemFilter(kinds=[KIND], projects=[project] if project else None, access=access)
    return await storage.list_items(flt, limit=limit, offset=offset, newest_first=True)


async def insight_statistics(
    storage: StorageBase, *, page: int = 500, access: Access | None = None
) -> dict[str, Any]:
    """Counts of the stored insights ``access`` lets through (None: all) by project, topic
    tag and day (UTC), plus the total."""
    flt = ItemFilter(kinds=[KIND], access=access)
    by_project: Counter[str] = Counter()
    by_topic: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    confidences: list[float] = []
    offset = 0
    while True:
        items = await storage.list_items(flt, limit=page, offset=offset, newest_first=True)
        for item in items:
            by_project[item.project or "(none)"] += 1
            by_topic.update(item.tags)
            by_day[item.created_at.date().isoformat()] += 1
            value = item.metadata.get("confidence")
            if isinstance(value, int | float):
                confidences.append(float(value))
        if len(items) < page:
            break
        offset += page
    total = sum(by_project.values())
    return {
        "total": total,
        "by_project": dict(by_project.most_common()),
        "by_topic": dict(by_topic.most_common(50)),
        "by_day": dict(sorted(by_day.items(), reverse=True)),
        "average_confidence": round(sum(confidences) / len(confidences), 3)
        if confidences
        else None,
    }
