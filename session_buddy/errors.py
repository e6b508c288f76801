"""The exception hierarchy of session-buddy.

Every error a person can act on derives from :class:`SessionBuddyError`. Tools turn these
into MCP errors whose message says what went wrong and what to do about it.
"""

from __future__ import annotations


class SessionBuddyError(Exception):
    """Base class of every error session-buddy raises on purpose."""

    #: A short, stable code clients can match on.
    code = "session_buddy_error"


class ValidationError(SessionBuddyError):
    """Bad input: the message names the argument and the accepted values."""

    code = "invalid_argument"


class ConfigurationError(SessionBuddyError):
    """Settings that cannot work, or something used before `di.configure()`."""

    code = "configuration_error"


class StorageError(SessionBuddyError):
    """The storage backend failed (disk, lock, schema)."""

    code = "storage_error"


class NotFound(SessionBuddyError):
    """An id or name that does not exist."""

    code = "not_found"


class EmbeddingError(SessionBuddyError):
    """The embedding model could not be loaded or run."""

    code = "embedding_error"


class DimensionMismatch(EmbeddingError):
    """Stored vectors and the configured model disagree on the dimension or model."""

    code = "dimension_mismatch"


class AuthError(SessionBuddyError):
    """Missing or invalid credentials."""

    code = "auth_error"


class GitError(SessionBuddyError):
    """A git operation was refused or failed."""

    code = "git_error"
