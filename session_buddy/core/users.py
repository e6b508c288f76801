"""Who is acting: the identity that access control in the core services checks.

The acting user is, in order:

1. :data:`current_user`, a context variable the HTTP service sets per request to the
   authenticated token's subject (``with acting_as(claims["sub"]): ...``, or
   ``current_user.set(...)`` in a middleware). When it is set, the request is
   *authenticated*: a ``user`` argument of a tool may only name that same user;
2. else ``settings.user``;
3. else the login name (as the bearer tokens of the stdio bridge use it).

A ``user`` argument of a tool is checked with :func:`resolve_user_argument`: empty means the
acting user; naming the acting user is fine; naming someone else raises
:class:`~session_buddy.errors.AuthError`, unless the request is not authenticated *and* the
service was explicitly told to allow it (``TeamService.allow_user_override``; off by
default, meant for a trusted local setup and tests). So a free-text argument alone never
decides who acts when auth is on.

Ownership of memory items: an item belongs to its ``author``. The memory service stores
every new item with one: the acting user when none is given or when a machine wrote it
(captured items keep ``metadata.source``, e.g. ``claude-code``), so on a store several
machines share, an item stays its writer's. Older rows without an author, or with a machine
author (:data:`MACHINE_AUTHORS`), belong to the reading install's own user
(``settings.user`` or the login name).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from session_buddy.errors import AuthError, ValidationError

if TYPE_CHECKING:  # light imports only: the stdio bridge reads login_name from here
    from session_buddy.settings import SessionBuddySettings

__all__ = [
    "MACHINE_AUTHORS",
    "acting_as",
    "acting_user",
    "authenticated",
    "current_user",
    "local_user",
    "login_name",
    "owner_of",
    "resolve_user_argument",
]

#: The authenticated user of the current request (set by the HTTP service), or None.
current_user: ContextVar[str | None] = ContextVar("session_buddy_current_user", default=None)

#: Authors written by automatic capture, not by a person: such items belong to the local user.
MACHINE_AUTHORS = frozenset({"claude-code"})


def local_user(settings: SessionBuddySettings) -> str:
    """The install's own user: ``settings.user``, else the login name."""
    if settings.user:
        return settings.user
    return login_name()


def login_name() -> str:
    """The operating system's name for the user running this process (also the subject of
    the tokens the stdio bridge mints)."""
    for key in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "user"


def authenticated() -> bool:
    """True when an authenticated identity was bound for this request."""
    return bool(current_user.get())


def acting_user(settings: SessionBuddySettings) -> str:
    """The user on whose behalf the current call runs."""
    return current_user.get() or local_user(settings)


@contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Bind ``user`` as the authenticated identity for the code inside (per request)."""
    if not isinstance(user, str) or not user.strip():
        raise ValidationError("user must be a non-empty name")
    token = current_user.set(user.strip())
    try:
        yield
    finally:
        current_user.reset(token)


def resolve_user_argument(
    given: str | None, settings: SessionBuddySettings, *, allow_override: bool = False
) -> str:
    """The user a call acts as, given a tool's ``user`` argument (see the module doc)."""
    acting = acting_user(settings)
    if given is None or not str(given).strip() or str(given).strip() == acting:
        return acting
    given = str(given).strip()
    if allow_override and not authenticated():
        return given
    how = "authenticated as" if authenticated() else "running as"
    raise AuthError(
        f"user={given!r} is not you: this server is {how} {acting!r}, and a user argument may "
        "only name yourself (leave it out). Acting for another user needs that user's token"
    )


def owner_of(author: str | None, settings: SessionBuddySettings) -> str:
    """Who owns an item written by ``author`` (see the module doc)."""
    if author and author not in MACHINE_AUTHORS:
        return author
    return local_user(settings)
