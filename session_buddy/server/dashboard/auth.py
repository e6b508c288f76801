"""Who may open the dashboard: a one-time login link, then a session cookie.

``session-buddy dashboard`` asks the running service (with its bearer token, so only who can
read the data directory) for a one-time code (:func:`LoginCodes.issue`, valid
:data:`CODE_TTL_S` seconds, used once). ``GET /dashboard/login?code=...`` trades it for a
cookie holding a JWT signed with the data directory's secret (scope ``dashboard``), HttpOnly,
SameSite=Strict, path ``/dashboard``; every other dashboard request without a valid cookie is
answered 401. Forms and htmx requests that change something carry a CSRF token derived
from the cookie (:func:`csrf_token`); the Host header must name the loopback address, so a
page of another site cannot reach the service through DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

from session_buddy.errors import AuthError
from session_buddy.server.auth import ALGORITHM, AUDIENCE, verify_token

COOKIE = "sb_dashboard"
SCOPE = "dashboard"
CODE_TTL_S = 120.0
SESSION_TTL_S = 12 * 3600
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class LoginCodes:
    """One-time login codes, kept in the service's memory (a restart forgets them)."""

    def __init__(self, ttl_s: float = CODE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._codes: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        code = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._codes = {c: t for c, t in self._codes.items() if t > now}
            self._codes[code] = now + self.ttl_s
        return code

    def redeem(self, code: str) -> bool:
        """True once for a code issued less than ``ttl_s`` ago; False ever after."""
        with self._lock:
            expires = self._codes.pop(code, None)
        return expires is not None and expires > time.monotonic()


def session_cookie(secret: bytes, user: str, ttl_s: int = SESSION_TTL_S) -> str:
    """The cookie's value: a JWT of the data directory's secret, for the dashboard only."""
    import jwt

    now = int(time.time())
    claims = {
        "sub": user,
        "aud": AUDIENCE,
        "scope": SCOPE,
        "jti": secrets.token_urlsafe(12),
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl_s,
    }
    return str(jwt.encode(claims, secret, algorithm=ALGORITHM))


def cookie_claims(secret: bytes, value: str | None) -> dict[str, Any] | None:
    """The claims of a valid dashboard cookie, else None."""
    if not value:
        return None
    try:
        claims = verify_token(secret, value)
    except AuthError:
        return None
    return claims if claims.get("scope") == SCOPE else None


def csrf_token(secret: bytes, cookie: str) -> str:
    """The CSRF token of a dashboard session (forms and htmx send it back)."""
    return hmac.new(secret, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()[:40]


def csrf_ok(secret: bytes, cookie: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(secret, cookie), str(given))


def loopback_host(host_header: str | None) -> bool:
    """Whether the Host header names the loopback interface (any port)."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host in LOOPBACK_HOSTS
