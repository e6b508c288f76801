"""Who is calling, and which session is current for them.

One service serves many clients: each Claude Code session runs its own stdio bridge to the
shared service. "The current session" and "this project" therefore belong to the calling
client, not to the service process:

- :class:`ClientContext` says who calls (``key``) and where it runs (its MCP root, its
  working directory and ``CLAUDE_PROJECT_DIR``). The server layer binds it per request in :data:`current_client`
  (from the headers the bridge sends, :func:`client_headers` / :func:`client_from_headers`);
  nothing in core reads HTTP.
- Nothing bound (the ``--standalone`` stdio server, an in-memory ``Client(server)``, a library
  caller): the one client is this process, its folder is ``CLAUDE_PROJECT_DIR`` or the cwd.
- :class:`CurrentSessions` maps a client key to its current session and project.

Standard library only: the bridge imports this module for the header names.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

#: the random id of one bridge process (one per Claude Code session)
CLIENT_HEADER = "x-session-buddy-client"
#: the bridge's working directory (percent-encoded UTF-8)
CWD_HEADER = "x-session-buddy-cwd"
#: the bridge's CLAUDE_PROJECT_DIR when set (percent-encoded UTF-8)
PROJECT_DIR_HEADER = "x-session-buddy-project-dir"
#: the folder of the client's first ``file://`` MCP root, when it offers roots
ROOT_HEADER = "x-session-buddy-root"

#: this process as the client (the host in it: two machines sharing one PostgreSQL are not
#: one client)
PROCESS_KEY = f"process@{os.uname().nodename or 'localhost'}"
MAX_HEADER_CHARS = 4096
MAX_CLIENTS = 4096
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class ClientContext:
    """The caller of a request: whose current session, and which folder is "this project"."""

    key: str
    working_directory: str | None = None
    project_dir: str | None = None
    root: str | None = None

    @property
    def directory(self) -> str | None:
        """The folder the client works in, if it said: its first ``file://`` MCP root, else
        ``CLAUDE_PROJECT_DIR``, else its working directory. The root comes first because the
        client says it over the protocol, per connection; an environment variable is inherited
        by every process started under a Claude Code session, other clients included. (An
        explicit ``working_directory`` argument of a tool overrides all three.)"""
        return self.root or self.project_dir or self.working_directory

    def with_root(self, root: str | None) -> ClientContext:
        return replace(self, root=root)

    @classmethod
    def process(cls) -> ClientContext:
        """This process as the one client (read at call time: a chdir is seen)."""
        return cls(PROCESS_KEY, os.getcwd(), os.environ.get("CLAUDE_PROJECT_DIR") or None)


#: the client of the current request, bound by the server layer; None means this process
current_client: ContextVar[ClientContext | None] = ContextVar(
    "session_buddy_current_client", default=None
)


def client_context() -> ClientContext:
    """The client of the current call."""
    return current_client.get() or ClientContext.process()


@contextmanager
def acting_client(client: ClientContext) -> Iterator[None]:
    """Bind ``client`` for the code inside (a request handler, a test)."""
    token = current_client.set(client)
    try:
        yield
    finally:
        current_client.reset(token)


def client_headers(
    client_id: str,
    working_directory: str,
    project_dir: str | None = None,
    root: str | None = None,
) -> dict[str, str]:
    """The headers a bridge sends with every request (values are ASCII)."""
    headers = {CLIENT_HEADER: client_id, CWD_HEADER: quote(working_directory, safe="/")}
    if project_dir:
        headers[PROJECT_DIR_HEADER] = quote(project_dir, safe="/")
    if root:
        headers[ROOT_HEADER] = quote(root, safe="/")
    return headers


def root_folder(roots: Any) -> str | None:
    """The folder of the first ``file://`` root in a ``roots/list`` answer: the ``roots``
    list of its result, as JSON objects (the bridge) or ``mcp.types.Root`` (the service).
    None when there is none, or the answer is not a list of roots (an error, garbage)."""
    if not isinstance(roots, list):
        return None
    for item in roots:
        uri = item.get("uri") if isinstance(item, dict) else getattr(item, "uri", None)
        if uri is None:
            continue
        parts = urlsplit(str(uri))
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            continue
        try:
            path = unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            continue
        if path and "\x00" not in path and os.path.isabs(path):
            return os.path.normpath(path)
    return None


def _folder(value: str | None) -> str | None:
    if not value or len(value) > MAX_HEADER_CHARS:
        return None
    path = unquote(value, errors="strict") if "%" in value else value
    if "\x00" in path or not os.path.isabs(path):
        return None
    return path


def client_from_headers(headers: Mapping[str, str], user: str | None) -> ClientContext:
    """The client of an HTTP request (header names lower-case). A bridge names itself;
    a direct HTTP client without the headers is its authenticated user (and passes
    ``working_directory`` arguments). Client ids are scoped by the user, so one user's
    token never reaches another user's current session."""
    owner = user or "anonymous"
    client_id = headers.get(CLIENT_HEADER, "")
    try:
        cwd = _folder(headers.get(CWD_HEADER))
        project_dir = _folder(headers.get(PROJECT_DIR_HEADER))
        root = _folder(headers.get(ROOT_HEADER))
    except UnicodeDecodeError:
        cwd = project_dir = root = None
    if _CLIENT_ID.match(client_id):
        return ClientContext(f"client:{owner}:{client_id}", cwd, project_dir, root)
    return ClientContext(f"user:{owner}", cwd, project_dir, root)


@dataclass(frozen=True)
class Current:
    session_id: str
    project: str | None


class CurrentSessions:
    """The current session of each client (the most recently used clients are kept)."""

    def __init__(self, limit: int = MAX_CLIENTS) -> None:
        self._by_client: OrderedDict[str, Current] = OrderedDict()
        self._limit = limit

    def get(self, client: str) -> Current | None:
        found = self._by_client.get(client)
        if found is not None:
            self._by_client.move_to_end(client)
        return found

    def set(self, client: str, session_id: str, project: str | None) -> None:
        self._by_client[client] = Current(session_id, project)
        self._by_client.move_to_end(client)
        while len(self._by_client) > self._limit:
            self._by_client.popitem(last=False)

    def clear(self, client: str) -> None:
        self._by_client.pop(client, None)

    def forget_session(self, session_id: str) -> None:
        """The session is gone or ended: it is nobody's current session any more."""
        for client in [c for c, cur in self._by_client.items() if cur.session_id == session_id]:
            del self._by_client[client]
