"""The shared local service: one process owns a data directory; stdio bridges talk to it.

DuckDB lets one process write a database file. Claude Code starts one stdio server per
session, and people run several sessions at once, so ``session-buddy serve`` (stdio) is a
thin bridge (:mod:`session_buddy.server.stdio`) to this service, which it starts on first
use (:mod:`session_buddy.server.discovery`). The service:

- listens on loopback on a free port and publishes it in ``<data>/service.json``;
- holds ``<data>/service.lock`` while it lives (one service per data directory);
- requires a bearer JWT signed with the data directory's secret (:mod:`session_buddy.server.auth`);
- bounds request sizes (413) and requests in flight (503);
- exits after ``server.idle_timeout_s`` without requests, through the ShutdownManager.

The same ASGI guard protects ``session-buddy serve --http``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from session_buddy import __version__
from session_buddy.core.sessions.current import client_from_headers, current_client
from session_buddy.core.users import current_user
from session_buddy.errors import AuthError
from session_buddy.logs import reclaim_logging, route_logging_to_stderr
from session_buddy.paths import SessionPaths
from session_buddy.server.auth import load_secret, verify_token
from session_buddy.server.discovery import remove_service, take_service_lock, write_service
from session_buddy.server.limits import MAX_JSON_DEPTH, rpc_error, too_deep
from session_buddy.settings import SessionBuddySettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Activity:
    """When the service was last used, and how many requests are in flight."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.in_flight = 0


class GuardMiddleware:
    """Bearer-token auth, request size and concurrency limits, activity tracking."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret: bytes | None,
        max_request_bytes: int,
        max_concurrent: int,
        activity: Activity,
        open_paths: frozenset[str] = frozenset(),
        own_auth_prefix: str | None = None,
    ) -> None:
        self.open_paths = open_paths
        #: paths under it check their own credentials (the dashboard's cookie), not a token
        self.own_auth_prefix = own_auth_prefix
        self.app = app
        self.secret = secret
        self.max_request_bytes = max_request_bytes
        self.max_concurrent = max_concurrent
        self.activity = activity

    async def _reply(
        self, send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await self._reply_json(send, status, {"error": message}, extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.open_paths and scope.get("method") == "GET":
            await self.app(scope, receive, send)  # /metrics: no token, not activity
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        user: object = None
        if self.secret is not None and not self._own_auth(str(scope.get("path", ""))):
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                await self._reply(
                    send, 401, "missing bearer token", [(b"www-authenticate", b"Bearer")]
                )
                return
            try:
                claims = verify_token(self.secret, token.strip())
            except AuthError as exc:
                await self._reply(
                    send, 401, str(exc), [(b"www-authenticate", b'Bearer error="invalid_token"')]
                )
                return
            user = claims.get("sub")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_request_bytes:
            await self._reply(send, 413, f"request larger than {self.max_request_bytes} bytes")
            return
        if self.activity.in_flight >= self.max_concurrent:
            await self._reply(
                send, 503, "too many requests in flight; retry shortly", [(b"retry-after", b"1")]
            )
            return
        lift_sdk_body_limit(scope, self.max_request_bytes)
        replay = await self._read_body(receive, send)
        if replay is None:
            return
        self.activity.in_flight += 1
        self.activity.last = time.monotonic()
        # the token's subject is who acts in this request (core/users.py); the bridge's
        # headers say which client and folder (core/sessions/current.py)
        bound = current_user.set(str(user)) if user else None
        client = current_client.set(client_from_headers(headers, str(user) if user else None))
        try:
            await self.app(scope, replay, send)
        finally:
            current_client.reset(client)
            if bound is not None:
                current_user.reset(bound)
            self.activity.in_flight -= 1
            self.activity.last = time.monotonic()

    def _own_auth(self, path: str) -> bool:
        prefix = self.own_auth_prefix
        return prefix is not None and (path == prefix or path.startswith(prefix + "/"))

    async def _read_body(self, receive: Receive, send: Send) -> Receive | None:
        """Read the body (bounded), refuse JSON nested too deep; a receive that replays it,
        or None when the request was answered here."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message.get("type") != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                await self._reply(send, 413, f"request larger than {self.max_request_bytes} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if too_deep(body):
            answer = rpc_error(
                None, -32600, f"Invalid Request: JSON nested deeper than {MAX_JSON_DEPTH} levels"
            )
            await self._reply_json(send, 400, answer)
            return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    @staticmethod
    async def _reply_json(
        send: Send,
        status: int,
        answer: dict[str, Any],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(answer).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send(
            {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
        )
        await send({"type": "http.response.body", "body": body})


def lift_sdk_body_limit(scope: Scope, limit: int) -> None:
    """The MCP SDK caps bodies at 4 MiB behind this guard (``RequestBodyLimitMiddleware``,
    not configurable through FastMCP): give it ``server.max_request_bytes`` instead, so the
    documented limit is the real one."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        manager = getattr(getattr(route, "app", None), "session_manager", None) or getattr(
            getattr(route, "endpoint", None), "session_manager", None
        )
        inner = getattr(manager, "asgi_app", None)
        if inner is not None and getattr(inner, "max_body_size", limit) < limit:
            inner.max_body_size = limit


def guard_middleware(
    settings: SessionBuddySettings,
    paths: SessionPaths,
    activity: Activity,
    own_auth_prefix: str | None = None,
) -> list[Any]:
    """The Starlette middleware list for FastMCP's HTTP app; ``own_auth_prefix``: the
    routes under it (the dashboard) check credentials of their own."""
    from starlette.middleware import Middleware

    secret = load_secret(paths.data) if settings.server.auth else None
    telemetry = settings.telemetry
    open_paths = {"/metrics"} if telemetry.metrics and not telemetry.metrics_auth else set()
    return [
        Middleware(
            GuardMiddleware,  # type: ignore[arg-type]
            secret=secret,
            max_request_bytes=settings.server.max_request_bytes,
            max_concurrent=settings.server.max_concurrent_requests,
            activity=activity,
            open_paths=frozenset(open_paths),
            own_auth_prefix=own_auth_prefix,
        )
    ]


def _idle_watchdog(activity: Activity, idle_s: float) -> None:
    while True:
        time.sleep(min(5.0, max(0.2, idle_s / 5)))
        if activity.in_flight == 0 and time.monotonic() - activity.last > idle_s:
            log.info("idle for %.0f s: shutting down", idle_s)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _service_logging(settings: SessionBuddySettings, paths: SessionPaths) -> None:
    """The service logs to a size-rotated <data>/logs/service.log (or log_file); its
    stdout and stderr follow the current file."""
    route_logging_to_stderr(
        settings.log_level,
        settings.log_file or paths.logs / "service.log",
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
        follow_std=True,
    )


def run_service(settings: SessionBuddySettings) -> int:
    """Run the shared service of the settings' data directory until idle or signalled."""
    paths = SessionPaths.from_settings(settings.data_dir).ensure()
    lock = take_service_lock(paths.data)  # held for the process's life
    if lock is None:
        print(f"another session-buddy service owns {paths.data}; exiting", file=sys.stderr)
        return 0
    _service_logging(settings, paths)
    host = settings.server.host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # small JSON-RPC answers: no Nagle delay (accepted connections inherit this on Linux)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    activity = Activity()
    from session_buddy.server.app import create_server, private_data_dir

    private_data_dir(settings)
    from session_buddy.server.dashboard import DASHBOARD_PREFIX, dashboard_allowed

    dashboard = dashboard_allowed(settings)
    server = create_server(settings, http=True, dashboard=dashboard)
    reclaim_logging(settings.log_level)  # FastMCP set up its own handlers on import
    middleware = guard_middleware(
        settings, paths, activity, DASHBOARD_PREFIX if dashboard else None
    )
    write_service(
        paths.data,
        {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "url": f"http://{host}:{port}/mcp",
            "version": __version__,
            "started_at": time.time(),
            "auth": settings.server.auth,
        },
    )
    activity.last = time.monotonic()  # idle from now on, not from before the slow imports
    threading.Thread(
        target=_idle_watchdog, args=(activity, settings.server.idle_timeout_s), daemon=True
    ).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    try:
        server.run(
            transport="http",
            sockets=[sock],
            stateless_http=True,
            middleware=middleware,
            show_banner=False,
            uvicorn_config={
                "log_config": None,
                "access_log": False,
                "timeout_graceful_shutdown": 10,
            },
        )
    finally:
        remove_service(paths.data, os.getpid())
        with contextlib.suppress(OSError):
            lock.close()
    return 0
