"""The memory service: store conversations and reflections, search them (hybrid).

No MCP in here: tools call this, this calls the storage and embeddings adapters.

**Search.** Every search runs through :mod:`session_buddy.search.pipeline`, which this
service owns: it gives the pipeline the query's vector (:meth:`MemoryService.query_vector`)
and the access rule (:class:`~session_buddy.core.access.Visibility`: what the acting user
may see, applied inside the storage's rankers). ``hybrid`` fuses the keyword (BM25) and
vector (cosine) rankings (:mod:`session_buddy.search.hybrid` documents the 0..1 score, the
time decay and the ``confidence`` rule). ``semantic`` and ``keyword`` use one ranker. When
vectors cannot be used (embeddings adapter ``none`` or failed, or a model mismatch)
``semantic`` and ``hybrid`` fall back to ``keyword`` and :attr:`SearchResponse.degraded`
says why; a search never comes back empty merely because a component is missing. A model
that is still loading is waited for (embedding the query loads it).

**Vector space.** The first vectors stored record the embedding adapter's ``model_id`` and
``dimension`` in the storage's meta table (``embedding_model``, ``embedding_dimension``).
When the configured adapter later disagrees, vectors are never mixed: new items are stored
without a vector (``StoreResult.embedded = False``, nothing is lost), semantic search is
off (keyword fallback, ``degraded`` explains), ``stats()`` reports the mismatch, and
:meth:`MemoryService.check_vector_space` raises :class:`DimensionMismatch` for health checks.
The fix is to configure the recorded model again, or to re-embed the store with the new one
(:meth:`MemoryService.reembed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from session_buddy.adapters.embeddings._base import EmbeddingsBase
from session_buddy.adapters.storage._base import (
    KINDS,
    Access,
    ItemFilter,
    MemoryItem,
    NewItem,
    StorageBase,
    is_dialogue,
    utcnow,
    validate_item,
)
from session_buddy.core.access import Visibility
from session_buddy.core.telemetry import Pending, span
from session_buddy.core.users import MACHINE_AUTHORS, acting_user, owner_of
from session_buddy.errors import (
    AuthError,
    DimensionMismatch,
    EmbeddingError,
    NotFound,
    ValidationError,
)
from session_buddy.search.pipeline import (
    Confidence,
    Pipeline,
    SearchHit,
    SearchMode,
    SearchRequest,
    SearchResponse,
)
from session_buddy.settings import SessionBuddySettings

__all__ = [
    "Confidence",
    "DeletedItem",
    "ItemInput",
    "MemoryService",
    "SearchHit",
    "SearchMode",
    "SearchResponse",
    "StoreResult",
]

log = logging.getLogger(__name__)

META_MODEL = "embedding_model"
META_DIMENSION = "embedding_dimension"


@dataclass
class ItemInput:
    """What a caller gives to store (validated by the service)."""

    content: str
    kind: str = "conversation"
    project: str | None = None
    session_id: str | None = None
    role: str | None = None
    tags: list[str] = field(default_factory=list)
    author: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class DeletedItem:
    """What :meth:`MemoryService.delete` removed: the item and its vector (None without
    one), all :meth:`MemoryService.restore` needs to put it back as it was (undo)."""

    item: MemoryItem
    vector: np.ndarray | None = None


@dataclass
class StoreResult:
    id: str
    created: bool  # False: an identical item existed (same kind, project, content)
    embedded: bool  # False: stored without a vector (embeddings unavailable)


class ItemGraph(Protocol):
    """What the memory service tells the knowledge graph (:mod:`session_buddy.core.graph`)
    and asks of it."""

    async def index_items(self, items: Sequence[tuple[str, NewItem | MemoryItem]]) -> None:
        """Link new (or changed) items to the entities they mention."""
        ...

    async def expand(self, request: SearchRequest, hits: list[SearchHit]) -> list[SearchHit]:
        """The memories about entities one hop from a search's (``expand="graph"``)."""
        ...


async def _put_back(storage: StorageBase, item: MemoryItem, vector: np.ndarray | None) -> str:
    """Store a deleted item again (its id): exactly where the storage imports, else anew."""
    try:
        await storage.import_items([(item, vector)])
        return item.id
    except NotImplementedError:  # the in-memory storage: the same item under a new id
        names = ("project", "session_id", "role", "tags", "author", "metadata", "created_at")
        fields = {k: getattr(item, k) for k in names}
        new = NewItem(item.kind, item.content, **fields, embedding=vector)
        return (await storage.add_items([new]))[0].id


class MemoryService:
    def __init__(
        self,
        storage: StorageBase,
        embeddings: EmbeddingsBase,
        settings: SessionBuddySettings,
        visibility: Visibility | None = None,
    ) -> None:
        self.storage = storage
        self.embeddings = embeddings
        self.settings = settings
        #: None: not checked yet; "": vectors usable; else why they are not
        self._space_problem: str | None = None
        #: access control: who may see what (a user sees their own items and those shared
        #: with their teams). None lets everything through (library use without teams).
        self.visibility = visibility
        self.pipeline = Pipeline(storage, self, settings.search)
        #: the knowledge graph, told of every stored item (set by the graph service)
        self.graph: ItemGraph | None = None

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> MemoryService:
        storage, settings = resolve(StorageBase), resolve(SessionBuddySettings)
        return cls(storage, resolve(EmbeddingsBase), settings, Visibility(storage, settings))

    # -- vector space -------------------------------------------------------------------

    def _unavailable(self) -> str | None:
        """Why the embeddings adapter cannot give vectors at all, or None."""
        emb = self.embeddings
        if emb.state == "disabled" or not emb.available:
            if emb.state == "failed":
                return f"embeddings failed to load ({emb.error or 'unknown error'})"
            return f"embeddings adapter {emb.name or 'none'!r} gives no vectors"
        return None

    async def _vector_space(self) -> str:
        """An empty string when the adapter's vectors may be stored and searched with the
        stored ones, else the reason they may not. Records the model on first use."""
        if self._space_problem is not None:
            return self._space_problem
        model = self.embeddings.model_id
        dim = self.embeddings.dimension
        stored_model = await self.storage.get_meta(META_MODEL)
        stored_dim = await self.storage.get_meta(META_DIMENSION)
        if stored_model is None and stored_dim is None:
            await self.storage.set_meta(META_MODEL, model)
            await self.storage.set_meta(META_DIMENSION, str(dim))
            self._space_problem = ""
        elif stored_model == model and stored_dim == str(dim):
            self._space_problem = ""
        else:
            self._space_problem = (
                f"the stored vectors come from {stored_model} ({stored_dim} dims) but the "
                f"configured embeddings are {model} ({dim} dims); vectors are not mixed, so "
                "semantic search is off and new items are stored without vectors. Configure "
                f"{stored_model} again, or re-embed the store with the new model "
                "(MemoryService.reembed)"
            )
            log.warning("Embedding model mismatch: %s", self._space_problem)
        return self._space_problem

    async def check_vector_space(self) -> None:
        """Raise :class:`DimensionMismatch` when stored vectors and the configured model
        disagree (for health checks)."""
        if self._unavailable() is None:
            problem = await self._vector_space()
            if problem:
                raise DimensionMismatch(problem)

    # -- store --------------------------------------------------------------------------

    def _new_item(self, given: ItemInput, position: int) -> NewItem:
        if not isinstance(given, ItemInput):
            raise ValidationError(
                f"item {position}: expected an ItemInput, not {type(given).__name__}"
            )
        if given.kind not in KINDS:
            raise ValidationError(
                f"item {position}: kind must be one of {', '.join(KINDS)}, not {given.kind!r}"
            )
        if not isinstance(given.content, str) or not given.content.strip():
            raise ValidationError(f"item {position}: content is empty; there is nothing to store")
        if not isinstance(given.tags, list):
            raise ValidationError(f"item {position}: tags must be a list of strings")
        metadata = dict(given.metadata or {})
        author = given.author
        if not author or author in MACHINE_AUTHORS:
            # every item records its owner: on a store shared by several machines "no
            # author" would otherwise mean whoever reads it. What captured it stays known.
            if author:
                metadata.setdefault("source", author)
            author = acting_user(self.settings)
        item = NewItem(
            kind=given.kind,
            content=given.content,
            project=given.project or None,
            session_id=given.session_id or None,
            role=given.role,
            tags=list(dict.fromkeys(given.tags)),
            author=author,
            metadata=metadata,
            created_at=given.created_at or utcnow(),
        )
        try:
            validate_item(item, self.settings.storage.max_content_bytes)
        except ValidationError as exc:
            raise ValidationError(f"item {position}: {exc}") from None
        return item

    async def store(self, items: Sequence[ItemInput]) -> list[StoreResult]:
        """Validate every item, embed them in batches, store each batch in one call."""
        new = [self._new_item(given, i) for i, given in enumerate(items)]
        contexts = await self._contexts(new)
        results: list[StoreResult] = []
        batch = max(1, self.settings.embeddings.batch_size) * 8
        for start in range(0, len(new), batch):
            chunk = new[start : start + batch]
            embedded = await self._embed_items(chunk, contexts[start : start + batch])
            try:
                with span(
                    "storage.add_items",
                    items=len(chunk),
                    storage=type(self.storage).__module__.rsplit(".", 1)[-1],
                ):
                    added = await self.storage.add_items(chunk)
            except DimensionMismatch as exc:
                # the store's vectors have another dimension than the model's: keep the
                # text, drop the vectors, and say so from now on
                self._space_problem = f"{exc}"
                log.warning("Storing %d items without vectors: %s", len(chunk), exc)
                for item in chunk:
                    item.embedding = None
                embedded = False
                added = await self.storage.add_items(chunk)
            results.extend(
                StoreResult(id=a.id, created=a.created, embedded=embedded) for a in added
            )
            if self.graph is not None:
                await self.graph.index_items(
                    [(a.id, x) for a, x in zip(added, chunk, strict=True) if a.created]
                )
        return results

    async def _contexts(self, items: Sequence[NewItem | MemoryItem]) -> list[str | None]:
        """The end of the preceding turn of each short conversation turn in its session.

        A turn shorter than ``embeddings.context_max_turn_chars`` is embedded together with
        the last ``embeddings.context_chars`` of the turn before it: replies like "Yes, last
        Tuesday" only make sense with their question. On LoCoMo this raised semantic R@5
        from 33% to 45% (docs/search.md). The stored content and the keyword index are the
        turn alone."""
        limit = self.settings.embeddings.context_chars
        out: list[str | None] = [None] * len(items)
        if limit <= 0:
            return out
        last_in_batch: dict[tuple[str | None, str], NewItem | MemoryItem] = {}
        for index, item in enumerate(items):
            if not is_dialogue(item) or not item.session_id:
                continue
            key = (item.project, item.session_id)
            if len(item.content) < self.settings.embeddings.context_max_turn_chars:
                previous = last_in_batch.get(key)
                if previous is not None and previous.created_at <= item.created_at:
                    out[index] = previous.content[-limit:]
                elif previous is None:
                    stored = await self.storage.list_items(
                        ItemFilter(
                            projects=[item.project] if item.project else None,
                            kinds=["conversation"],
                            session_id=item.session_id,
                            before=item.created_at,
                        ),
                        limit=5,
                        newest_first=True,
                    )
                    before = next((m for m in stored if is_dialogue(m)), None)
                    if before is not None:
                        out[index] = before.content[-limit:]
            last_in_batch[key] = item
        return out

    async def _embed_items(self, items: list[NewItem], contexts: list[str | None]) -> bool:
        """Attach vectors to items; False when they must be stored without."""
        if self._unavailable() is not None:
            return False
        try:
            if await self._vector_space():
                return False
            texts = [
                i.content if c is None else f"{c}\n{i.content}"
                for i, c in zip(items, contexts, strict=True)
            ]
            with Pending.embedding_of(len(texts)), span("embeddings.embed", texts=len(texts)):
                vectors = await self.embeddings.embed(texts)
        except EmbeddingError as exc:
            log.warning("Storing %d items without vectors: %s", len(items), exc)
            return False
        for item, vector in zip(items, vectors, strict=True):
            item.embedding = np.asarray(vector, dtype=np.float32)
        return True

    # -- search -------------------------------------------------------------------------

    async def query_vector(self, query: str) -> tuple[np.ndarray | None, str | None]:
        """The query's vector, or None and why vectors cannot be used (for the pipeline)."""
        reason = self._unavailable()
        if reason is not None:
            return None, reason
        try:
            problem = await self._vector_space()
            if problem:
                return None, problem
            with Pending.embedding_of(1), span("embeddings.embed_query"):
                return await self.embeddings.embed_query(query), None
        except EmbeddingError as exc:
            return None, f"embedding the query failed ({exc})"

    def vectors_refused(self, reason: str) -> None:
        """The storage refused a vector of this model: semantic search is off from now on."""
        self._space_problem = reason

    async def access(self) -> Access | None:
        """What the acting user may see (None: everything, without access control)."""
        return None if self.visibility is None else await self.visibility.access()

    async def search(
        self,
        query: str,
        *,
        projects: list[str] | None = None,
        kinds: list[str] | None = None,
        tags: list[str] | None = None,
        role: str | None = None,
        session_id: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        offset: int = 0,
        expand: Literal["graph"] | None = None,
    ) -> SearchResponse:
        """Hybrid (or semantic, or keyword) search of what the acting user may see, with
        the configured time decay (:mod:`session_buddy.search.pipeline`). ``expand="graph"``
        adds, below the direct hits, memories about entities one hop away (marked ``via``)."""
        if expand not in (None, "graph"):
            raise ValidationError(f"expand must be 'graph' or left out, not {expand!r}")
        flt = ItemFilter(
            projects=list(projects) if projects else None,
            kinds=list(kinds) if kinds else None,
            tags=list(tags) if tags else None,
            role=role,
            session_id=session_id,
            after=after,
            before=before,
        )
        with span("memory.search", mode=mode, limit=limit):
            return await self._search(flt, query, mode, limit, offset, expand)

    async def _search(
        self,
        flt: ItemFilter,
        query: str,
        mode: SearchMode,
        limit: int,
        offset: int,
        expand: Literal["graph"] | None = None,
    ) -> SearchResponse:
        return await self.pipeline.run(
            SearchRequest(
                query,
                flt,
                access=await self.access(),
                mode=mode,
                limit=limit,
                offset=offset,
                half_life_days=self.settings.search.decay_half_life_days,
                expand=self.graph.expand if expand and self.graph is not None else None,
            )
        )

    # -- single items -------------------------------------------------------------------

    async def get(self, item_id: str) -> MemoryItem:
        return await self._visible(await self.storage.get_items([item_id]), item_id)

    async def _visible(self, found: list[MemoryItem], item_id: str) -> MemoryItem:
        # an item the acting user may not see answers exactly like a missing one
        if not found or (
            self.visibility is not None and not await self.visibility.allows(found[0])
        ):
            raise NotFound(f"no memory item with id {item_id!r}")
        return found[0]

    async def get_by_id(self, item_id: str) -> MemoryItem:
        """One item by its id or a short id (the start of one, as compact search answers
        show it); a short id that starts more than one visible item is an error listing
        them."""
        found = await self.storage.get_items([item_id])
        if found:
            return await self._visible(found, item_id)
        ids = await self.storage.ids_with_prefix(item_id, limit=10)
        items = await self.storage.get_items(ids)
        if self.visibility is not None:
            items = [i for i in items if await self.visibility.allows(i)]
        if not items:
            raise NotFound(f"no memory item with id {item_id!r}")
        if len(items) > 1:
            raise ValidationError(
                f"id {item_id!r} starts {len(items)} items ({', '.join(i.id for i in items)}): "
                "give more of the id"
            )
        return items[0]

    def _check_owner(self, item: MemoryItem) -> None:
        if self.visibility is not None and owner_of(item.author, self.settings) != acting_user(
            self.settings
        ):
            raise AuthError(
                f"memory item {item.id!r} belongs to another user: only they can change it"
            )

    async def delete(self, item_id: str) -> DeletedItem:
        """Delete an item the acting user owns; the answer undoes it (:meth:`restore`)."""
        item = await self.get(item_id)
        self._check_owner(item)
        vector = (await self.storage.get_vectors([item_id])).get(item_id)
        if not await self.storage.delete_items([item_id]):
            raise NotFound(f"no memory item with id {item_id!r}")
        return DeletedItem(item, vector)

    async def restore(self, deleted: DeletedItem) -> MemoryItem:
        """Put a deleted item back as it was (id, times, tags, vector): the undo of
        :meth:`delete`, a few seconds after it. Without its vector it is embedded again."""
        item = deleted.item
        self._check_owner(item)
        vector = deleted.vector
        if vector is None and self._unavailable() is None:
            probe = NewItem(kind=item.kind, content=item.content)
            if await self._embed_items([probe], [None]):
                vector = probe.embedding
        restored = await self.get(await _put_back(self.storage, item, vector))
        if self.graph is not None:
            await self.graph.index_items([(restored.id, restored)])
        return restored

    async def update(
        self, item_id: str, *, content: str | None = None, tags: list[str] | None = None
    ) -> MemoryItem:
        if content is None and tags is None:
            return await self.get(item_id)
        if content is not None and (not isinstance(content, str) or not content.strip()):
            raise ValidationError("content is empty; give the new text, or leave content out")
        if tags is not None and (
            not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
        ):
            raise ValidationError("tags must be a list of strings")
        self._check_owner(await self.get(item_id))  # before spending time on the model
        if content is None:
            return await self.storage.update_item(item_id, tags=list(dict.fromkeys(tags or [])))
        updated = await self._update_content(item_id, content, tags)
        if self.graph is not None:
            await self.storage.graph.delete_mentions([item_id])
            await self.graph.index_items([(item_id, updated)])
        return updated

    async def _update_content(
        self, item_id: str, content: str, tags: list[str] | None
    ) -> MemoryItem:
        probe = NewItem(kind="reflection", content=content)
        validate_item(probe, self.settings.storage.max_content_bytes)
        embedding: np.ndarray | None = None
        if await self._embed_items([probe], [None]):
            embedding = probe.embedding
        return await self.storage.update_item(
            item_id,
            content=content,
            tags=list(dict.fromkeys(tags)) if tags is not None else None,
            embedding=embedding,
        )

    async def list_recent(
        self,
        *,
        projects: list[str] | None = None,
        kinds: list[str] | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        tags: list[str] | None = None,
        session_id: str | None = None,
    ) -> list[MemoryItem]:
        """Items the acting user may see in a time span (``after <= created_at < before``),
        newest first; ``tags``: with every one of them; ``session_id``: one session's."""
        if kinds is not None and any(k not in KINDS for k in kinds):
            raise ValidationError(f"kinds must be among {', '.join(KINDS)}, not {kinds!r}")
        flt = ItemFilter(
            projects=list(projects) if projects else None,
            kinds=list(kinds) if kinds else None,
            tags=list(tags) if tags else None,
            session_id=session_id,
            after=after,
            before=before,
            access=await self.access(),
        )
        return await self.storage.list_items(flt, limit=max(1, limit), offset=max(0, offset))

    async def reembed(self, batch_size: int = 256) -> int:
        """Give every item a vector from the configured model (after a change of model);
        returns how many items were embedded. The new model is recorded in meta."""
        return await _reembed(self, batch_size)

    async def stats(self, project: str | None = None) -> dict[str, Any]:
        """Counts by kind and project, embedded count, model, and any vector-space problem
        (the whole store's; one project's: what the acting user may see)."""
        if project is None:
            s = await self.storage.stats()
            total, by_kind, by_project, embedded = s.items, s.by_kind, s.by_project, s.embedded
            stored_model, stored_dim = s.embedding_model, s.embedding_dimension
        else:
            by_kind = await _project_counts(self.storage, project, await self.access())
            total = sum(by_kind.values())
            by_project = {project: total} if total else {}
            embedded = None
            stored_model = await self.storage.get_meta(META_MODEL)
            dim = await self.storage.get_meta(META_DIMENSION)
            stored_dim = int(dim) if dim else None
        problem = self._unavailable()
        if problem is None:
            try:
                problem = await self._vector_space() or None
            except EmbeddingError as exc:
                problem = str(exc)
        return {
            "project": project,
            "total": total,
            "by_kind": by_kind,
            "by_project": by_project,
            "embedded": embedded,
            "embedding_model": stored_model,
            "embedding_dimension": stored_dim,
            "configured_model": None if self._unavailable() else self.embeddings.model_id,
            "semantic_search": problem is None,
            "degraded": problem,
        }


async def _project_counts(
    storage: StorageBase, project: str, access: Access | None
) -> dict[str, int]:
    """One project's item counts by kind, of what ``access`` lets through (as listings)."""
    by_kind: dict[str, int] = {}
    for kind in KINDS:
        flt = ItemFilter(projects=[project], kinds=[kind], access=access)
        if n := await storage.count_items(flt):
            by_kind[kind] = n
    return by_kind


async def _reembed(svc: MemoryService, batch_size: int) -> int:
    """:meth:`MemoryService.reembed`: every item embedded again, in batches."""
    if (reason := svc._unavailable()) is not None:
        raise EmbeddingError(f"cannot re-embed: {reason}")
    total = await svc.storage.count_items(None)
    await svc.storage.set_meta(META_MODEL, svc.embeddings.model_id)
    await svc.storage.set_meta(META_DIMENSION, str(svc.embeddings.dimension))
    svc._space_problem = None
    done = 0
    for offset in range(0, total, batch_size):
        chunk = await svc.storage.list_items(
            ItemFilter(), limit=batch_size, offset=offset, newest_first=False
        )
        contexts = await svc._contexts(chunk)
        vectors = await svc.embeddings.embed(
            [
                i.content if c is None else f"{c}\n{i.content}"
                for i, c in zip(chunk, contexts, strict=True)
            ]
        )
        for item, vector in zip(chunk, vectors, strict=True):
            await svc.storage.update_item(item.id, embedding=vector)
        done += len(chunk)
    return done
