"""Whose session is it: the owner of a session record, and whom the access rule lets see it.

A session belongs to the user who opened it (``SessionState.owner``: the acting user of
``create_session`` or ``start``; the install's own user for a session a Claude Code hook
opened). A session stored without an owner (before sessions had one) belongs to the install's
own user, as an item or an error record without an author does (:func:`~session_buddy.core.
access.own_authors`).

With access control on (:meth:`MemoryService.access` is not None) a caller sees only their own
sessions: another user's session answers exactly like an unknown id. Without it (a library
without users), every session is visible. Sessions are not shared with teams.
"""

from __future__ import annotations

from session_buddy.adapters.storage._base import Access
from session_buddy.core.memory import MemoryService
from session_buddy.core.sessions.state import SessionState
from session_buddy.core.users import acting_user, local_user

#: the owners a caller may see: None for everyone (no access control)
Mine = frozenset[str | None] | None


class SessionOwners:
    def __init__(self, memory: MemoryService) -> None:
        self.memory = memory

    def creator(self) -> str:
        """The owner of a session opened now: the acting user."""
        return acting_user(self.memory.settings)

    def local(self) -> str:
        """The install's own user (the owner of hook-opened sessions)."""
        return local_user(self.memory.settings)

    def mine(self) -> Mine:
        """The ``owner`` values of the sessions the acting user may see (None: all): their
        own authors; sessions are not shared, so the teams' shares are not read."""
        visibility = self.memory.visibility
        return None if visibility is None else visibility.authors()

    async def access_of(self, state: SessionState) -> Access | None:
        """What the session's owner may see (None: everything): the messages and reflections
        the session's own checkpoints and handoff count, whoever applies a hook event."""
        visibility = self.memory.visibility
        if visibility is None:
            return None
        return await visibility.access(state.owner or self.local())


def own_access(access: Access | None) -> Access | None:
    """``access`` without what teams share: the items the user owns (what they may delete)."""
    return None if access is None else Access(access.authors)
