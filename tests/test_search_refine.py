"""Pseudo-relevance feedback, session smoothing and the temporal boost (search/refine.py): the
functions on fixed cases, then hybrid search on a real DuckDB store with the real ONNX model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from session_buddy.adapters.storage._base import Hit
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.search.pipeline import Candidate
from session_buddy.search.refine import (
    REPLY_CAP,
    asked_dates,
    asks,
    expansion_words,
    lift_replies,
    merge_keyword,
    says_when,
    smooth_sessions,
    temporal_boost,
)
from session_buddy.search.tokens import word_terms
from session_buddy.settings import SearchSettings, SessionBuddySettings

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _cand(id_: str, score: float, created_at: datetime | None = None) -> Candidate:
    return Candidate(
        id=id_,
        score=score,
        fused_score=score,
        keyword_score=None,
        semantic_score=None,
        created_at=created_at,
        author=None,
        kind=None,
        project=None,
    )


# -- the functions ----------------------------------------------------------------------------


def test_word_terms_keeps_plain_words_with_their_stems() -> None:
    assert word_terms("Melanie: we went camping at the lake, ERR_CONN_4021 in 2023") == [
        ("melanie", "melani"),
        ("went", "went"),
        ("camping", "camp"),
        ("lake", "lake"),
        ("2023", "2023"),
    ]


def test_expansion_words_prefer_what_marks_the_first_hits() -> None:
    scored = [
        ("Melanie: we went camping at Lake Tahoe with the kids", 0.9),
        ("Melanie: the kids loved the campfire at Tahoe", 0.7),
        ("Melanie: camping again next summer", 0.5),
        ("Melanie: I painted a sunset", 0.2),
        ("Melanie: my kids started school", 0.1),
    ]
    words = expansion_words("Where did Melanie go camping?", scored, feedback_docs=3, count=3)
    # in two of the three feedback hits and rare in the pool: first; query words never
    assert words[0] == "tahoe"
    assert "camping" not in words and "melanie" not in words
    assert len(words) == 3
    # a word of every pooled hit weighs less than one only the best hit has
    everywhere = [(f"Melanie: shared {w}", 0.5) for w in ("lake", "boat", "fish", "sand")]
    words = expansion_words("Melanie", [("Melanie: shared kayak", 0.9), *everywhere], 1, 2)
    assert words == ["kayak", "shared"]


def test_a_feedback_word_weighs_once_per_hit() -> None:
    # "hiking hikes hiked" is one term in one hit; "tahoe" is in two (weighs more even so)
    scored = [("tahoe hiking hikes hiked", 0.9), ("tahoe kayak", 0.5), ("kayak", 0.1)]
    assert expansion_words("trip", scored, feedback_docs=2, count=3) == [
        "tahoe",
        "hiking",
        "kayak",
    ]


def test_expansion_words_off_or_empty() -> None:
    assert expansion_words("camping", [("we went camping", 1.0)], 3, 0) == []
    assert expansion_words("camping", [], 3, 10) == []
    assert expansion_words("camping", [("camping camping", 1.0)], 3, 10) == []


def test_merge_keyword_adds_the_weighted_feedback_scores() -> None:
    base = [Hit("a", 4.0), Hit("b", 2.0)]
    extra = [Hit("b", 10.0), Hit("c", 1.0)]
    merged = merge_keyword(base, extra, 0.3)
    assert [(h.id, round(h.score, 6)) for h in merged] == [("b", 5.0), ("a", 4.0), ("c", 0.3)]
    assert base[1].score == 2.0  # the rankers' hits are not changed


def test_smoothing_keeps_a_clear_top_hit_and_lifts_a_neighbour() -> None:
    cands = [
        _cand("top", 0.90),
        _cand("lone", 0.50),
        _cand("question", 0.48),
        _cand("reply", 0.46),
        _cand("deep", 0.10),
    ]
    sessions = {
        "top": ("s1", T0),
        "lone": ("s2", T0),
        "question": ("s3", T0),
        "reply": ("s3", T0 + timedelta(seconds=1)),
        "deep": ("s3", T0 + timedelta(seconds=2)),
    }
    smooth_sessions(cands, sessions, 0.2, depth=4)
    order = [c.id for c in cands]
    assert order[0] == "top"  # no neighbour: only rescaled, still far ahead
    # question and reply lift each other above the lone hit; "deep" is past the depth
    assert order[1:3] == ["question", "reply"] and order[3] == "lone"
    score = {c.id: c.score for c in cands}
    assert score["top"] == pytest.approx(0.90 / 1.2)
    assert score["question"] == pytest.approx((0.48 + 0.2 * 0.46) / 1.2)
    assert score["reply"] == pytest.approx((0.46 + 0.2 * 0.48) / 1.2)  # read before changes
    assert score["deep"] == pytest.approx(0.10 / 1.2)
    assert all(0 <= c.score <= 1 and c.fused_score == c.score for c in cands)


def test_smoothing_neighbours_are_by_time_within_a_session_only() -> None:
    cands = [_cand("x", 0.5), _cand("y", 0.5), _cand("z", 0.4)]
    # x and z share a session, y (between them in time) is in another
    sessions = {
        "x": ("s1", T0),
        "y": ("s2", T0 + timedelta(seconds=1)),
        "z": ("s1", T0 + timedelta(seconds=2)),
    }
    smooth_sessions(cands, sessions, 0.5, depth=10)
    score = {c.id: c.score for c in cands}
    assert score["x"] == pytest.approx((0.5 + 0.5 * 0.4) / 1.5)
    assert score["y"] == pytest.approx(0.5 / 1.5)
    assert score["z"] == pytest.approx((0.4 + 0.5 * 0.5) / 1.5)
    before = [_cand("x", 0.5), _cand("z", 0.4)]
    smooth_sessions(before, sessions, 0.0, depth=10)  # off: nothing changes
    assert [(c.id, c.score) for c in before] == [("x", 0.5), ("z", 0.4)]


def test_asks_reads_the_end_of_a_turn() -> None:
    assert asks("Caroline: That's so nice! What pet do you have?")
    assert asks("Why does the build fail on CI?  [shared an image: a red build log]")
    assert asks("x" * 5000 + " is this the fix?")
    for text in ("Is it? No, it was the cache.", "Yes! [shared an image: a cat?]", "", "?!"):
        assert not asks(text), text


def _lift(
    scores: dict[str, float], contents: dict[str, str], share: float = 0.4, depth: int = 100
) -> list[Candidate]:
    """lift_replies over candidates of one session, in the order of ``scores`` in time."""
    cands = sorted((_cand(i, s) for i, s in scores.items()), key=lambda c: -c.score)
    sessions = {i: ("s1", T0 + timedelta(seconds=n)) for n, i in enumerate(scores)}
    lift_replies(cands, sessions, contents, share, depth)
    return cands


def test_a_question_lifts_its_reply_to_the_top() -> None:
    contents = {
        "ask": "Caroline: That's so nice! What pet do you have?",
        "reply": "Melanie: A guinea pig called Oscar.",
        "other": "Caroline: Pets bring so much joy, what are their names?",
    }
    # in time: ask, reply, other; the question matches the query best, its reply least
    cands = _lift({"ask": 0.60, "reply": 0.40, "other": 0.45}, contents)
    assert [c.id for c in cands] == ["reply", "ask", "other"]
    score = {c.id: c.score for c in cands}
    scale = min(1.4, REPLY_CAP)
    assert score["reply"] == pytest.approx((0.40 + 0.4 * 0.60) / scale)
    assert score["ask"] == pytest.approx(0.60 / scale)
    # "other" asks too, but nothing of its session comes after it: only rescaled
    assert score["other"] == pytest.approx(0.45 / scale)
    assert all(0 <= c.score <= 1 and c.fused_score == c.score for c in cands)
    # scores stay in 0..1 when the question scores 1
    cands = _lift({"ask": 1.0, "reply": 0.9}, contents)
    assert [c.id for c in cands] == ["reply", "ask"] and cands[0].score == pytest.approx(1.0)


def test_a_lifted_reply_does_not_pass_better_hits_by_its_question_alone() -> None:
    contents = {"ask": "Why does CI fail?", "reply": "The cache was stale.", "top": "CI fixed."}
    # uncapped the reply would score 0.55 + 0.4 * 0.6 = 0.79 > 0.75; capped: 1.2 * 0.6 = 0.72
    cands = _lift({"ask": 0.60, "reply": 0.55, "top": 0.75}, contents)
    assert [c.id for c in cands] == ["top", "reply", "ask"]
    assert cands[1].score == pytest.approx(REPLY_CAP * 0.60 / min(1.4, REPLY_CAP))
    # a reply already above the cap keeps its own score
    cands = _lift({"ask": 0.30, "reply": 0.55, "top": 0.75}, contents)
    assert [(c.id, c.score * min(1.4, REPLY_CAP)) for c in cands] == [
        ("top", pytest.approx(0.75)),
        ("reply", pytest.approx(0.55)),
        ("ask", pytest.approx(0.30)),
    ]


def test_the_reply_lift_leaves_turns_that_ask_nothing_alone() -> None:
    contents = {"a": "Melanie: We went camping.", "b": "Caroline: Lovely.", "c": "Melanie: Yes."}
    scale = min(1.4, REPLY_CAP)
    cands = _lift({"a": 0.6, "b": 0.3, "c": 0.5}, contents)
    assert [(c.id, c.score * scale) for c in cands] == [
        ("a", pytest.approx(0.6)),
        ("c", pytest.approx(0.5)),
        ("b", pytest.approx(0.3)),
    ]
    # a question's reply is the next hit of its own session, not of another session
    cands = [_cand("ask", 0.6), _cand("elsewhere", 0.3)]
    sessions = {"ask": ("s1", T0), "elsewhere": ("s2", T0 + timedelta(seconds=1))}
    lift_replies(cands, sessions, {"ask": "Why?", "elsewhere": "Because."}, 0.4, 100)
    assert [c.id for c in cands] == ["ask", "elsewhere"]
    assert cands[1].score * scale == pytest.approx(0.3)
    # past the depth nothing is lifted; off: nothing changes
    pair = {"ask": "Why?", "reply": "Because."}
    cands = _lift({"ask": 0.6, "reply": 0.3}, pair, depth=1)
    assert [(c.id, c.score * scale) for c in cands] == [
        ("ask", pytest.approx(0.6)),
        ("reply", pytest.approx(0.3)),
    ]
    cands = _lift({"ask": 0.6, "reply": 0.3}, pair, share=0.0)
    assert [(c.id, c.score) for c in cands] == [("ask", 0.6), ("reply", 0.3)]


def test_a_clear_lead_survives_the_reply_lift() -> None:
    contents = {"top": "The fix was to pin numpy.", "ask": "Why does CI fail?", "reply": "Oh."}
    cands = _lift({"top": 0.9, "ask": 0.5, "reply": 0.2}, contents)
    assert [c.id for c in cands] == ["top", "ask", "reply"]


def test_asked_dates_reads_whole_dates_and_months() -> None:
    assert asked_dates("What did Melanie paint on October 13, 2023?") == ({(2023, 10, 13)}, set())
    assert asked_dates("What did Gina find on 1 February, 2023?") == ({(2023, 2, 1)}, set())
    assert asked_dates("What did they paint in July 2023?") == (set(), {(2023, 7)})
    assert asked_dates("what changed on 2026-11-03 and in march 2026") == (
        {(2026, 11, 3)},
        {(2026, 3)},
    )
    assert asked_dates("Where did Caroline move from 4 years ago?") == (set(), set())


def test_says_when_finds_time_words_not_look_alikes() -> None:
    for text in ("I went yesterday.", "See you next week!", "In June, 2023 we", "few days", "2019"):
        assert says_when(text), text
    for text in ("I may go", "the last thing", "a week of work", "error 20231 in line 4"):
        assert not says_when(text), text


def test_temporal_boost_favours_hits_that_say_when_for_a_when_question() -> None:
    contents = {
        "top": "Caroline: I went to the LGBTQ support group, it was powerful",
        "dated": "Caroline: I went to a support group yesterday",
        "other": "Melanie: support groups help a lot",
    }
    ranked = [_cand("top", 0.9), _cand("dated", 0.8), _cand("other", 0.7)]
    assert temporal_boost("When did Caroline go to the support group?", ranked, contents, 0.4, 100)
    assert [c.id for c in ranked] == ["dated", "top", "other"]
    assert all(0 <= c.score <= 1 and c.fused_score == c.score for c in ranked)
    # a clear lead is kept: the word-for-word hit stays first
    ranked = [_cand("top", 0.95), _cand("dated", 0.6), _cand("other", 0.5)]
    temporal_boost("When did Caroline go to the support group?", ranked, contents, 0.4, 100)
    assert [c.id for c in ranked] == ["top", "dated", "other"]
    # not a question about when: nothing changes
    ranked = [_cand("top", 0.9), _cand("dated", 0.8)]
    assert not temporal_boost("Who went to the support group?", ranked, contents, 0.4, 100)
    assert [(c.id, c.score) for c in ranked] == [("top", 0.9), ("dated", 0.8)]
    assert not temporal_boost("When did she go?", ranked, contents, 0.0, 100)


def test_temporal_boost_favours_the_day_a_question_names() -> None:
    may4, may9 = datetime(2023, 5, 4, tzinfo=UTC), datetime(2023, 5, 9, tzinfo=UTC)
    ranked = [_cand("a", 0.8, may9), _cand("b", 0.75, may4), _cand("c", 0.7, None)]
    contents = {"a": "I painted a lake", "b": "I painted a sunset", "c": "I painted"}
    temporal_boost("What did Melanie paint on 4 May, 2023?", ranked, contents, 0.4, 100)
    assert [c.id for c in ranked] == ["b", "a", "c"]
    ranked = [_cand("a", 0.8, may9), _cand("b", 0.75, datetime(2023, 6, 1, tzinfo=UTC))]
    temporal_boost("What did Melanie paint in May 2023?", ranked, contents, 0.4, 100)
    assert [c.id for c in ranked] == ["a", "b"]


# -- hybrid search, real store and model -----------------------------------------------------

FILLER = [
    "I baked sourdough bread this morning, the crust came out great.",
    "My cat knocked the plant off the shelf again.",
    "Work has been busy, we ship the new release on Friday.",
    "I started reading a novel about a lighthouse keeper.",
    "The football match last night went to penalties.",
    "We repainted the kitchen a pale green colour.",
    "My sister is visiting next week with her twins.",
    "I signed up for a pottery class on Thursdays.",
]


def _conversation() -> list[ItemInput]:
    items: list[ItemInput] = []
    when = T0
    for s in range(4):
        turns = [f"{('Caroline', 'Melanie')[i % 2]}: {text}" for i, text in enumerate(FILLER)]
        if s == 2:
            turns[3:3] = [
                "Caroline: Did you go camping with the kids this summer?",
                "Melanie: Yes! We spent a week by Lake Tahoe, sleeping in tents under the pines.",
            ]
        for text in turns:
            when += timedelta(minutes=1)
            items.append(ItemInput(content=text, project="p", session_id=f"s{s}", created_at=when))
        when += timedelta(days=3)
    return items


@pytest.fixture(scope="module")
def onnx() -> Any:
    from session_buddy.adapters.embeddings.onnx import Embeddings

    return Embeddings.from_settings(SessionBuddySettings(), None, None)


def _counting(storage: Storage) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in ("get_items", "keyword_search", "vector_search"):
        method = getattr(storage, name)

        def counted(*a: Any, _m: Callable[..., Any] = method, _n: str = name, **k: Any) -> Any:
            counts[_n] += 1
            return _m(*a, **k)

        setattr(storage, name, counted)
    return counts


async def test_refined_search_keeps_the_exact_top_hit_and_lifts_the_reply(
    duckdb_store: Storage, onnx: Any
) -> None:
    plain = SessionBuddySettings(
        search=SearchSettings(prf_terms=0, session_smoothing=0.0, reply_lift=0.0)
    )
    no_lift = SessionBuddySettings(search=SearchSettings(reply_lift=0.0))
    refined = SessionBuddySettings()  # the defaults refine
    assert refined.search.prf_terms > 0 and refined.search.session_smoothing > 0
    assert refined.search.reply_lift > 0
    await MemoryService(duckdb_store, onnx, plain).store(_conversation())
    reply = "Melanie: Yes! We spent a week"
    results = {}
    for name, settings in (("plain", plain), ("no_lift", no_lift), ("refined", refined)):
        service = MemoryService(duckdb_store, onnx, settings)
        for query in ("Did you go camping with the kids this summer?", "Where did Melanie camp?"):
            response = await service.search(query, projects=["p"], limit=5)
            results[name, query] = [h.content for h in response.hits]
    exact = "Caroline: Did you go camping with the kids this summer?"
    # the turn that is the query word for word stays first under feedback and smoothing
    assert results["plain", exact[10:]][0] == exact
    assert results["no_lift", exact[10:]][0] == exact
    # ... and as it asks, its reply (the answer) comes first with the defaults, it second
    assert results["refined", exact[10:]][:2] == [results["no_lift", exact[10:]][1], exact]
    # the reply (few words of the question) climbs: next to its question, then above it
    for query in (exact[10:], "Where did Melanie camp?"):
        ranks = {
            name: next(i for i, c in enumerate(results[name, query]) if c.startswith(reply))
            for name in ("plain", "no_lift", "refined")
        }
        assert ranks["refined"] <= ranks["no_lift"] <= ranks["plain"]
        assert ranks["refined"] == 0
    assert results["no_lift", exact[10:]][1].startswith(reply)

    counts = _counting(duckdb_store)
    response = await MemoryService(duckdb_store, onnx, refined).search(
        "camping at the lake", limit=5
    )
    assert response.mode == "hybrid" and response.hits
    # one fetch of the best fused hits (the page comes from it), the feedback query, vectors
    assert counts == Counter(get_items=1, keyword_search=2, vector_search=1)


async def test_a_when_question_finds_the_turn_that_says_when(
    duckdb_store: Storage, onnx: Any
) -> None:
    plain = SessionBuddySettings(search=SearchSettings(temporal_boost=0.0))
    default = SessionBuddySettings()
    assert default.search.temporal_boost > 0
    items = _conversation()
    items += [
        ItemInput(
            content=text,
            project="p",
            session_id="s9",
            created_at=T0 + timedelta(days=30, minutes=i),
        )
        for i, text in enumerate(
            [
                "Caroline: The pottery class makes lovely bowls, pottery is my thing.",
                "Melanie: I took my first pottery class last Thursday, so much fun!",
            ]
        )
    ]
    await MemoryService(duckdb_store, onnx, plain).store(items)
    query = "When did Melanie take a pottery class?"
    found = {}
    for name, settings in (("plain", plain), ("default", default)):
        response = await MemoryService(duckdb_store, onnx, settings).search(
            query, projects=["p"], limit=5
        )
        found[name] = [h.content for h in response.hits]
    said_when = "Melanie: I took my first pottery class last Thursday, so much fun!"
    assert found["default"][0] == said_when
    assert found["plain"].index(said_when) >= found["default"].index(said_when)
    # a question that is not about when is left as it is
    exact = "Caroline: Did you go camping with the kids this summer?"
    pages = [
        [
            (h.id, h.score)
            for h in (
                await MemoryService(duckdb_store, onnx, settings).search(
                    exact[10:], projects=["p"], limit=5
                )
            ).hits
        ]
        for settings in (plain, default)
    ]
    assert pages[0] == pages[1] and len(pages[0]) == 5


async def test_a_question_lifts_the_turn_that_answers_it_not_a_tool_output(
    duckdb_store: Storage, onnx: Any
) -> None:
    at = T0 + timedelta(days=60)
    turns = [
        ("user", "Why does the CI job fail on arm64?"),
        ("tool", "[tool_result Bash] the arm64 job: exit code 1"),
        ("assistant", "No numpy wheel is built for that platform; pinning 1.26 fixed it."),
    ]
    items = _conversation() + [
        ItemInput(
            content=text,
            project="p",
            session_id="ci",
            role=role,
            created_at=at + timedelta(minutes=i),
        )
        for i, (role, text) in enumerate(turns)
    ]
    await MemoryService(duckdb_store, onnx, SessionBuddySettings()).store(items)
    found = {}
    for lift in (0.0, 0.4):
        settings = SessionBuddySettings(search=SearchSettings(reply_lift=lift))
        response = await MemoryService(duckdb_store, onnx, settings).search(
            "why does the CI job fail on arm64", projects=["p"], limit=5
        )
        found[lift] = [h.content for h in response.hits]
    answer, tool = turns[2][1], turns[1][1]
    assert found[0.0][0] == turns[0][1]  # the question matches the query
    # its answer (few of the query's words) climbs right behind it; the tool output, next
    # in time, is no reply and is not lifted
    assert found[0.4][:2] == [turns[0][1], answer]
    assert answer not in found[0.0][:2]
    assert tool not in found[0.4][:2]
