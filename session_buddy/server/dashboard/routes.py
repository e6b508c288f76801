"""The dashboard's HTTP routes on the shared service (beside ``/mcp``, ``/hooks``, ``/cli``).

The service's bearer-token guard lets ``/dashboard/...`` through to here, where
:class:`Dashboard` checks the Host header (loopback only), the session cookie (401 without
it) and, on every POST, the CSRF token. Pages are server-rendered Jinja2 templates; htmx
(vendored in ``static/``) swaps fragments for deletes, undo and the live panel, and every
form works without it too. The changes go through the core services the tools use
(:class:`~session_buddy.core.memory.MemoryService`: access rules, dedup, re-embedding).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from session_buddy import di
from session_buddy.core.memory import DeletedItem, MemoryService
from session_buddy.core.users import current_user, local_user
from session_buddy.errors import AuthError, NotFound, SessionBuddyError
from session_buddy.paths import SessionPaths
from session_buddy.server.auth import load_secret
from session_buddy.server.dashboard import auth, pages, views
from session_buddy.server.dashboard.graph_svg import group_colours
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = {
    "htmx.min.js": "text/javascript",
    "dashboard.css": "text/css",
    "htmx.LICENSE": "text/plain",
}
#: how long a deleted memory can be brought back
UNDO_S = 10.0
NAV = [
    ("search", "Search"),
    ("memories", "Memories"),
    ("sessions", "Sessions"),
    ("quality", "Quality"),
    ("projects", "Projects"),
    ("health", "Health"),
]

Handler = Callable[[Request], Awaitable[Response]]


class UndoBuffer:
    """Deleted memories, kept :data:`UNDO_S` seconds for their undo."""

    def __init__(self, ttl_s: float = UNDO_S) -> None:
        self.ttl_s = ttl_s
        self._kept: dict[str, tuple[float, DeletedItem]] = {}
        self._lock = threading.Lock()

    def keep(self, deleted: DeletedItem) -> str:
        token = secrets.token_urlsafe(12)
        now = time.monotonic()
        with self._lock:
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
            self._kept[token] = (now + self.ttl_s, deleted)
        return token

    def take(self, token: str) -> DeletedItem | None:
        with self._lock:
            kept = self._kept.pop(token, None)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None


class Dashboard:
    """The routes' shared state: the secret, login codes, undo buffer and templates."""

    def __init__(self, settings: SessionBuddySettings) -> None:
        import jinja2

        self.settings = settings
        self.secret = load_secret(SessionPaths.from_settings(settings.data_dir).data)
        self.codes = auth.LoginCodes()
        self.undo = UndoBuffer()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        cookie = request.cookies.get(auth.COOKIE, "")
        page = name.removesuffix(".html")
        body = self.env.get_template(name).render(
            **context,
            nav=NAV,
            active=page,
            csrf=auth.csrf_token(self.secret, cookie) if cookie else "",
            query=lambda **kw: urlencode({k: v for k, v in kw.items() if v not in ("", None)}),
        )
        return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)

    def refused(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "refused.html", {"message": message}, status)

    def guard(self, handler: Handler, *, public: bool = False) -> Handler:
        """The checks every dashboard route runs before its handler."""

        async def guarded(request: Request) -> Response:
            if not auth.loopback_host(request.headers.get("host")):
                return self.refused(request, 403, "the dashboard answers on loopback only")
            if public:
                return await handler(request)
            cookie = request.cookies.get(auth.COOKIE)
            if auth.cookie_claims(self.secret, cookie) is None:
                return self.refused(
                    request, 401, "not logged in: run `session-buddy dashboard` for a link"
                )
            if request.method == "POST":
                form = await request.form()
                given = request.headers.get("x-csrf-token") or form.get("csrf")
                if not auth.csrf_ok(self.secret, str(cookie), str(given or "")):
                    return self.refused(request, 403, "missing or wrong CSRF token")
            bound = current_user.set(local_user(self.settings))
            try:
                await di.ready()
                return await handler(request)
            except NotFound as exc:
                return self.refused(request, 404, str(exc))
            except (AuthError, SessionBuddyError) as exc:
                return self.refused(request, 400, str(exc))
            finally:
                current_user.reset(bound)

        return guarded


_SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
}


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _page_number(request: Request) -> int:
    try:
        return max(1, min(100_000, int(request.query_params.get("page") or 1)))
    except ValueError:
        return 1


def login_routes(d: Dashboard) -> dict[str, Handler]:
    async def login(request: Request) -> Response:
        code = request.query_params.get("code", "")
        if not code or not d.codes.redeem(code):
            return d.refused(
                request,
                401,
                "this login link was used or has expired: run `session-buddy dashboard` again",
            )
        response = RedirectResponse("/dashboard/search", status_code=303)
        response.set_cookie(
            auth.COOKIE,
            auth.session_cookie(d.secret, local_user(d.settings)),
            max_age=auth.SESSION_TTL_S,
            path="/dashboard",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/dashboard/search", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/dashboard")
        return response

    async def static(request: Request) -> Response:
        name = str(request.path_params.get("name", ""))
        if name not in STATIC:
            return Response("not found", status_code=404)
        return FileResponse(
            HERE / "static" / name,
            media_type=STATIC[name],
            headers={"cache-control": "max-age=3600"},
        )

    async def home(request: Request) -> Response:
        return RedirectResponse("/dashboard/search", status_code=303)

    return {"login": login, "logout": logout, "static": static, "home": home}


def read_routes(d: Dashboard) -> dict[str, Handler]:
    async def search(request: Request) -> Response:
        context = await pages.search_page(pages.Filters.of(request.query_params))
        return d.render(request, "search.html", context)

    async def memories(request: Request) -> Response:
        context = await pages.memories_page(pages.Filters.of(request.query_params))
        context["undo"] = request.query_params.get("undo")
        return d.render(request, "memories.html", context)

    async def memory(request: Request) -> Response:
        context = await pages.memory_page(str(request.path_params["item_id"]))
        context["saved"] = request.query_params.get("saved")
        return d.render(request, "memory.html", context)

    async def sessions(request: Request) -> Response:
        project = str(request.query_params.get("project") or "")[:500]
        context = await views.sessions_page(project, _page_number(request))
        return d.render(request, "sessions.html", context)

    async def session(request: Request) -> Response:
        context = await views.session_page(str(request.path_params["session_id"]))
        return d.render(request, "session.html", context)

    async def quality(request: Request) -> Response:
        project = str(request.query_params.get("project") or "")[:500]
        return d.render(request, "quality.html", await views.quality_page(project))

    async def projects(request: Request) -> Response:
        context = await views.projects_page()
        context["legend"] = group_colours(context["graph"])
        return d.render(request, "projects.html", context)

    async def health(request: Request) -> Response:
        return d.render(request, "health.html", await views.health_page())

    async def live(request: Request) -> Response:
        return d.render(request, "_live.html", await pages.live_fragment())

    return {
        "search": search,
        "memories": memories,
        "memory": memory,
        "sessions": sessions,
        "session": session,
        "quality": quality,
        "projects": projects,
        "health": health,
        "live": live,
    }


def _tags(text: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def write_routes(d: Dashboard) -> dict[str, Handler]:
    memory = lambda: di.get(MemoryService)  # noqa: E731

    async def edit(request: Request) -> Response:
        item_id = str(request.path_params["item_id"])
        form = await request.form()
        current = await memory().get(item_id)
        content = str(form.get("content") or "").replace("\r\n", "\n")
        tags = _tags(str(form.get("tags") or ""))
        await memory().update(
            item_id,
            content=content if content.strip() and content != current.content else None,
            tags=tags if tags != current.tags else None,
        )
        return RedirectResponse(f"/dashboard/memories/{item_id}?saved=1", status_code=303)

    async def mark(request: Request) -> Response:
        item_id = str(request.path_params["item_id"])
        which = str((await request.form()).get("mark") or "")
        if which not in pages.MARKS:
            return d.refused(request, 400, f"mark must be one of {', '.join(pages.MARKS)}")
        item = await memory().get(item_id)
        tags = [t for t in item.tags if t != which]
        await memory().update(item_id, tags=tags if which in item.tags else [*tags, which])
        return RedirectResponse(f"/dashboard/memories/{item_id}?saved=1", status_code=303)

    async def delete(request: Request) -> Response:
        item_id = str(request.path_params["item_id"])
        deleted = await memory().delete(item_id)
        token = d.undo.keep(deleted)
        if not _htmx(request):
            return RedirectResponse(f"/dashboard/memories?undo={token}", status_code=303)
        context = {"token": token, "item": pages.item_view(deleted.item), "undo_s": int(UNDO_S)}
        return d.render(request, "_deleted.html", context)

    async def undo(request: Request) -> Response:
        deleted = d.undo.take(str(request.path_params["token"]))
        if deleted is None:
            return d.refused(request, 410, "too late to undo: the memory is gone")
        item = await memory().restore(deleted)
        if not _htmx(request):
            return RedirectResponse(f"/dashboard/memories/{item.id}", status_code=303)
        return d.render(request, "_memory.html", {"m": pages.item_view(item)})

    return {"edit": edit, "mark": mark, "delete": delete, "undo": undo}
