"""A scripted stand-in for the Anthropic Messages API, on loopback, for driving the real
Claude Code CLI (``claude -p``) in tests.

Claude Code talks to whatever ``ANTHROPIC_BASE_URL`` names. This server answers
``POST /v1/messages`` (streaming SSE or plain JSON, as asked) from a script, and records every
request so a test can read exactly what reached the model's context: the system prompt, the
tool definitions, hook output injected as context, tool results.

A script is a list of *steps*; each main-conversation request (one that offers tools) takes
the next step. A step is a callable ``(request) -> list[block]`` or a plain list of blocks,
where a block is ``{"type": "text", "text": ...}`` or
``{"type": "tool_use", "name": ..., "input": {...}}``. A step with a tool_use ends with
``stop_reason: tool_use``; Claude Code runs the tool and sends its result in the next request.
When the script is used up the answer is a short text. Side requests (no tools: titles,
summaries) get a short text and do not consume the script.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]
Step = list[Block] | Callable[[dict[str, Any]], list[Block]]

_ids = itertools.count(1)


def text(value: str) -> Block:
    return {"type": "text", "text": value}


def tool_use(name: str, **arguments: Any) -> Block:
    return {"type": "tool_use", "name": name, "input": arguments}


def request_text(request: dict[str, Any]) -> str:
    """Everything in a request's messages and system prompt, as one string (for asserts)."""
    parts: list[str] = []
    system = request.get("system")
    if isinstance(system, str):
        parts.append(system)
    elif isinstance(system, list):
        parts.extend(str(b.get("text", "")) for b in system if isinstance(b, dict))

    def walk(content: Any) -> None:
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    if "text" in block:
                        parts.append(str(block["text"]))
                    if "content" in block:
                        walk(block["content"])
                    if block.get("type") == "tool_use":
                        parts.append(json.dumps(block.get("input")))

    for message in request.get("messages") or []:
        walk(message.get("content"))
    return "\n".join(parts)


def last_tool_results(request: dict[str, Any]) -> list[str]:
    """The tool results in the last user message of a request (text only)."""
    messages = request.get("messages") or []
    if not messages:
        return []
    content = messages[-1].get("content")
    found: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    found.append(inner)
                elif isinstance(inner, list):
                    found.append(
                        "\n".join(str(b.get("text", "")) for b in inner if isinstance(b, dict))
                    )
    return found


class MessagesStandIn:
    """Start with :meth:`start`, give ``url`` to Claude Code, read :attr:`requests` after."""

    def __init__(self, script: list[Step] | None = None) -> None:
        self.script: list[Step] = list(script or [])
        self.requests: list[dict[str, Any]] = []  # every /v1/messages body, in order
        self.main_requests: list[dict[str, Any]] = []  # the ones that offered tools
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MessagesStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                self._json(200, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                path = self.path.split("?", 1)[0]
                if path.endswith("/count_tokens"):
                    self._json(200, {"input_tokens": 100})
                    return
                if not path.endswith("/v1/messages"):
                    self._json(200, {})
                    return
                blocks = standin._answer(body)
                if body.get("stream"):
                    self._stream(body, blocks)
                else:
                    self._json(200, standin._message(body, blocks))

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], blocks: list[Block]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                for event, data in standin._events(body, blocks):
                    chunk = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
                    self.wfile.write(chunk)
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any]) -> list[Block]:
        with self._lock:
            self.requests.append(body)
            if not body.get("tools"):
                return [text("ok")]
            self.main_requests.append(body)
            step = self.script.pop(0) if self.script else [text("Done.")]
        blocks = step(body) if callable(step) else step
        return [
            {**b, "id": f"toolu_{next(_ids):04d}"} if b["type"] == "tool_use" else b for b in blocks
        ]

    @staticmethod
    def _stop_reason(blocks: list[Block]) -> str:
        return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"

    def _message(self, body: dict[str, Any], blocks: list[Block]) -> dict[str, Any]:
        return {
            "id": f"msg_{next(_ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-standin"),
            "content": blocks,
            "stop_reason": self._stop_reason(blocks),
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 10},
        }

    def _events(self, body: dict[str, Any], blocks: list[Block]) -> list[tuple[str, Any]]:
        start = self._message(body, [])
        start["stop_reason"] = None
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                first = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": first},
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason(blocks), "stop_sequence": None},
                    "usage": {"output_tokens": 10},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events
