"""Bearer tokens for the HTTP interface: JWT, HS256, with a per-data-dir secret.

The secret comes from ``SESSION_BUDDY_AUTH_SECRET`` or a file ``<data>/auth.secret`` that
only its owner can read (created on first use). Whoever can read the data directory can
mint tokens, which is exactly who may use the memory in it. Light imports only: the stdio
bridge uses this before anything heavy is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

from session_buddy.core.users import login_name as login_name  # the tokens' default subject
from session_buddy.errors import AuthError

SECRET_ENV = "SESSION_BUDDY_AUTH_SECRET"
SECRET_FILE = "auth.secret"
AUDIENCE = "session-buddy"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 3600
MIN_SECRET_BYTES = 32


def load_secret(data_dir: Path, *, create: bool = True) -> bytes:
    """The signing secret: env var, else the owner-only file (created when missing)."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        if len(from_env.encode()) < MIN_SECRET_BYTES:
            raise AuthError(f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes long")
        return from_env.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        if not create:
            raise AuthError(
                f"No auth secret at {path}: start the service once, or set {SECRET_ENV}"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
                fh.flush()
                os.fsync(fh.fileno())
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(
            f"{path} is readable by other users (mode {oct(mode & 0o777)}): run `chmod 600 {path}`"
        )
    value = path.read_text(encoding="utf-8").strip()
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise AuthError(
            f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes: delete it to get a new one"
        )
    return value.encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


#: the JOSE header of every token (RFC 7519 HS256), encoded once
_HEADER = _b64url(json.dumps({"alg": ALGORITHM, "typ": "JWT"}, separators=(",", ":")).encode())


def mint_token(secret: bytes, subject: str, ttl_s: int = DEFAULT_TTL_S) -> str:
    """An HS256 JWT for ``subject``, made with the standard library: the stdio front, each
    hook and CLI command mint one, and PyJWT's import (cryptography with it) cost them ~80 ms
    of their start. Verification stays with PyJWT (:func:`verify_token`), which checks what
    a token from elsewhere may get wrong; a test has it verify these."""
    now = int(time.time())
    claims = {"sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + ttl_s}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_HEADER}.{payload}".encode("ascii")
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{_HEADER}.{payload}.{_b64url(signature)}"


def verify_token(secret: bytes, token: str) -> dict[str, Any]:
    """The token's claims; raises AuthError saying what is wrong with it."""
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired: mint a new one (`session-buddy token`)") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid for this data directory") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is not valid: {exc}") from None
    return claims
