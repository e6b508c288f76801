"""The memory service over real DuckDB files and the real ONNX model (all-MiniLM-L6-v2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from session_buddy.adapters.embeddings._base import EmbeddingsBase, EmbeddingState
from session_buddy.adapters.storage.duckdb import Storage
from session_buddy.core.memory import ItemInput, MemoryService
from session_buddy.errors import DimensionMismatch, EmbeddingError, NotFound, ValidationError
from session_buddy.settings import SearchSettings, SessionBuddySettings

NOTES = [
    "We chose PostgreSQL over MongoDB because orders and payments need transactions.",
    "The login page crashed with ERR_CONN_4021 when the Redis cache was unreachable.",
    "Use pytest fixtures with tmp_path for filesystem tests instead of writing to /tmp.",
    "The deploy script pushes the docker image to the registry and restarts the kubernetes pods.",
    "My cat likes to sleep on the keyboard in the afternoon.",
    "Refactored the authentication middleware to validate JWT tokens before routing.",
]


class NoEmbeddings(EmbeddingsBase):
    """Stands in for the ``none`` adapter when it is not importable."""

    name = "none"
    available = False
    model_id = "none"
    dimension = 384
    state: EmbeddingState = "disabled"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbeddingError("embeddings are disabled (adapter none)")


def none_embeddings(settings: SessionBuddySettings) -> EmbeddingsBase:
    try:
        from session_buddy.adapters.embeddings.none import Embeddings  # type: ignore[import-not-found]
    except ImportError:
        return NoEmbeddings()
    made: EmbeddingsBase = (
        Embeddings.from_settings(settings, None, None)
        if hasattr(Embeddings, "from_settings")
        else Embeddings()
    )
    return made


class OtherModel(NoEmbeddings):
    """A different vector space of the same dimension (to test the mismatch policy)."""

    name = "other"
    available = True
    model_id = "some-other-model"
    state: EmbeddingState = "ready"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        v = rng.standard_normal((len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def onnx() -> Any:
    from session_buddy.adapters.embeddings.onnx import Embeddings

    return Embeddings.from_settings(SessionBuddySettings(), None, None)


@pytest.fixture
def settings() -> SessionBuddySettings:
    return SessionBuddySettings()


@pytest.fixture
async def service(tmp_path: Path, onnx: Any, settings: SessionBuddySettings) -> Any:
    storage = Storage.from_settings(settings, _paths(tmp_path))
    await storage.initialize()
    svc = MemoryService(storage, onnx, settings)
    yield svc
    await storage.close()


def _paths(tmp_path: Path) -> Any:
    from session_buddy.paths import SessionPaths

    return SessionPaths.from_settings(tmp_path / "data")


async def _store_notes(svc: MemoryService, **kw: Any) -> list[str]:
    results = await svc.store([ItemInput(content=n, kind="reflection", **kw) for n in NOTES])
    return [r.id for r in results]


async def test_paraphrase_without_shared_keywords_is_found_semantically(
    service: MemoryService,
) -> None:
    ids = await _store_notes(service)
    query = "application failed because it could not reach the in-memory key value store"
    for mode in ("semantic", "hybrid"):
        response = await service.search(query, mode=mode, limit=3)  # type: ignore[arg-type]
        assert response.mode == mode and response.degraded is None
        assert response.hits[0].id == ids[1], mode
        assert response.hits[0].semantic_score is not None
        assert response.confidence in ("low", "medium", "high")
    response = await service.search("which database did we pick for storing orders and why")
    assert response.hits[0].id == ids[0]
    assert response.hits[0].confidence in ("medium", "high")


async def test_exact_identifier_is_found_by_keyword(service: MemoryService) -> None:
    ids = await _store_notes(service)
    await service.store([ItemInput(content="Retry budget for ERR_CONN_4022 is three attempts")])
    for mode in ("keyword", "hybrid"):
        response = await service.search("ERR_CONN_4021", mode=mode)  # type: ignore[arg-type]
        assert response.hits[0].id == ids[1]
        assert response.hits[0].keyword_score is not None
        assert response.hits[0].confidence == "high"
        assert response.hits[0].score == pytest.approx(1.0) or mode == "hybrid"


async def test_stored_item_is_searchable_immediately(service: MemoryService) -> None:
    await _store_notes(service)
    (r,) = await service.store([ItemInput(content="The flux capacitor needs 1.21 gigawatts")])
    assert r.created and r.embedded
    for mode in ("keyword", "semantic", "hybrid"):
        response = await service.search("flux capacitor power", mode=mode)  # type: ignore[arg-type]
        assert response.hits[0].id == r.id


async def test_keyword_fallback_with_none_embeddings(
    tmp_path: Path, settings: SessionBuddySettings
) -> None:
    storage = Storage.from_settings(settings, _paths(tmp_path))
    await storage.initialize()
    try:
        svc = MemoryService(storage, none_embeddings(settings), settings)
        results = await svc.store([ItemInput(content=n) for n in NOTES])
        assert all(r.created and not r.embedded for r in results)
        for mode in ("hybrid", "semantic"):
            response = await svc.search("docker kubernetes deploy", mode=mode)  # type: ignore[arg-type]
            assert response.mode == "keyword"
            assert response.degraded and "none" in response.degraded
            assert response.hits and response.hits[0].id == results[3].id
        response = await svc.search("docker", mode="keyword")
        assert response.degraded is None
        stats = await svc.stats()
        assert stats["semantic_search"] is False and stats["embedded"] == 0
    finally:
        await storage.close()


async def test_unrelated_query_has_no_or_low_confidence(service: MemoryService) -> None:
    await _store_notes(service)
    for query in ("recipe for chocolate cake with strawberries", "quantum entanglement of photons"):
        response = await service.search(query)
        assert response.confidence in ("none", "low"), (query, response.hits[0])
    response = await service.search("football results from last weekend")
    assert response.confidence == "none"
    response = await service.search("zzqx unknownword", mode="keyword")
    assert response.hits == [] and response.confidence == "none"


async def test_filters_pagination_and_snippets(
    service: MemoryService, settings: SessionBuddySettings
) -> None:
    old = datetime(2023, 1, 1, tzinfo=UTC)
    await service.store(
        [
            ItemInput(
                content=f"Note {i} about caching strategy {i}",
                project="a",
                created_at=old + timedelta(days=i),
            )
            for i in range(15)
        ]
    )
    await service.store(
        [ItemInput(content="caching in project b", project="b", kind="reflection", tags=["x"])]
    )
    page1 = await service.search("caching", projects=["a"], limit=10)
    page2 = await service.search("caching", projects=["a"], limit=10, offset=10)
    assert len(page1.hits) == 10 and page1.has_more
    assert len(page2.hits) == 5 and not page2.has_more
    assert {h.project for h in page1.hits + page2.hits} == {"a"}
    assert not {h.id for h in page1.hits} & {h.id for h in page2.hits}
    only_b = await service.search("caching", kinds=["reflection"], tags=["x"])
    assert [h.project for h in only_b.hits] == ["b"]
    recent = await service.search(
        "caching", after=old + timedelta(days=10), before=old + timedelta(days=12)
    )
    assert sorted(h.content for h in recent.hits) == [
        "Note 10 about caching strategy 10",
        "Note 11 about caching strategy 11",
    ]
    long = "word " * 1000
    (r,) = await service.store([ItemInput(content=long + "needle")])
    hit = (await service.search("needle", mode="keyword")).hits[0]
    assert hit.id == r.id and hit.truncated and hit.content_length == len(long) + 6
    assert len(hit.content) == settings.search.snippet_chars
    listed = await service.list_recent(projects=["a"], after=old + timedelta(days=13))
    assert [i.content for i in listed] == [
        "Note 14 about caching strategy 14",
        "Note 13 about caching strategy 13",
    ]


async def test_time_decay_prefers_recent(tmp_path: Path, onnx: Any) -> None:
    settings = SessionBuddySettings(search=SearchSettings(decay_half_life_days=30))
    storage = Storage.from_settings(settings, _paths(tmp_path))
    await storage.initialize()
    try:
        svc = MemoryService(storage, onnx, settings)
        now = datetime.now(UTC)
        _old, new = await svc.store(
            [
                ItemInput(
                    content="The cache TTL is five minutes", created_at=now - timedelta(days=365)
                ),
                ItemInput(content="The cache TTL is ten minutes now", created_at=now),
            ]
        )
        response = await svc.search("cache TTL")
        assert response.hits[0].id == new.id
        assert response.hits[1].score < 0.01
    finally:
        await storage.close()


async def test_validation_dedup_and_item_operations(service: MemoryService) -> None:
    with pytest.raises(ValidationError, match="kind"):
        await service.store([ItemInput(content="x", kind="note")])
    with pytest.raises(ValidationError, match="role"):
        await service.store([ItemInput(content="x", role="robot")])
    with pytest.raises(ValidationError, match="empty"):
        await service.store([ItemInput(content="   ")])
    with pytest.raises(ValidationError, match="tags"):
        await service.store([ItemInput(content="x", tags="a,b")])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="surrogate"):
        await service.store([ItemInput(content="bad \udc80")])
    with pytest.raises(ValidationError, match="query"):
        await service.search("  ")

    first, dup, other = await service.store(
        [
            ItemInput(content="Remember the milk", kind="reflection", tags=["todo"]),
            ItemInput(content="Remember  the milk", kind="reflection"),
            ItemInput(content="Remember the milk", kind="reflection", project="p"),
        ]
    )
    assert first.created and not dup.created and dup.id == first.id and other.created
    assert (await service.store([ItemInput(content="Remember the milk", kind="reflection")]))[
        0
    ].id == first.id

    item = await service.get(first.id)
    assert item.content == "Remember the milk" and item.tags == ["todo"]
    updated = await service.update(
        first.id, content="Buy oat milk at the grocery store", tags=["shopping"]
    )
    assert (
        updated.content.startswith("Buy oat")
        and updated.tags == ["shopping"]
        and updated.has_embedding
    )
    hits = (await service.search("purchase dairy alternative", mode="semantic", limit=1)).hits
    assert hits[0].id == first.id
    assert (await service.update(first.id, tags=["t2"])).tags == ["t2"]
    await service.delete(first.id)
    for call in (
        service.get(first.id),
        service.delete(first.id),
        service.update(first.id, tags=[]),
    ):
        with pytest.raises(NotFound):
            await call


async def test_stats(service: MemoryService) -> None:
    await _store_notes(service, project="p")
    await service.store([ItemInput(content="a conversation turn", role="user")])
    stats = await service.stats()
    assert stats["total"] == 7 and stats["embedded"] == 7
    assert stats["by_kind"] == {"reflection": 6, "conversation": 1}
    assert stats["by_project"] == {"p": 6, "": 1}
    assert stats["embedding_model"] == service.embeddings.model_id
    assert stats["semantic_search"] is True
    scoped = await service.stats("p")
    assert scoped["total"] == 6 and scoped["by_kind"] == {"reflection": 6}


async def test_model_mismatch_is_reported_not_mixed(
    tmp_path: Path, onnx: Any, settings: SessionBuddySettings
) -> None:
    storage = Storage.from_settings(settings, _paths(tmp_path))
    await storage.initialize()
    svc = MemoryService(storage, onnx, settings)
    await _store_notes(svc)
    await storage.close()

    storage = Storage.from_settings(settings, _paths(tmp_path))
    await storage.initialize()
    try:
        other = MemoryService(storage, OtherModel(), settings)
        response = await other.search("docker deploy")
        assert response.mode == "keyword" and response.degraded
        assert onnx.model_id in response.degraded and "re-embed" in response.degraded
        assert response.hits
        (r,) = await other.store([ItemInput(content="stored while the model differs")])
        assert r.created and not r.embedded
        with pytest.raises(DimensionMismatch):
            await other.check_vector_space()
        assert (await other.stats())["semantic_search"] is False
        # the way out: re-embed with the new model
        assert await other.reembed() == 7
        response = await other.search("docker deploy")
        assert response.mode == "hybrid" and response.degraded is None
        assert (await storage.stats()).embedded == 7
    finally:
        await storage.close()


async def test_store_built_for_another_dimension_keeps_text_and_degrades(
    tmp_path: Path, onnx: Any, settings: SessionBuddySettings
) -> None:
    small = Storage(tmp_path / "small.duckdb", dimension=8)
    await small.initialize()
    await small.close()
    storage = Storage(tmp_path / "small.duckdb", dimension=settings.embeddings.dimension)
    await storage.initialize()  # the file's 8-dim columns win over the setting
    try:
        svc = MemoryService(storage, onnx, settings)
        (r,) = await svc.store([ItemInput(content="kept as text although vectors cannot be")])
        assert r.created and not r.embedded
        response = await svc.search("kept as text")
        assert response.mode == "keyword" and response.degraded
        assert response.hits[0].id == r.id
    finally:
        await storage.close()
