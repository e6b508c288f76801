"""A real webhook receiver on loopback for tests: checks each POST's HMAC signature, and
can be told to fail (an HTTP status, a number of times or always), to hold requests, and
to recover."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from session_buddy.core.webhooks import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)


@dataclass
class Receiver:
    secret: bytes
    url: str = ""
    fail_next: int = 0  # answer `fail_status` to this many requests
    fail_always: bool = False
    fail_status: int = 500
    hold: threading.Event = field(default_factory=threading.Event)  # clear: requests wait
    attempts: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.hold.set()

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        self.hold.wait(30)
        headers = {k.lower(): v for k, v in headers.items()}
        stamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        with self.lock:
            attempt = {
                "event_id": headers.get(EVENT_ID_HEADER.lower()),
                "type": headers.get(EVENT_TYPE_HEADER.lower()),
                "signature": signature,
                "body": json.loads(body),
            }
            self.attempts.append(attempt)
            if not verify(self.secret, stamp, body, signature):
                self.bad_signatures += 1
                return 401
            if self.fail_always or self.fail_next > 0:
                self.fail_next = max(0, self.fail_next - 1)
                return self.fail_status
            self.accepted.append(attempt)
            return 204

    def accepted_of(self, event_type: str) -> list[dict[str, Any]]:
        return [a for a in self.accepted if a["type"] == event_type]


@contextmanager
def webhook_receiver(secret: bytes) -> Iterator[Receiver]:
    receiver = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.hold.set()
        server.shutdown()
        server.server_close()
