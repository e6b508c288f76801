"""A local stand-in for Akosha's MCP server, for the sync tests and the benchmark.

A FastMCP server on loopback (stateless streamable HTTP, bearer token) exposing Akosha's two
ingestion tools with their signatures and answers (``akosha/mcp/tools/session_buddy_tools.py``):
``akosha_store_memory(memory_id, text, embedding, metadata)`` and
``akosha_batch_store_memories(memories)`` (at most 1,000; ``{status, total, stored, failed,
errors}``). Like Akosha's DuckDB hot store, ``memory_id`` is a primary key: a memory sent
again is refused per item with a "Duplicate key" error, and is not stored twice.

It can be told to fail (:class:`Faults`) and to recover (``faults.clear()``):

- ``down``: every tool call gets HTTP 500 (the remote is broken);
- ``rate``: this share of tool calls fails with one of ``modes``: ``500`` (not processed),
  ``429`` (``Retry-After``; not processed), ``timeout`` (processed, the answer comes after
  ``hang_s``, later than the client waits), ``drop`` (processed, the connection is cut after
  the status line, before the body);
- ``fail_next``: the faults of the next calls, in order; ``delay_s``: every call is slow;
- ``partial_rate``: this share of batch calls refuses ``partial_share`` of their items.

Run it alone: ``python tests/akosha_standin.py --port 8682 --token T``.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HTTP_MODES = ("500", "429", "timeout", "drop")


@dataclass
class Faults:
    down: bool = False
    rate: float = 0.0
    modes: tuple[str, ...] = HTTP_MODES
    partial_rate: float = 0.0
    partial_share: float = 0.3
    retry_after: str = "0"
    hang_s: float = 1.0
    #: the faults of the next tool calls, in order (before ``rate`` is drawn)
    fail_next: list[str] = field(default_factory=list)
    #: every tool call waits this long first (a slow remote)
    delay_s: float = 0.0
    seed: int = 7
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def clear(self) -> None:
        with self._lock:
            self.down = False
            self.rate = 0.0
            self.partial_rate = 0.0
            self.fail_next.clear()

    def pick(self) -> str | None:
        """The fault of one tool call, or None."""
        with self._lock:
            if self.down:
                return "500"
            if self.fail_next:
                return self.fail_next.pop(0)
            if self.rate and self._random.random() < self.rate:
                return self._random.choice(self.modes)
            return None

    def refused(self, ids: list[str]) -> set[str]:
        """The memory_ids one batch call refuses (partial failure)."""
        with self._lock:
            if not (self.partial_rate and self._random.random() < self.partial_rate):
                return set()
            return {i for i in ids if self._random.random() < self.partial_share}


class AkoshaStandin:
    """The stand-in server, run by uvicorn in a thread of this process."""

    def __init__(self, token: str | None = "standin-token", faults: Faults | None = None) -> None:
        self.token = token
        self.faults = faults or Faults()
        self.stored: dict[str, dict[str, Any]] = {}
        #: how often each memory_id was received (stored or refused as duplicate)
        self.received: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.calls = 0
        self.unauthorised = 0
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- what arrived ---------------------------------------------------------------------

    def originals(self) -> Counter[str]:
        """How many stored memories each original item has (more than 1: a duplicate)."""
        return Counter(m["metadata"].get("original_id") for m in self.stored.values())

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.originals().values() if n > 1)

    # -- the tools --------------------------------------------------------------------------

    def _store(
        self, memory_id: str, text: str, embedding: Any, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        with self._lock:
            self.received[memory_id] += 1
            if not memory_id or not text:
                return {"status": "failed", "memory_id": memory_id, "error": "Invalid memory"}
            if not isinstance(embedding, list) or len(embedding) != 384:
                return {
                    "status": "failed",
                    "memory_id": memory_id,
                    "error": "Embedding is required: must be a 384-dimensional vector",
                }
            if memory_id in self.stored:
                return {
                    "status": "failed",
                    "memory_id": memory_id,
                    "error": f'Constraint Error: Duplicate key "conversation_id: {memory_id}" '
                    "violates primary key constraint.",
                }
            self.stored[memory_id] = {"text": text, "metadata": dict(metadata or {})}
        return {
            "status": "stored",
            "memory_id": memory_id,
            "stored_at": datetime.now(UTC).isoformat(),
            "embedding_dim": len(embedding),
        }

    def build(self) -> Any:
        from fastmcp import FastMCP

        mcp: FastMCP = FastMCP("akosha-standin")

        @mcp.tool(name="akosha_store_memory")
        async def store_memory(
            memory_id: str,
            text: str,
            embedding: list[float] | list[list[float]] | None = None,
            metadata: dict[str, Any] | None = None,
        ) -> dict[str, Any]:
            return self._store(memory_id, text, embedding, metadata)

        @mcp.tool(name="akosha_batch_store_memories")
        async def batch_store_memories(memories: list[dict[str, Any]]) -> dict[str, Any]:
            if len(memories) > 1000:
                return {
                    "status": "failed",
                    "total": len(memories),
                    "stored": 0,
                    "failed": len(memories),
                    "error": "Batch size exceeds maximum of 1000 memories",
                }
            refused = self.faults.refused([str(m.get("memory_id")) for m in memories])
            errors: list[dict[str, Any]] = []
            stored = 0
            for m in memories:
                memory_id = str(m.get("memory_id") or "")
                if memory_id in refused:
                    errors.append({"memory_id": memory_id, "error": "injected item failure"})
                    continue
                answer = self._store(
                    memory_id, m.get("text"), m.get("embedding"), m.get("metadata")
                )
                if answer["status"] == "stored":
                    stored += 1
                else:
                    errors.append({"memory_id": memory_id, "error": answer["error"]})
            failed = len(memories) - stored
            return {
                "status": "completed" if not failed else ("partial" if stored else "failed"),
                "total": len(memories),
                "stored": stored,
                "failed": failed,
                "errors": errors,
                "stored_at": datetime.now(UTC).isoformat(),
            }

        return mcp

    # -- faults at the HTTP level ---------------------------------------------------------------

    def asgi(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        import logging

        # an injected drop makes the MCP server log a traceback: expected here
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.CRITICAL)
        app = self.build().http_app(path="/mcp", stateless_http=True, json_response=True)

        async def reply(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"error": "injected"}'})

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = dict(scope.get("headers") or [])
            if self.token and headers.get(b"authorization") != f"Bearer {self.token}".encode():
                self.unauthorised += 1
                await reply(send, 401, [(b"content-type", b"application/json")])
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            fault = None
            if b'"tools/call"' in body:
                self.calls += 1
                fault = self.faults.pick()
            if fault:
                self.injected[fault] += 1
            if self.faults.delay_s and b'"tools/call"' in body:
                await asyncio.sleep(self.faults.delay_s)
            if fault == "500":
                await reply(send, 500, [(b"content-type", b"application/json")])
                return
            if fault == "429":
                ra = self.faults.retry_after.encode()
                await reply(
                    send, 429, [(b"content-type", b"application/json"), (b"retry-after", ra)]
                )
                return
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    await asyncio.Event().wait()  # the body was read: wait for disconnect
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def faulty_send(message: Message) -> None:
                if fault == "drop" and message["type"] == "http.response.body":
                    raise ConnectionAbortedError("injected: connection dropped")
                if fault == "timeout" and message["type"] == "http.response.start":
                    await asyncio.sleep(self.faults.hang_s)
                await send(message)

            await app(scope, replay, faulty_send)

        return guarded

    # -- running -------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        import uvicorn

        config = uvicorn.Config(
            self.asgi(), host="127.0.0.1", port=port, log_level="critical", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="akosha-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Akosha stand-in did not start")
            time.sleep(0.01)
        bound = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{bound}/mcp"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> AkoshaStandin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8682)
    parser.add_argument("--token", default="standin-token")
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    standin = AkoshaStandin(args.token, Faults(rate=args.rate))
    print(json.dumps({"url": standin.start(args.port)}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
