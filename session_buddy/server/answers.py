"""One bound for every tool answer: ``responses.max_chars`` characters of its JSON text.

An answer longer than the setting is cut, and says what was left out: its longest lists lose
items from their end first (``cut``: "4 of 10 hits left out ..."), then, when no list is left
to shorten, its longest texts lose their end. The bound is applied to every tool's result by
:class:`AnswerBound`, a middleware, so one setting holds for all tools; tools themselves
answer compactly by default (docs/tools.md) and rarely reach it.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from fastmcp.server.middleware import Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from mcp.types import TextContent

__all__ = ["AnswerBound", "bound", "chars"]

#: room kept for the note saying what was cut
NOTE_ROOM = 240
MAX_ROUNDS = 50


def chars(value: Any) -> int:
    """The length of ``value`` as a tool answer's JSON text (FastMCP's serialisation)."""
    return len(pydantic_core.to_json(value, fallback=str).decode())


def _containers(value: Any, key: str = "") -> list[tuple[Any, Any, str]]:
    """Every (parent, key, name) of a list or string inside ``value``, for cutting."""
    found: list[tuple[Any, Any, str]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        name = str(k) if isinstance(k, str) else key
        if isinstance(v, list | str):
            found.append((value, k, name))
        if isinstance(v, dict | list):
            found.extend(_containers(v, name))
    return found


def _cut_list(items: list[Any], over: int) -> int:
    """Drop items from the end until ``over`` characters are gone; how many were dropped."""
    dropped = 0
    while items and over > 0:
        over -= chars(items.pop()) + 1
        dropped += 1
    return dropped


def _largest(value: Any, kind: type) -> tuple[Any, Any, str] | None:
    candidates = [c for c in _containers(value) if isinstance(c[0][c[1]], kind) and c[0][c[1]]]
    return max(candidates, key=lambda c: chars(c[0][c[1]]), default=None)


def bound(value: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """``value`` within ``max_chars`` (a copy when cut, with ``cut`` saying what went)."""
    if chars(value) <= max_chars:
        return value
    out: dict[str, Any] = json.loads(pydantic_core.to_json(value, fallback=str))
    notes: list[str] = []
    for kind in (list, str):
        for _ in range(MAX_ROUNDS):
            over = chars(out) + NOTE_ROOM - max_chars
            found = _largest(out, kind) if over > 0 else None
            if found is None:
                break
            parent, key, name = found
            if kind is list:
                total = len(parent[key])
                dropped = _cut_list(parent[key], over)
                notes.append(f"{dropped} of {total} {name} left out")
            else:
                text: str = parent[key]
                keep = max(0, len(text) - over - 40)
                parent[key] = f"{text[:keep]}… [{len(text) - keep} characters cut]"
                notes.append(f"the end of {name} ({len(text) - keep} characters) left out")
    out["cut"] = (
        "; ".join(notes) + f" to keep the answer within responses.max_chars={max_chars}: "
        "ask with a smaller limit=, the next_cursor, or get(id) for one item whole"
    )
    return out


def _bound_text(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - NOTE_ROOM)
    return (
        f"{text[:keep]}\n… [cut: {len(text) - keep} characters left out to keep the answer "
        f"within responses.max_chars={max_chars}]"
    )


def bound_result(result: ToolResult, max_chars: int) -> ToolResult:
    """A tool's result within ``max_chars`` characters of text (the same result if it is)."""
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    if sum(len(t) for t in texts) <= max_chars:
        return result
    structured = result.structured_content
    if structured is None or len(texts) != 1:
        content = [
            TextContent(type="text", text=_bound_text(c.text, max_chars))
            if isinstance(c, TextContent)
            else c
            for c in result.content
        ]
        return ToolResult(content=content, meta=result.meta, is_error=result.is_error)
    # the text is the structured content (or, when FastMCP wrapped a value that is no
    # object, its "result": a cut answer then shows the wrapper, with the note beside it)
    shown = bound(structured, max_chars)
    text = pydantic_core.to_json(shown, fallback=str).decode()
    return ToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=shown,
        meta=result.meta,
        is_error=result.is_error,
    )


class AnswerBound(Middleware):
    """Bounds every tool's answer to ``responses.max_chars`` (module doc)."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        result = await call_next(context)
        if isinstance(result, ToolResult):
            return bound_result(result, self.max_chars)
        return result
