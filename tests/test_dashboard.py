"""The dashboard over HTTP against a real shared service with real data (DuckDB, the ONNX
model, a session run to its handoff through a stdio bridge): login link and cookie, 401
without it, CSRF, every page, edit / delete / undo / mark through the core services (seen
by the MCP tools)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from session_buddy.server.auth import mint_token
from session_buddy.server.dashboard import auth as dash_auth
from session_buddy.server.dashboard.routes import UndoBuffer
from tests.dashboard_support import NEEDLE, Live, live_dashboard

PAGES = ["search", "memories", "sessions", "quality", "projects", "health", "live"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_dashboard(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture(scope="module")
def web(live: Live) -> Iterator[httpx.Client]:
    c = live.client()
    try:
        yield c
    finally:
        c.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_no_cookie_no_page(live: Live) -> None:
    for page in [*PAGES, f"sessions/{live.session_id}", f"memories/{live.needle_id}"]:
        answer = httpx.get(f"{live.base}/dashboard/{page}", timeout=30)
        assert answer.status_code == 401, page
        assert NEEDLE not in answer.text
    # a cookie signed with another secret, or a bearer token of the right one, is no cookie
    forged = dash_auth.session_cookie(b"y" * 48, "root")
    answer = httpx.get(
        f"{live.base}/dashboard/search", cookies={dash_auth.COOKIE: forged}, timeout=30
    )
    assert answer.status_code == 401
    secret = (live.data_dir / "auth.secret").read_text().strip().encode()
    token = mint_token(secret, "root")  # an MCP token: right secret, no dashboard scope
    answer = httpx.get(f"{live.base}/dashboard/search", cookies={dash_auth.COOKIE: token})
    assert answer.status_code == 401
    # and the MCP endpoint still wants its bearer token
    assert httpx.post(f"{live.base}/mcp", json={}, timeout=30).status_code == 401


def test_login_link_is_one_time_and_sets_a_strict_cookie(live: Live) -> None:
    link = live.login_link()
    first = httpx.get(link, timeout=30)
    assert first.status_code == 303 and first.headers["location"] == "/dashboard/search"
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    assert httpx.get(link, timeout=30).status_code == 401  # used once
    assert httpx.get(f"{live.base}/dashboard/login?code=guess", timeout=30).status_code == 401


def test_other_hosts_are_refused(live: Live, web: httpx.Client) -> None:
    answer = web.get("/dashboard/search", headers={"host": "evil.example:80"})
    assert answer.status_code == 403


def test_search_shows_scores_full_text_and_source(live: Live, web: httpx.Client) -> None:
    page = web.get("/dashboard/search", params={"q": "flux capacitor gigawatts"})
    assert page.status_code == 200
    first = page.text.index('class="hit"')
    assert f'data-id="{live.needle_id}"' in page.text[first : first + 200]
    assert NEEDLE in page.text and "physics" in page.text
    assert re.search(r"score 0\.\d{3}", page.text) and "confidence" in page.text
    # filters: a kind without the memory finds nothing of it
    none = web.get("/dashboard/search", params={"q": "flux capacitor", "kind": "conversation"})
    assert live.needle_id not in none.text
    tagged = web.get("/dashboard/search", params={"q": "flux capacitor", "tags": "ops"})
    assert live.needle_id not in tagged.text


def test_every_page_renders(live: Live, web: httpx.Client) -> None:
    for page in PAGES:
        answer = web.get(f"/dashboard/{page}")
        assert answer.status_code == 200, (page, answer.text[-500:])
        assert answer.headers["cache-control"] == "no-store"
    sessions = web.get("/dashboard/sessions").text
    assert f"/dashboard/sessions/{live.session_id}" in sessions
    session = web.get(f"/dashboard/sessions/{live.session_id}").text
    handoff = session[session.index('id="handoff"') :]
    assert "<h1>" in handoff or "<h2>" in handoff  # Markdown rendered
    assert "Find a DeLorean" in handoff and "Plutonium over lightning" in handoff
    assert 'class="checkpoint"' in session and 'class="start"' in session
    quality = web.get("/dashboard/quality", params={"project": live.project}).text
    assert re.search(r'<circle [^>]*data-series="score"[^>]*data-value="\d+"', quality)
    projects = web.get("/dashboard/projects").text
    assert re.search(
        rf'<line [^>]*data-source="{live.project}" data-target="fluxlib" data-type="uses"', projects
    )
    assert 'data-project="fluxlib"' in projects and "hill-valley" in projects
    team = projects[projects.index('aria-label="team labs"') :]
    assert "1 shared item(s)" in team and f"/dashboard/memories/{live.needle_id}" in team
    health = web.get("/dashboard/health").text
    assert "storage" in health and "embedding model" in health and "MiB" in health
    live_panel = web.get("/dashboard/live").text
    assert live.needle_id in live_panel or live.other_id in live_panel


def test_posts_need_the_csrf_token(live: Live, web: httpx.Client) -> None:
    answer = web.post(f"/dashboard/memories/{live.other_id}/mark", data={"mark": "wrong"})
    assert answer.status_code == 403
    assert (
        "wrong"
        not in live.tool("search", {"query": "blue-green staging", "fields": ["id"]})["hits"][0][
            "tags"
        ]
    )


def test_edit_mark_delete_undo_go_through_the_core(live: Live, web: httpx.Client) -> None:
    page = web.get(f"/dashboard/memories/{live.other_id}").text
    token = csrf_of(page)
    edited = web.post(
        f"/dashboard/memories/{live.other_id}/edit",
        data={"csrf": token, "tags": "ops, deploy", "content": ""},
    )
    assert edited.status_code == 303
    hit = live.tool(
        "search", {"query": "blue-green staging", "project": live.project, "fields": ["id"]}
    )["hits"][0]
    assert hit["id"] == live.other_id and hit["tags"] == ["ops", "deploy"]
    web.post(f"/dashboard/memories/{live.other_id}/mark", data={"csrf": token, "mark": "outdated"})
    assert (
        "outdated"
        in live.tool("search", {"query": "blue-green staging", "fields": ["id"]})["hits"][0]["tags"]
    )
    # delete (as htmx sends it): gone from the MCP search; undo brings the same item back
    gone = web.post(
        f"/dashboard/memories/{live.other_id}/delete",
        data={"csrf": token},
        headers={"HX-Request": "true"},
    )
    assert gone.status_code == 200 and "Undo" in gone.text
    assert live.other_id not in live.mcp_search_ids("blue-green staging cluster")
    undo = re.search(r'hx-post="(/dashboard/undo/[^"]+)"', gone.text)
    assert undo
    back = web.post(undo.group(1), data={"csrf": token}, headers={"HX-Request": "true"})
    assert back.status_code == 200 and f'id="m-{live.other_id}"' in back.text
    assert live.other_id in live.mcp_search_ids("blue-green staging cluster")  # vector kept
    semantic = live.tool(
        "search", {"query": "blue green deployment", "mode": "semantic", "fields": ["id"]}
    )
    assert live.other_id in [h["id"] for h in semantic["hits"]]
    assert web.post(undo.group(1), data={"csrf": token}).status_code == 410  # once only


def test_codes_and_undo_expire() -> None:
    codes = dash_auth.LoginCodes(ttl_s=0.05)
    stale, fresh = codes.issue(), codes.issue()
    time.sleep(0.1)
    assert not codes.redeem(stale)
    live_codes = dash_auth.LoginCodes()
    code = live_codes.issue()
    assert live_codes.redeem(code) and not live_codes.redeem(code) and not codes.redeem(fresh)
    undo = UndoBuffer(ttl_s=0.05)
    token = undo.keep(object())  # type: ignore[arg-type]
    time.sleep(0.1)
    assert undo.take(token) is None


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8080", True),
        ("localhost:1", True),
        ("[::1]:9", True),
        ("127.0.0.1.evil.example", False),
        ("evil.example", False),
        ("", False),
    ],
)
def test_loopback_host(host: str, ok: bool) -> None:
    assert dash_auth.loopback_host(host) is ok


def test_not_mounted_off_loopback(tmp_path: Path) -> None:
    from session_buddy.server.dashboard import dashboard_allowed
    from session_buddy.settings import load_settings

    for host, allowed in (("127.0.0.1", True), ("::1", True), ("0.0.0.0", False)):
        settings = load_settings(data_dir=tmp_path / "d", server={"host": host}).settings
        assert dashboard_allowed(settings) is allowed


LAZY_DASHBOARD = """
import asyncio, sys
from session_buddy.server import dashboard
from session_buddy.server.app import create_server
from session_buddy.settings import load_settings

settings = load_settings(data_dir=sys.argv[1], adapters={"storage": "memory"}).settings
server = create_server(settings, http=True, dashboard=True)
heavy = ("jinja2", "session_buddy.server.dashboard.routes", "session_buddy.server.dashboard.pages")
before = [m for m in heavy if m in sys.modules]
mounted = sorted(r.path for r in server._additional_http_routes if r.path.startswith("/dashboard"))
link = asyncio.run(dashboard.login_job({}, None))
after = [m for m in heavy if m in sys.modules]
print(before, after, len(mounted), link["path"].startswith("/dashboard/login?code="))
"""


def test_the_dashboard_is_mounted_but_loads_on_first_use(tmp_path: Path) -> None:
    """The service mounts every dashboard route at start; the pages and jinja2 (~5 MB) load
    with the first page or login link (the live tests above run the pages themselves)."""
    from tests.mcp_peers import python_last_line

    assert python_last_line(tmp_path, LAZY_DASHBOARD) == (
        "[] ['jinja2', 'session_buddy.server.dashboard.routes', "
        "'session_buddy.server.dashboard.pages'] 18 True"
    )


TWO_SERVICES = """
import asyncio, sys
from pathlib import Path
from starlette.requests import Request
from session_buddy import di
from session_buddy.server import dashboard
from session_buddy.server.app import create_server
from session_buddy.server.auth import load_secret
from session_buddy.server.dashboard import auth
from session_buddy.settings import load_settings

async def log_in(server):
    login = next(r for r in server._additional_http_routes if r.path == "/dashboard/login")
    link = await dashboard.login_job({}, None)
    scope = {"type": "http", "method": "GET", "path": "/dashboard/login", "headers":
             [(b"host", b"127.0.0.1")], "query_string": link["path"].split("?")[1].encode()}
    response = await login.endpoint(Request(scope))
    return response.headers["set-cookie"].split(";")[0].split("=", 1)[1]

seen = []
for name in ("a", "b"):  # one service, then another in the same process (as tests do)
    data = Path(sys.argv[1]) / name
    settings = load_settings(data_dir=data, adapters={"storage": "memory"}).settings
    server = create_server(settings, http=True, dashboard=True)
    cookie = asyncio.run(log_in(server))
    signed = auth.cookie_claims(load_secret(data), cookie) is not None
    seen.append((Path(dashboard.current().settings.data_dir).name, signed))
    di.reset()
print(seen)
"""


def test_each_service_of_a_process_gets_its_own_dashboard(tmp_path: Path) -> None:
    """A second service made in the same process (after ``di.reset``, another data dir) has
    a dashboard of its own: its settings, and login cookies signed with its own secret,
    not the first service's."""
    from tests.mcp_peers import python_last_line

    assert python_last_line(tmp_path, TWO_SERVICES) == "[('a', True), ('b', True)]"


@pytest.mark.parametrize("storage", ["memory", "duckdb"])
async def test_delete_returns_what_restore_puts_back(tmp_path: Path, storage: str) -> None:
    """The core of the undo: delete answers the item and its vector; restore stores it back
    (the same id on a store that imports exactly), findable by keyword and by vector."""
    from session_buddy import di
    from session_buddy.core.memory import ItemInput, MemoryService
    from session_buddy.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data", adapters={"storage": storage}).settings
    di.configure(settings)
    await di.startup()
    memory = di.get(MemoryService)
    text = "the undo keeps the vector of a deleted memory about sourdough starters"
    stored = (await memory.store([ItemInput(text, kind="reflection", tags=["bread"])]))[0]
    deleted = await memory.delete(stored.id)
    assert deleted.item.id == stored.id and deleted.vector is not None
    assert not (await memory.search("sourdough starters", mode="keyword")).hits
    back = await memory.restore(deleted)
    assert back.content == text and back.tags == ["bread"]
    if storage == "duckdb":
        assert back.id == stored.id and back.created_at == deleted.item.created_at
    for mode in ("keyword", "semantic"):
        hits = (await memory.search("sourdough starter yeast", mode=mode)).hits  # type: ignore[arg-type]
        assert [h.id for h in hits][:1] == [back.id], mode
