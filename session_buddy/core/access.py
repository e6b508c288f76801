"""Who may see which memory items: the rule every search and lookup obeys.

A user sees their own items (see :func:`~session_buddy.core.users.owner_of`) and the items
shared with a team they are a member of; nothing else. :meth:`Visibility.access` gives that
rule as data (:class:`~session_buddy.adapters.storage._base.Access`: the authors whose items
are the user's, the ids shared with their teams), which the search pipeline hands to the
storage's rankers like a filter. The team records it reads are written by
:class:`~session_buddy.core.teams.TeamService` (which tells it to :meth:`~Visibility.forget`).
"""

from __future__ import annotations

import time

from session_buddy.adapters.storage._base import Access, MemoryItem, Record, StorageBase
from session_buddy.core.users import MACHINE_AUTHORS, acting_user, local_user
from session_buddy.settings import SessionBuddySettings

TEAMS = "teams"
SHARES = "team_shares"
#: how old the cached shared ids of a user may be (writes by another process on the store)
SHARED_TTL_S = 2.0
_ALL = 1_000_000


def own_authors(user: str, settings: SessionBuddySettings) -> frozenset[str | None]:
    """The ``author`` values of the items ``user`` owns: their name, and for the install's
    own user also no author and the machine authors (``owner_of`` reads them so)."""
    authors: set[str | None] = set() if user in MACHINE_AUTHORS else {user}
    if user == local_user(settings):
        authors |= {None, "", *MACHINE_AUTHORS}
    return frozenset(authors)


class Visibility:
    def __init__(self, storage: StorageBase, settings: SessionBuddySettings) -> None:
        self.storage = storage
        self.settings = settings
        self._shared_cache: dict[str, tuple[float, frozenset[str]]] = {}

    def forget(self) -> None:
        """Drop the cached shared ids (a team or a share changed)."""
        self._shared_cache.clear()

    async def teams_of(self, user: str) -> list[Record]:
        """The teams ``user`` is a member of."""
        teams = await self.storage.list_records(TEAMS, limit=_ALL, newest_first=False)
        return [t for t in teams if user in t.data.get("members", [])]

    async def shared_ids(self, user: str) -> frozenset[str]:
        """Ids of the items shared with any team ``user`` belongs to. Every search asks this,
        so it is cached: cleared by this process's own team writes, and at most
        SHARED_TTL_S old for writes by another process on the same store."""
        now = time.monotonic()
        cached = self._shared_cache.get(user)
        if cached is not None and now - cached[0] < SHARED_TTL_S:
            return cached[1]
        ids: set[str] = set()
        for team in await self.teams_of(user):
            shares = await self.storage.list_records(SHARES, project=team.id, limit=_ALL)
            ids.update(r.data["item_id"] for r in shares)
        frozen = frozenset(ids)
        self._shared_cache[user] = (now, frozen)
        return frozen

    def authors(self, user: str | None = None) -> frozenset[str | None]:
        """The ``author`` values of what ``user`` (default the acting user) owns."""
        return own_authors(user or acting_user(self.settings), self.settings)

    async def access(self, user: str | None = None) -> Access:
        """What ``user`` (default the acting user) may see."""
        who = user or acting_user(self.settings)
        return Access(self.authors(who), await self.shared_ids(who))

    async def allows(self, item: MemoryItem, user: str | None = None) -> bool:
        return (await self.access(user)).allows(item.author, item.id)
