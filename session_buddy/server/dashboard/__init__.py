"""The dashboard: a person's view into the memory, served by the shared local service.

``session-buddy dashboard`` (:mod:`session_buddy.cli.dashboard`) asks the running service
for a one-time login link (the ``/cli/dashboard`` job, behind the bearer token) and opens
it; the link sets a session cookie (:mod:`.auth`). Pages (:mod:`.routes`, :mod:`.pages`,
:mod:`.views`): search, memories (edit, delete with undo, mark wrong or outdated),
sessions and their timeline and handoff, quality charts, the projects graph and teams,
health; a live panel polls for new memories and checkpoints. Mounted only on the shared
service (``session-buddy service``) when it listens on loopback. docs/dashboard.md.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from session_buddy.server.dashboard.routes import Dashboard
    from session_buddy.settings import SessionBuddySettings

DASHBOARD_PREFIX = "/dashboard"
#: when this process started (the health page's uptime)
STARTED = time.time()

#: the dashboard of the configured service and its route handlers by group and name
_loaded: tuple[Dashboard, dict[str, dict[str, Any]]] | None = None


def dashboard_allowed(settings: SessionBuddySettings) -> bool:
    """The dashboard is served on a loopback address only."""
    host = settings.server.host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def current() -> Dashboard | None:
    """The dashboard of this process, once a page or a login link has needed it."""
    return None if _loaded is None else _loaded[0]


#: the route's group in :mod:`.routes` (``login_routes``, ``read_routes``, ``write_routes``)
#: and name, its methods, and whether it is open without a login
_ROUTES: list[tuple[str, str, str, list[str], bool]] = [
    ("", "public", "home", ["GET"], True),
    ("/", "public", "home", ["GET"], True),
    ("/login", "public", "login", ["GET"], True),
    ("/static/{name}", "public", "static", ["GET"], True),
    ("/logout", "public", "logout", ["POST"], False),
    ("/search", "read", "search", ["GET"], False),
    ("/memories", "read", "memories", ["GET"], False),
    ("/memories/{item_id}", "read", "memory", ["GET"], False),
    ("/memories/{item_id}/edit", "write", "edit", ["POST"], False),
    ("/memories/{item_id}/mark", "write", "mark", ["POST"], False),
    ("/memories/{item_id}/delete", "write", "delete", ["POST"], False),
    ("/undo/{token}", "write", "undo", ["POST"], False),
    ("/sessions", "read", "sessions", ["GET"], False),
    ("/sessions/{session_id}", "read", "session", ["GET"], False),
    ("/quality", "read", "quality", ["GET"], False),
    ("/projects", "read", "projects", ["GET"], False),
    ("/health", "read", "health", ["GET"], False),
    ("/live", "read", "live", ["GET"], False),
]
_lock = threading.Lock()
_mounted = False


def _load() -> tuple[Dashboard, dict[str, dict[str, Any]]]:
    """The dashboard's state and handlers, made on first use: the pages, views and jinja2
    (~5 MB resident) are imported by the first page or login link, not by every service.
    Made again when the process's configuration changes (another service's settings after
    ``di.reset``): a dashboard keeps the settings and the secret of its data directory."""
    global _loaded
    from session_buddy import di
    from session_buddy.settings import SessionBuddySettings

    settings = di.get(SessionBuddySettings)
    with _lock:
        if _loaded is None or _loaded[0].settings is not settings:
            from session_buddy.server.dashboard.routes import (
                Dashboard,
                login_routes,
                read_routes,
                write_routes,
            )

            d = Dashboard(settings)
            handlers = {"public": login_routes(d), "read": read_routes(d), "write": write_routes(d)}
            _loaded = (d, handlers)
        return _loaded


def _lazy(group: str, name: str, public: bool) -> Any:
    guarded: tuple[Dashboard, Any] | None = None

    async def handle(request: Any) -> Any:
        nonlocal guarded
        dashboard, handlers = _load()
        if guarded is None or guarded[0] is not dashboard:
            guarded = (dashboard, dashboard.guard(handlers[group][name], public=public))
        return await guarded[1](request)

    return handle


def register(mcp: FastMCP) -> None:
    """Mount every dashboard route on the service's HTTP app (the pages load on first use)."""
    global _mounted
    _mounted = True
    for path, group, name, methods, public in _ROUTES:
        mcp.custom_route(DASHBOARD_PREFIX + path, methods=methods)(_lazy(group, name, public))


async def login_job(payload: dict[str, Any], emit: Any) -> dict[str, Any]:
    """The ``/cli/dashboard`` job: a one-time login path (the CLI adds host and port)."""
    from session_buddy.errors import ConfigurationError

    if not _mounted:
        raise ConfigurationError(
            "this service has no dashboard (it is served on a loopback address only)"
        )
    dashboard = _load()[0]
    code = dashboard.codes.issue()
    return {"path": f"{DASHBOARD_PREFIX}/login?code={code}", "ttl_s": dashboard.codes.ttl_s}
