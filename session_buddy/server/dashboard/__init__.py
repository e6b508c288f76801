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
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from session_buddy.server.dashboard.routes import Dashboard
    from session_buddy.settings import SessionBuddySettings

DASHBOARD_PREFIX = "/dashboard"
#: when this process started (the health page's uptime)
STARTED = time.time()

_dashboard: Dashboard | None = None


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
    """The mounted dashboard of this process, if any."""
    return _dashboard


def register(mcp: FastMCP) -> None:
    """Mount every dashboard route on the service's HTTP app."""
    global _dashboard
    from session_buddy import di
    from session_buddy.server.dashboard.routes import (
        Dashboard,
        login_routes,
        read_routes,
        write_routes,
    )
    from session_buddy.settings import SessionBuddySettings

    d = Dashboard(di.get(SessionBuddySettings))
    _dashboard = d
    public, read, write = login_routes(d), read_routes(d), write_routes(d)
    p = DASHBOARD_PREFIX
    routes: list[tuple[str, Any, list[str], bool]] = [
        (p, public["home"], ["GET"], True),
        (f"{p}/", public["home"], ["GET"], True),
        (f"{p}/login", public["login"], ["GET"], True),
        (f"{p}/static/{{name}}", public["static"], ["GET"], True),
        (f"{p}/logout", public["logout"], ["POST"], False),
        (f"{p}/search", read["search"], ["GET"], False),
        (f"{p}/memories", read["memories"], ["GET"], False),
        (f"{p}/memories/{{item_id}}", read["memory"], ["GET"], False),
        (f"{p}/memories/{{item_id}}/edit", write["edit"], ["POST"], False),
        (f"{p}/memories/{{item_id}}/mark", write["mark"], ["POST"], False),
        (f"{p}/memories/{{item_id}}/delete", write["delete"], ["POST"], False),
        (f"{p}/undo/{{token}}", write["undo"], ["POST"], False),
        (f"{p}/sessions", read["sessions"], ["GET"], False),
        (f"{p}/sessions/{{session_id}}", read["session"], ["GET"], False),
        (f"{p}/quality", read["quality"], ["GET"], False),
        (f"{p}/projects", read["projects"], ["GET"], False),
        (f"{p}/health", read["health"], ["GET"], False),
        (f"{p}/live", read["live"], ["GET"], False),
    ]
    for path, handler, methods, open_route in routes:
        mcp.custom_route(path, methods=methods)(d.guard(handler, public=open_route))


async def login_job(payload: dict[str, Any], emit: Any) -> dict[str, Any]:
    """The ``/cli/dashboard`` job: a one-time login path (the CLI adds host and port)."""
    from session_buddy.errors import ConfigurationError

    if _dashboard is None:
        raise ConfigurationError(
            "this service has no dashboard (it is served on a loopback address only)"
        )
    code = _dashboard.codes.issue()
    return {"path": f"{DASHBOARD_PREFIX}/login?code={code}", "ttl_s": _dashboard.codes.ttl_s}
