"""The one search pipeline: query -> rankers -> fusion -> decay -> rescoring -> hits.

Every search runs here, whatever asks (``MemoryService.search`` and the memory tools, team
search, search across projects):

1. **Rank.** The storage's two rankers (``keyword_search``, BM25; ``vector_search``,
   cosine) each give their best ``depth`` candidates among the items the filter keeps *and
   the caller may see*: the caller's :class:`~session_buddy.adapters.storage._base.Access`
   (visible authors, ids shared with their teams) is passed to the rankers as data, like a
   filter, so no candidate has to be fetched to be checked and no search looks deeper to
   make up for others' items. The keyword ranker starts at once and runs while the query is
   embedded and the vector ranker runs. Each hit carries ``created_at``, ``author``,
   ``kind`` and ``project``.
2. **Fuse** (:mod:`.hybrid`): weighted score fusion (default) or reciprocal rank fusion.
   A hybrid search is then **refined** from its best fused hits (:mod:`.refine`, fetched
   once; the page reuses them): pseudo-relevance feedback, session smoothing, the reply
   lift (a hit that asks lifts the next hit of its session), then the temporal boost of a
   question about when.
3. **Decay**: with a half-life, each score times ``0.5 ** (age_days / half_life)``, from the
   hit's own ``created_at`` (no item is fetched).
4. **Rescore** (optional, a :class:`Rescore`): team votes, cross-project tier weights. It
   gets every candidate at once (one query for all of them, never one per candidate),
   changes scores and attaches what it learnt (:class:`TeamFacts`, :class:`ScopeFacts`),
   and returns the candidates in their final order.
5. **Page**: the requested page is fetched in one ``get_items`` call and becomes
   :class:`SearchHit` objects, the one hit type from the core to the tools, with their
   confidence (:func:`.hybrid.hit_level`).
6. **Expand** (optional, an :class:`Expand`, first page only): more hits after the direct
   ones, each marked with ``via`` (the knowledge graph's one-hop neighbours).

When vectors cannot be used, ``semantic`` and ``hybrid`` fall back to keyword search and the
answer's ``degraded`` says why (:class:`QueryVectors` decides; the memory service
implements it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from session_buddy.adapters.storage._base import (
    KINDS,
    Access,
    Hit,
    ItemFilter,
    MemoryItem,
    StorageBase,
    is_dialogue,
    utcnow,
)
from session_buddy.errors import DimensionMismatch, ValidationError
from session_buddy.search import hybrid, refine
from session_buddy.search.snippets import snippet as make_snippet
from session_buddy.settings import SearchSettings

__all__ = [
    "Candidate",
    "Confidence",
    "Expand",
    "Pipeline",
    "QueryVectors",
    "Rescore",
    "ScopeFacts",
    "SearchHit",
    "SearchMode",
    "SearchRequest",
    "SearchResponse",
    "TeamFacts",
]

SearchMode = Literal["hybrid", "semantic", "keyword"]
MODES: tuple[SearchMode, ...] = ("hybrid", "semantic", "keyword")
Confidence = hybrid.Level


@dataclass(slots=True)
class TeamFacts:
    """What team search adds to a hit: the members' votes, the owner and who shared it."""

    votes_up: int
    votes_down: int
    net_votes: int
    your_vote: int | None
    author: str
    shared_by: str | None


@dataclass(slots=True)
class ScopeFacts:
    """What cross-project search adds to a hit: its project's tier and why it was searched."""

    tier: str
    tier_weight: float
    source_project: str | None  # the canonical project (when stored under an alias)
    why: str


@dataclass(slots=True)
class Candidate:
    """A fused candidate on its way through the pipeline."""

    id: str
    score: float  # the order: fused, then decayed, then rescored
    fused_score: float  # fused and decayed, before rescoring
    keyword_score: float | None
    semantic_score: float | None
    created_at: datetime | None
    author: str | None
    kind: str | None
    project: str | None
    team: TeamFacts | None = None
    scope: ScopeFacts | None = None


@dataclass
class SearchHit:
    """One search hit, from the pipeline to the tools (team and scope facts when asked)."""

    id: str
    kind: str
    content: str  # full text, or a snippet when longer than settings.search.snippet_chars
    content_length: int
    truncated: bool
    score: float  # the order: fused score (0..1), rescored by team votes or tier weight
    fused_score: float  # the plain hybrid score (0..1), after time decay
    confidence: Confidence
    semantic_score: float | None  # cosine similarity, when the vector ranker saw it
    keyword_score: float | None  # BM25 score, when the keyword ranker saw it
    project: str | None
    session_id: str | None
    role: str | None
    author: str | None
    created_at: datetime
    tags: list[str]
    metadata: dict[str, Any]
    team: TeamFacts | None = None
    scope: ScopeFacts | None = None
    #: how an expanded hit was reached (``graph:verify_token>auth/jwt.py``); None: direct
    via: str | None = None
    #: a short piece of the content around the query's matching words (:mod:`.snippets`);
    #: empty when the hit was not made by a search of words (the tools then make one)
    snippet: str = ""

    @classmethod
    def of(
        cls,
        item: MemoryItem,
        snippet_chars: int | None,
        *,
        score: float,
        fused_score: float,
        confidence: Confidence,
        semantic_score: float | None = None,
        keyword_score: float | None = None,
        team: TeamFacts | None = None,
        scope: ScopeFacts | None = None,
    ) -> SearchHit:
        """The hit of a stored item (its content cut to ``snippet_chars``, whole if None)."""
        content = item.content if snippet_chars is None else item.content[:snippet_chars]
        return cls(
            id=item.id,
            kind=item.kind,
            content=content,
            content_length=len(item.content),
            truncated=len(content) < len(item.content),
            score=round(score, 6),
            fused_score=round(fused_score, 6),
            confidence=confidence,
            semantic_score=semantic_score,
            keyword_score=keyword_score,
            project=item.project,
            session_id=item.session_id,
            role=item.role,
            author=item.author,
            created_at=item.created_at,
            tags=list(item.tags),
            metadata=dict(item.metadata),
            team=team,
            scope=scope,
        )


@dataclass
class SearchResponse:
    hits: list[SearchHit]
    #: the mode actually used (hybrid falls back to keyword when degraded); "list" for a
    #: listing that ranked nothing (items of a time span)
    mode: SearchMode | Literal["list"]
    confidence: Confidence  # of the best hit; "none" when nothing relevant came back
    degraded: str | None = None  # why semantic search was not used, if it was asked for
    has_more: bool = False


#: An expansion: more hits for a search's first page, after (and below) its direct hits
#: (the knowledge graph's neighbours, :mod:`session_buddy.core.graph`).
Expand = Callable[["SearchRequest", list[SearchHit]], Awaitable[list[SearchHit]]]

#: A rescoring step: new scores for every candidate (reading what it needs for all of them
#: at once), and the candidates in their final order.
Rescore = Callable[[list[Candidate]], Awaitable[list[Candidate]]]


class QueryVectors(Protocol):
    """Where the pipeline gets a query's vector (the memory service)."""

    async def query_vector(self, query: str) -> tuple[np.ndarray | None, str | None]:
        """The vector, or None and why vectors cannot be used."""
        ...

    def vectors_refused(self, reason: str) -> None:
        """The storage refused the vector (another dimension than the stored ones)."""
        ...


@dataclass
class SearchRequest:
    """One search: the query, what it may find, and how its hits are ordered and paged."""

    query: str
    filter: ItemFilter = field(default_factory=ItemFilter)
    access: Access | None = None  # None: every item is visible
    mode: SearchMode = "hybrid"
    limit: int = 10
    offset: int = 0
    half_life_days: float = 0.0  # time decay; 0 is off
    rescore: Rescore | None = None
    expand: Expand | None = None

    def check(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValidationError("query is empty; give words to search for")
        if self.mode not in MODES:
            raise ValidationError(f"mode must be hybrid, semantic or keyword, not {self.mode!r}")
        kinds = self.filter.kinds
        if kinds is not None and any(k not in KINDS for k in kinds):
            raise ValidationError(f"kinds must be among {', '.join(KINDS)}, not {kinds!r}")
        if self.limit < 1:
            raise ValidationError("limit must be at least 1")


def _candidates(fused: list[hybrid.Fused], first: dict[str, Hit]) -> list[Candidate]:
    out: list[Candidate] = []
    for f in fused:
        hit = first[f.id]
        out.append(
            Candidate(
                id=f.id,
                score=f.score,
                fused_score=f.score,
                keyword_score=f.keyword_score,
                semantic_score=f.semantic_score,
                created_at=hit.created_at,
                author=hit.author,
                kind=hit.kind,
                project=hit.project,
            )
        )
    return out


class Pipeline:
    def __init__(
        self, storage: StorageBase, vectors: QueryVectors, settings: SearchSettings
    ) -> None:
        self.storage = storage
        self.vectors = vectors
        self.settings = settings

    async def rank(
        self, query: str, flt: ItemFilter, access: Access | None, depth: int, mode: SearchMode
    ) -> tuple[list[Candidate], SearchMode, str | None, dict[str, MemoryItem]]:
        """The fused candidates (each ranker's best ``depth``), best first, the mode used,
        why it was degraded, if it was, and the items already fetched (by refinement)."""
        used: SearchMode = mode
        degraded: str | None = None
        rankings: list[list[Hit]] = []
        names: list[str] = []

        def keyword_task() -> asyncio.Task[list[Hit]]:
            return asyncio.create_task(self.storage.keyword_search(query, flt, depth, access))

        # the keyword ranker needs no vector: it runs while the query is embedded and the
        # vector ranker runs (on a database server the two queries overlap)
        keyword = keyword_task() if mode != "semantic" else None
        try:
            semantic: list[Hit] | None = None
            if mode != "keyword":
                vector, degraded = await self.vectors.query_vector(query)
                if vector is None:
                    used = "keyword"
                else:
                    try:
                        semantic = await self.storage.vector_search(vector, flt, depth, access)
                    except DimensionMismatch as exc:
                        degraded = f"{exc}"
                        self.vectors.vectors_refused(degraded)
                        used = "keyword"
            if used != "semantic":
                keyword = keyword or keyword_task()  # semantic asked for, keyword the fallback
                rankings.append(await keyword)
                names.append("keyword")
            if semantic is not None:
                rankings.append(semantic)
                names.append("semantic")
        finally:
            if keyword is not None:
                if not keyword.done():
                    keyword.cancel()
                elif not keyword.cancelled():
                    keyword.exception()  # retrieved: an error elsewhere is the one raised
        ranked = self._fuse(rankings, names)
        items: dict[str, MemoryItem] = {}
        if used == "hybrid" and len(rankings) == 2 and ranked:
            ranked = await self._refine(query, (flt, access, depth), rankings, ranked, items)
        return ranked, used, degraded, items

    def _fuse(self, rankings: list[list[Hit]], names: list[str]) -> list[Candidate]:
        if self.settings.fusion == "rrf":
            fused = hybrid.fuse(rankings, self.settings.rrf_k, kinds=names)
        else:
            fused = hybrid.fuse_weighted(rankings, self.settings.keyword_weight, kinds=names)
        first: dict[str, Hit] = {}
        for ranking in rankings:
            for hit in ranking:
                first.setdefault(hit.id, hit)
        return _candidates(fused, first)

    async def _refine(
        self,
        query: str,
        scope: tuple[ItemFilter, Access | None, int],
        rankings: list[list[Hit]],
        ranked: list[Candidate],
        seen: dict[str, MemoryItem],
    ) -> list[Candidate]:
        """Pseudo-relevance feedback, session smoothing, the reply lift, then the temporal
        boost, over the best ``search.refine_depth`` fused candidates (:mod:`.refine`),
        fetched once into ``seen`` (which the page then reuses). ``rankings`` is [keyword, semantic]; ``scope``
        the rankers' filter, access and depth."""
        s = self.settings
        if max(s.prf_terms, s.session_smoothing, s.reply_lift, s.temporal_boost) <= 0:
            return ranked
        top = ranked[: s.refine_depth]
        seen.update((i.id, i) for i in await self.storage.get_items([c.id for c in top]))
        if s.prf_terms > 0 and s.prf_weight > 0:
            scored = [
                (seen[c.id].content[: refine.FEEDBACK_CHARS], c.score) for c in top if c.id in seen
            ]
            words = refine.expansion_words(query, scored, s.prf_docs, s.prf_terms)
            if words:
                flt, access, depth = scope
                extra = await self.storage.keyword_search(" ".join(words), flt, depth, access)
                keyword = refine.merge_keyword(rankings[0], extra, s.prf_weight)
                ranked = self._fuse([keyword, rankings[1]], ["keyword", "semantic"])
        # hits that entered the best by the feedback (not fetched) are left as they are
        sessions = {i.id: (i.session_id, i.created_at) for i in seen.values() if i.session_id}
        contents = {i: m.content for i, m in seen.items()}
        if s.session_smoothing > 0:
            refine.smooth_sessions(ranked, sessions, s.session_smoothing, s.refine_depth)
        if s.reply_lift > 0:  # a question's reply is the next turn said, not a tool's output
            turns = {i: at for i, at in sessions.items() if is_dialogue(seen[i])}
            refine.lift_replies(ranked, turns, contents, s.reply_lift, s.refine_depth)
        if s.temporal_boost > 0:
            refine.temporal_boost(query, ranked, contents, s.temporal_boost, s.refine_depth)
        return ranked

    async def run(self, request: SearchRequest) -> SearchResponse:
        """Rank, fuse, decay, rescore and page one search (module doc)."""
        request.check()
        offset = max(0, request.offset)
        wanted = offset + request.limit
        depth = max(self.settings.candidates, wanted + 1)
        ranked, used, degraded, fetched = await self.rank(
            request.query, request.filter, request.access, depth, request.mode
        )
        if request.half_life_days > 0 and ranked:
            decay(ranked, request.half_life_days)
        if request.rescore is not None and ranked:
            ranked = await request.rescore(ranked)
        page = ranked[offset:wanted]
        missing = [c.id for c in page if c.id not in fetched]
        items = {i.id: i for i in await self.storage.get_items(missing)} if missing else {}
        items.update((c.id, fetched[c.id]) for c in page if c.id in fetched)
        hits = self.hits(request.query, page, items)
        if request.expand is not None and offset == 0:
            hits += await request.expand(request, hits)
        return SearchResponse(
            hits=hits,
            mode=used,
            confidence=hybrid.best_level(*(h.confidence for h in hits)),
            degraded=degraded if request.mode != "keyword" else None,
            has_more=len(ranked) > wanted,
        )

    def hits(
        self, query: str, page: list[Candidate], items: dict[str, MemoryItem]
    ) -> list[SearchHit]:
        """The hits of a page, with their confidence (an item deleted since it was ranked
        is left out)."""
        groups = hybrid.query_groups(query)
        snippet = self.settings.snippet_chars
        hits = [
            SearchHit.of(
                item,
                snippet,
                score=c.score,
                fused_score=c.fused_score,
                confidence=hybrid.hit_level(c.semantic_score, groups, item.content),
                semantic_score=c.semantic_score,
                keyword_score=c.keyword_score,
                team=c.team,
                scope=c.scope,
            )
            for c in page
            if (item := items.get(c.id)) is not None
        ]
        for hit in hits:  # from the whole content: a match may lie past snippet_chars
            hit.snippet = make_snippet(items[hit.id].content, query)
        return hits


def decay(candidates: list[Candidate], half_life_days: float) -> None:
    """Weigh every candidate by its age (from the hit itself) and re-sort: decay can reorder,
    so every candidate is weighed, not only the page."""
    now = utcnow()
    for c in candidates:
        if c.created_at is not None:
            c.score *= hybrid.decay(c.created_at, now, half_life_days)
            c.fused_score = c.score
    candidates.sort(key=lambda c: -c.score)
