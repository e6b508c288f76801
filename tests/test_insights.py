"""Insight capture: extraction from assistant prose, dedup across sessions and restarts, and
the search_insights / insights_statistics tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from session_buddy import di
from session_buddy.adapters.storage._base import ItemFilter, StorageBase
from session_buddy.core.capture import CaptureService
from session_buddy.core.insights import (
    HASH_COLLECTION,
    InsightExtractor,
    confidence_of,
    insight_hash,
    topic_tags,
)
from session_buddy.settings import load_settings
from tests.claude_fixtures import BAR, INSIGHT_CLOSE, INSIGHT_OPEN, Transcript, insight, project_dir

# -- extraction --------------------------------------------------------------------------------


def test_blocks_with_and_without_backticks() -> None:
    text = (
        "Let me explain.\n\n"
        + insight("Point one about `SearchIndex.add`.", "Point two.")
        + "\n\nSome prose.\n\n"
        + insight("Plain markers work too.", backticks=False)
        + "\nEnd."
    )
    found = InsightExtractor().feed(text)
    assert [b.text for b in found] == [
        "- Point one about `SearchIndex.add`.\n- Point two.",
        "- Plain markers work too.",
    ]
    assert all(b.segments == 1 for b in found)


def test_markers_inside_code_fences_are_not_insights() -> None:
    text = "\n".join(
        [
            "The output style prints this:",
            "```text",
            INSIGHT_OPEN,
            "- not a real insight, an example in a code block",
            INSIGHT_CLOSE,
            "```",
            "~~~",
            "★ Insight ─────────────",
            "also an example",
            BAR,
            "~~~",
            "Inline mention of `★ Insight ─────` in a sentence is not an opening line either.",
        ]
    )
    assert InsightExtractor().feed(text) == []


def test_a_fence_inside_an_insight_does_not_close_it() -> None:
    text = "\n".join(
        [
            INSIGHT_OPEN,
            "Use this pattern:",
            "```python",
            BAR,
            "```",
            "- and that's it",
            INSIGHT_CLOSE,
        ]
    )
    (block,) = InsightExtractor().feed(text)
    assert block.text == "Use this pattern:\n```python\n" + BAR + "\n```\n- and that's it"


def test_an_insight_split_across_text_blocks_is_reassembled() -> None:
    extractor = InsightExtractor()
    assert (
        extractor.feed("Intro.\n" + INSIGHT_OPEN + "\n- First half of the point", {"line": 7}) == []
    )
    assert extractor.open
    state = extractor.state()  # saved with the import state, restored in a new process
    resumed = InsightExtractor(state)
    (block,) = resumed.feed("- second half.\n" + INSIGHT_CLOSE + "\nAfter.", {"line": 8})
    assert block.text == "- First half of the point\n- second half."
    assert block.segments == 2 and block.context == {"line": 7}
    assert not resumed.open and resumed.state() is None


def test_a_person_speaking_or_a_runaway_block_drops_the_open_insight() -> None:
    extractor = InsightExtractor()
    extractor.feed(INSIGHT_OPEN + "\n- dangling")
    extractor.interrupt()  # the user said something: the block never closed
    assert extractor.feed("- text\n" + INSIGHT_CLOSE) == []
    runaway = InsightExtractor()
    assert runaway.feed(INSIGHT_OPEN + "\n" + "line\n" * 200 + INSIGHT_CLOSE) == []
    reopened = InsightExtractor().feed(
        INSIGHT_OPEN + "\nlost\n" + INSIGHT_OPEN + "\n- kept\n" + INSIGHT_CLOSE
    )
    assert [b.text for b in reopened] == ["- kept"]


def test_hash_tags_and_confidence() -> None:
    a = "- Use `asyncio.to_thread` for **DuckDB** calls.\n- It keeps   the loop free."
    b = "* use asyncio.to_thread for DuckDB calls.\n* it keeps the loop free."
    assert insight_hash(a) == insight_hash(b)
    assert insight_hash(a) != insight_hash("- Use threads for DuckDB calls.")
    tags = topic_tags(
        "`EmbeddingCache.get` misses when the tokenizer normalises text; the tokenizer and the "
        "cache must agree on normalisation. See session_buddy/adapters/embeddings/onnx.py."
    )
    assert tags[0] == "embeddingcache.get" and "tokenizer" in tags and len(tags) <= 5
    assert "the" not in tags and "and" not in tags
    assert confidence_of(a) > confidence_of("ok") and 0 < confidence_of("ok") < 0.5
    assert confidence_of(a, segments=2) < confidence_of(a)


# -- capture through the import --------------------------------------------------------------


@pytest.fixture
async def capture(lite_settings: Any) -> AsyncIterator[CaptureService]:
    di.configure(lite_settings)
    await di.startup()
    yield di.get(CaptureService)
    await di.shutdown()


async def insights() -> list[Any]:
    return await di.get(StorageBase).list_items(ItemFilter(kinds=["insight"]), limit=1000)


SHARED = (
    "DuckDB allows one writer process: open it once and share the connection.",
    "Checkpoint on close to empty the WAL.",
)


def two_sessions(projects: Path) -> tuple[Transcript, Transcript]:
    """Two sessions of the same project with the same insight, plus decoys that must not be
    taken: the marker in a tool result, in a code fence, and in user text."""
    one = Transcript(cwd="/home/dev/work/ledger")
    one.user("Why do two workers deadlock on the database?")
    one.assistant("Found it.\n\n" + insight(*SHARED))
    tool = one.tool_use("Read", file_path="/home/dev/work/ledger/docs/style.md")
    one.tool_result(
        tool, "Format:\n" + insight("This is documentation quoted by a tool, not an insight.")
    )
    one.assistant(
        "An example of the format:\n```markdown\n"
        + insight("Fenced example, not an insight.")
        + "\n```"
    )
    one.user("I pasted this myself:\n" + insight("User text is not an insight."))
    two = Transcript(cwd="/home/dev/work/ledger")
    two.user("Remind me how we handle the database again?")
    two.assistant("Same as before.\n" + insight(*SHARED, backticks=False))
    two.assistant(
        "One more.\n"
        + INSIGHT_OPEN
        + "\n- An insight written across two content blocks"  # split across two transcript lines
    )
    two.assistant("- still counts as one insight.\n" + INSIGHT_CLOSE)
    for t in (one, two):
        t.write(project_dir(projects, t.cwd) / f"{t.session_id}.jsonl")
    return one, two


async def test_insights_from_transcripts_deduplicated_across_sessions(
    capture: CaptureService, tmp_path: Path
) -> None:
    projects = tmp_path / "projects"
    one, two = two_sessions(projects)
    report = await capture.import_transcripts(projects)
    assert report.insights == 2 and report.insight_duplicates == 1
    found = await insights()
    texts = sorted(i.content for i in found)
    assert texts == sorted(
        [
            "- " + SHARED[0] + "\n- " + SHARED[1],
            "- An insight written across two content blocks\n- still counts as one insight.",
        ]
    )
    shared = next(i for i in found if "DuckDB" in i.content)
    assert shared.project == "ledger" and shared.session_id in (one.session_id, two.session_id)
    assert "duckdb" in shared.tags and 0 < shared.metadata["confidence"] <= 1
    assert shared.metadata["uuid"] and shared.metadata["transcript"].endswith(".jsonl")
    record = await di.get(StorageBase).get_record(HASH_COLLECTION, insight_hash(shared.content))
    assert record is not None and record.data["item_id"] == shared.id
    assert sorted(record.data["sessions"]) == sorted([one.session_id, two.session_id])
    split = next(i for i in found if "two content blocks" in i.content)
    assert split.metadata["segments"] == 2


async def test_no_duplicate_insights_after_a_restart_and_reimport(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    two_sessions(projects)
    settings = load_settings(data_dir=tmp_path / "data", adapters={"storage": "duckdb"}).settings
    for round_ in range(2):
        di.configure(settings)
        await di.startup()
        try:
            service = di.get(CaptureService)
            if round_ == 1:  # forget the offsets: every line is read again
                storage = di.get(StorageBase)
                for record in await storage.list_records("transcripts"):
                    await storage.delete_record("transcripts", record.id)
            report = await service.import_transcripts(projects)
            assert report.insights == (2 if round_ == 0 else 0)
            assert report.insight_duplicates == (1 if round_ == 0 else 3)
            assert len(await insights()) == 2
        finally:
            await di.shutdown()
            di.reset()


async def test_search_insights_and_statistics_tools(lite_settings: Any, tmp_path: Path) -> None:
    from fastmcp import Client

    from session_buddy.server.app import create_server

    projects = tmp_path / "projects"
    two_sessions(projects)
    other = Transcript(cwd="/home/dev/work/frontend")
    other.clock = other.clock.replace(day=20)
    other.assistant(
        insight(
            "React effects run twice in StrictMode in development.",
            "Make `useEffect` cleanups idempotent.",
        )
    )
    other.write(project_dir(projects, other.cwd) / f"{other.session_id}.jsonl")
    async with Client(create_server(lite_settings)) as client:
        await client.call_tool("index_transcripts", {"path": str(projects)})
        listed = (await client.call_tool("search_insights", {"query": "*"})).structured_content
        assert listed is not None and listed["count"] == 3
        assert "StrictMode" in listed["insights"][0]["content"]  # newest first
        assert all(0 < i["confidence"] <= 1 and i["tags"] for i in listed["insights"])
        scoped = (
            await client.call_tool("search_insights", {"query": "*", "project": "ledger"})
        ).structured_content
        assert scoped is not None and scoped["count"] == 2
        hits = (
            await client.call_tool(
                "search_insights", {"query": "single writer process database lock"}
            )
        ).structured_content
        assert (
            hits is not None
            and "DuckDB" in hits["insights"][0]["content"]
            and hits["insights"][0]["score"] > 0
        )
        stats = (await client.call_tool("insights_statistics", {})).structured_content
        assert stats is not None and stats["total"] == 3
        assert stats["by_project"] == {"ledger": 2, "frontend": 1}
        assert stats["by_day"] == {"2025-09-20": 1, "2025-09-14": 2}
        assert stats["by_topic"].get("duckdb") == 1
        bad = await client.call_tool("search_insights", {"query": "  "}, raise_on_error=False)
        assert bad.is_error and "query must not be empty" in str(bad.content[0])
