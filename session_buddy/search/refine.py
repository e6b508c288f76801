"""Four refinements of a hybrid ranking, all read from its best fused hits (docs/search.md).

**Pseudo-relevance feedback.** The words that best mark the first ``prf_docs`` hits (each
word's weight: the sum of those hits' fused scores, times ``ln(1 + n / df)`` with ``df`` the
number of the best ``n`` hits holding it, so words every hit shares count little) are
searched for as a second keyword query; its BM25 scores, times ``prf_weight``, are added to
the query's own before the rankings are fused again. A question asks with other words than
the turn that answers it; the first hits often hold those words.

**Session smoothing.** Among the best fused hits, a hit gains ``session_smoothing`` times
the (unsmoothed) score of the better of its neighbours: the hits of the same session just
before and after it in time. The evidence of an answer often spans a question and its
reply, or two consecutive turns.

**Reply lift.** A hit that asks a question (it ends with "?") gives ``reply_lift`` of its
score to the next hit of its session in time, up to ``REPLY_CAP`` times its own score: a
question matches the query's words, its reply holds the answer.

**Temporal boost.** For a question about when, the best hits that say when ("yesterday",
"last week", "in June") gain ``temporal_boost`` of their score; for one naming a date or a
month, the hits created then do.

Measured on the LoCoMo dev set (benchmarks/retrieval.py): hybrid R@5 60.4% -> 65.7%,
R@10 68.9% -> 76.8%, MRR 0.464 -> 0.509 with feedback and smoothing; 67.4% / 77.5% / 0.519
with the temporal boost too; 72.6% / 80.7% / 0.577 with the reply lift (docs/search.md).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from itertools import pairwise
from typing import TYPE_CHECKING

from session_buddy.adapters.storage._base import Hit
from session_buddy.search.tokens import query_terms, word_terms

if TYPE_CHECKING:
    from session_buddy.search.pipeline import Candidate

__all__ = [
    "FEEDBACK_CHARS",
    "WHEN_CHARS",
    "asked_dates",
    "asks",
    "expansion_words",
    "lift_replies",
    "merge_keyword",
    "says_when",
    "smooth_sessions",
    "temporal_boost",
]

#: only the start of a long hit gives feedback words (a 100 kB log would cost more to read
#: than the search)
FEEDBACK_CHARS = 2000
#: and only its first 500 say whether it says when (it mostly does early; cost: about 3 ms
#: a question about when, with 100 long hits)
WHEN_CHARS = 500
#: a lifted reply scores at most this many times its question: it climbs next to or just
#: above the question that matched, not past better hits by the question's score alone
REPLY_CAP = 1.2


def expansion_words(
    query: str, scored: Sequence[tuple[str, float]], feedback_docs: int, count: int
) -> list[str]:
    """Up to ``count`` words (not in the query) that mark the first ``feedback_docs`` of
    ``scored`` (contents with their fused scores, best first; all of them give the document
    frequencies), best first."""
    if count <= 0 or not scored:
        return []
    docs = [_terms(text) for text, _ in scored]
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(doc.keys())
    asked = set(query_terms(query))
    weight: dict[str, float] = {}
    spelling: dict[str, str] = {}
    pool = len(docs)
    for doc, (_, score) in zip(docs[:feedback_docs], scored[:feedback_docs], strict=True):
        for term, word in doc.items():  # once per document, however often it occurs
            if term in asked or term.isdigit():
                continue
            spelling.setdefault(term, word)
            gain = max(score, 0.0) * math.log(1.0 + pool / df[term])
            weight[term] = weight.get(term, 0.0) + gain
    best = sorted(weight, key=lambda t: -weight[t])[:count]  # stable: first seen first
    return [spelling[t] for t in best if weight[t] > 0]


def _terms(text: str) -> dict[str, str]:
    """term -> the first word of ``text`` that gives it."""
    out: dict[str, str] = {}
    for word, term in word_terms(text):
        out.setdefault(term, word)
    return out


def merge_keyword(base: list[Hit], extra: list[Hit], weight: float) -> list[Hit]:
    """One keyword ranking: each item's BM25 plus ``weight`` times its BM25 for the added
    words, best first."""
    merged: dict[str, Hit] = {h.id: replace(h) for h in base}
    for hit in extra:
        mine = merged.get(hit.id)
        if mine is None:
            merged[hit.id] = replace(hit, score=weight * hit.score)
        else:
            mine.score += weight * hit.score
    return sorted(merged.values(), key=lambda h: -h.score)


def _in_time(
    candidates: list[Candidate], sessions: dict[str, tuple[str, datetime]], depth: int
) -> list[list[Candidate]]:
    """The first ``depth`` candidates by session (``sessions``: id -> (session id,
    created_at)), each session's in time."""
    by_session: dict[str, list[Candidate]] = {}
    for c in candidates[:depth]:
        where = sessions.get(c.id)
        if where is not None:
            by_session.setdefault(where[0], []).append(c)
    for group in by_session.values():
        group.sort(key=lambda c: (sessions[c.id][1], c.id))
    return list(by_session.values())


def _rescale(candidates: list[Candidate], scale: float) -> None:
    """Divide every score by ``scale`` (back to 0..1, the order of the rest kept) and
    re-sort."""
    for c in candidates:
        c.score /= scale
        c.fused_score = c.score
    candidates.sort(key=lambda c: -c.score)


def smooth_sessions(
    candidates: list[Candidate],
    sessions: dict[str, tuple[str, datetime]],
    share: float,
    depth: int,
) -> None:
    """Add to each of the first ``depth`` candidates ``share`` times the score of its best
    neighbour in its session (``sessions``: id -> (session id, created_at)), divide every
    score by ``1 + share`` (still 0..1) and re-sort. Scores are read before any changes."""
    if share <= 0:
        return
    before = {c.id: c.score for c in candidates[:depth]}
    for group in _in_time(candidates, sessions, depth):
        if len(group) < 2:
            continue
        for i, c in enumerate(group):
            near = [before[n.id] for n in group[max(0, i - 1) : i + 2] if n is not c]
            c.score += share * max(near)
    _rescale(candidates, 1.0 + share)


def asks(text: str) -> bool:
    """Whether ``text`` ends with a question, a trailing note in brackets ("[shared an
    image: ...]", "[attached: log.txt]") left out: that is not what the turn says."""
    end = text.rstrip()
    if end.endswith("]"):
        start = end.rfind("[")
        if start < 0:
            return False
        end = end[:start].rstrip()
    return end.endswith("?")


def lift_replies(
    candidates: list[Candidate],
    sessions: dict[str, tuple[str, datetime]],
    contents: dict[str, str],
    share: float,
    depth: int,
) -> None:
    """Each of the first ``depth`` candidates that asks a question (:func:`asks`) gives
    ``share`` of its score to its reply: the next candidate of its session in time (among
    the first ``depth``), which then scores at most ``REPLY_CAP`` times its question (or
    its own score, if more). Scores (read before any changes) are then divided by
    ``min(1 + share, REPLY_CAP)`` (still 0..1) and re-sorted."""
    if share <= 0:
        return
    before = {c.id: c.score for c in candidates[:depth]}
    for group in _in_time(candidates, sessions, depth):
        for question, reply in pairwise(group):
            text = contents.get(question.id)
            if text is not None and asks(text):
                asked, own = before[question.id], before[reply.id]
                lifted = max(own, min(own + share * asked, REPLY_CAP * asked))
                reply.score = max(reply.score, lifted)
    _rescale(candidates, min(1.0 + share, REPLY_CAP))


_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = r"(" + "|".join(m.capitalize() for m in _MONTHS) + r")"
#: "When did ...", "What date ...", "Which year ...", "How long ago ..."
_WHEN = re.compile(
    r"^\s*(when\b|(on |in |by )?(what|which) (date|day|year|month|week|time)\b|how long ago\b)",
    re.IGNORECASE,
)
#: words by which a turn says when something happened, alone ...
_WHEN_WORDS = frozenset(
    [
        "yesterday",
        "today",
        "tonight",
        "tomorrow",
        "ago",
        "recently",
        "lately",
        "weekend",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
) | frozenset(m for m in _MONTHS if m != "may")  # "I may": too often not a month
#: ... or after one of these ("last week", "next summer", "few days")
_WHEN_BEFORE = frozenset(["last", "next", "this", "past", "coming", "few", "couple", "other"])
_WHEN_AFTER = frozenset(
    [
        "day",
        "days",
        "night",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "summer",
        "winter",
        "spring",
        "fall",
        "autumn",
    ]
)
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_WORD = re.compile(r"[a-z]+")


def says_when(text: str) -> bool:
    """Whether ``text`` says when something happened: "yesterday", "last week", "in June",
    a year such as 2023."""
    words = _WORD.findall(text.lower())
    present = set(words)
    if not present.isdisjoint(_WHEN_WORDS) or _YEAR.search(text):
        return True
    if present.isdisjoint(_WHEN_BEFORE) or present.isdisjoint(_WHEN_AFTER):
        return False
    return any(a in _WHEN_BEFORE and b in _WHEN_AFTER for a, b in pairwise(words))


_DAY_MONTH = re.compile(rf"\b(\d{{1,2}}) {_MONTH},? ((?:19|20)\d\d)\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b{_MONTH} (\d{{1,2}}),? ((?:19|20)\d\d)\b", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"\b{_MONTH},? ((?:19|20)\d\d)\b", re.IGNORECASE)
_ISO_DAY = re.compile(r"\b((?:19|20)\d\d)-(\d\d)-(\d\d)\b")


def asked_dates(query: str) -> tuple[set[tuple[int, int, int]], set[tuple[int, int]]]:
    """The whole dates (year, month, day) and the months (year, month) a query names."""
    days: set[tuple[int, int, int]] = set()
    months: set[tuple[int, int]] = set()
    for m in _DAY_MONTH.finditer(query):
        days.add((int(m.group(3)), _MONTHS.index(m.group(2).lower()) + 1, int(m.group(1))))
    for m in _MONTH_DAY.finditer(query):
        days.add((int(m.group(3)), _MONTHS.index(m.group(1).lower()) + 1, int(m.group(2))))
    for m in _ISO_DAY.finditer(query):
        days.add((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    rest = _MONTH_DAY.sub(" ", _DAY_MONTH.sub(" ", query))  # a whole date names no month
    for m in _MONTH_YEAR.finditer(rest):
        months.add((int(m.group(2)), _MONTHS.index(m.group(1).lower()) + 1))
    return days, months


def temporal_boost(
    query: str,
    candidates: list[Candidate],
    contents: dict[str, str],
    share: float,
    depth: int,
) -> bool:
    """For a question about when (``_WHEN``), the first ``depth`` candidates whose content
    says when (:func:`says_when`) gain ``share`` of their score; for a question naming a date
    or a month, those created on it do. Scores are divided by ``1 + share`` (0..1) and
    re-sorted; False when the query is neither kind (nothing changed)."""
    when = share > 0 and _WHEN.search(query) is not None
    days, months = asked_dates(query) if share > 0 else (set(), set())
    if not (when or days or months):
        return False
    for c in candidates[:depth]:
        text = contents.get(c.id)
        gain = 0.0
        if when and text is not None and says_when(text[:WHEN_CHARS]):
            gain = share
        if c.created_at is not None and (days or months):
            at = c.created_at
            if (at.year, at.month, at.day) in days or (at.year, at.month) in months:
                gain = share
        c.score += gain * c.score
    _rescale(candidates, 1.0 + share)
    return True
