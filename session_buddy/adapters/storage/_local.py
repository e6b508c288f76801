"""What the in-process backends (memory, DuckDB) share: the search index kept in step with
every write (PostgreSQL has no index in the process; its server ranks)."""

from __future__ import annotations

from session_buddy.adapters.storage._base import ItemChange, MemoryItem
from session_buddy.search import IndexEntry, SearchIndex


def sync_index(index: SearchIndex, updated: MemoryItem, change: ItemChange) -> None:
    """Bring ``index`` up to date with an item ``update_item`` has just written: a new
    content replaces its entry (terms and vector); otherwise only what changed is set."""
    if change.content is not None:
        index.add([IndexEntry.of(updated, change.embedding)])  # replaces the old row
        return
    if change.tags is not None:
        index.set_tags(updated.id, updated.tags)
    if change.embedding is not None:
        index.set_vector(updated.id, change.embedding)
