"""A CLI command's link to the shared service: how ``import``, ``migrate``, ``report`` and the
``sync`` commands use the store without opening it themselves.

The service of the data directory is found, or started exactly as a stdio bridge starts it
(:func:`session_buddy.server.discovery.ensure_service`, under the start lock), so a command
never fights a running service, nor a bridge starting one, for the DuckDB file. The command
is one POST to ``/cli/<command>`` (:mod:`session_buddy.server.cli_routes`) whose NDJSON answer
carries progress, heartbeats and the result. Light imports only (no FastMCP, DuckDB or model).
"""

from __future__ import annotations

import http.client
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from session_buddy.core.sessions.current import client_headers
from session_buddy.server.auth import load_secret, mint_token
from session_buddy.server.discovery import ensure_service

TOKEN_TTL_S = 24 * 3600
#: no line (progress or heartbeat, sent every 5 s) for this long: the service is hung
SILENCE_S = 60.0


class CommandFailed(Exception):
    """The service ran the command and it failed; ``invalid`` for bad arguments."""

    def __init__(self, message: str, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid


class ServiceUnavailable(Exception):
    """No answer from the service (it could not start, or stopped during the command)."""


def _headers(data_dir: Path, info: dict[str, Any], user: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
    if info.get("auth", True):
        token = mint_token(load_secret(data_dir, create=False), user, TOKEN_TTL_S)
        headers["Authorization"] = f"Bearer {token}"
    # the folder the command runs in is the client's folder ("this project")
    return headers | client_headers(
        f"cli-{uuid.uuid4().hex}", os.getcwd(), os.environ.get("CLAUDE_PROJECT_DIR") or None
    )


def run_command(
    data_dir: Path,
    config: str | None,
    user: str,
    command: str,
    arguments: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``command`` in the service of ``data_dir`` (started when none runs) and return its
    result; ``on_progress`` gets each progress report. Raises CommandFailed (the command's
    error) or ServiceUnavailable. KeyboardInterrupt closes the connection, which stops the
    job in the service at its next batch boundary."""
    log = data_dir / "logs" / "service.log"
    try:
        info = ensure_service(data_dir, config)
    except (RuntimeError, OSError) as exc:
        raise ServiceUnavailable(f"cannot start the session-buddy service: {exc}") from None
    conn = http.client.HTTPConnection(str(info["host"]), int(info["port"]), timeout=SILENCE_S)
    try:
        conn.request(
            "POST",
            f"/cli/{command}",
            body=json.dumps(arguments).encode("utf-8"),
            headers=_headers(data_dir, info, user),
        )
        response = conn.getresponse()
        if response.status != 200:
            text = response.read().decode("utf-8", "replace")[:500]
            raise ServiceUnavailable(
                f"the service refused {command} (HTTP {response.status}): {text}"
            )
        while raw := response.readline():
            line = json.loads(raw)
            if "progress" in line and on_progress is not None:
                on_progress(line["progress"])
            elif "result" in line:
                return dict(line["result"])
            elif "error" in line:
                raise CommandFailed(str(line["error"]), bool(line.get("invalid")))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ServiceUnavailable(
            f"lost the session-buddy service during {command} ({type(exc).__name__}: {exc}); "
            f"what it stored is kept: run the command again; see {log}"
        ) from None
    finally:
        conn.close()
    raise ServiceUnavailable(
        f"the session-buddy service stopped before {command} finished; what it stored is "
        f"kept: run the command again; see {log}"
    )
