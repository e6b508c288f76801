"""One set of limits for every transport, and the checks that enforce them at the edge.

The stdio front (shared or ``--standalone``) and the HTTP service apply the same limits:
request size (``server.max_request_bytes``), JSON nesting depth, list lengths, name and
path lengths, and text that cannot be stored (lone surrogates, NUL). A request over a limit
gets an error naming the argument and the limit, before any tool runs. Light imports only:
the stdio front uses this module before FastMCP is loaded.
"""

from __future__ import annotations

import json
import os
import re
from itertools import accumulate
from typing import Any

#: Deepest JSON nesting accepted in a message (the JSON-RPC envelope takes 3-4 levels).
MAX_JSON_DEPTH = 64
#: Items in a list argument (names, tags, members, aliases...).
MAX_LIST_ITEMS = 1000
#: Items in one batch call (``store_conversations``); larger imports are split by the caller.
MAX_BATCH_ITEMS = 5000
#: Characters in a name or id (project, team, user, session, tag, alias, cursor...).
MAX_NAME_CHARS = 256
#: Characters in a search query, concept, expression or description.
MAX_QUERY_CHARS = 10_000
#: Characters in a path argument, and bytes in one of its components.
MAX_PATH_CHARS = 4096
MAX_PATH_PART_BYTES = 255
#: Characters of an error message sent back (longer ones are cut, saying so).
MAX_ERROR_CHARS = 4000
#: Characters of one argument in a log line.
MAX_LOG_ARG_CHARS = 200

#: Arguments that are names or ids, at any level (``items[3].project`` too).
NAME_ARGS = frozenset(
    {
        "id",
        "session_id",
        "project",
        "team",
        "user",
        "name",
        "source",
        "target",
        "role",
        "cursor",
        "format",
        "include",
        "mode",
        "kind",
        "status",
        "dependency_type",
        "timestamp",
        "before",
        "after",
    }
)
#: List arguments whose items are names.
NAME_LIST_ARGS = frozenset({"aliases", "members", "projects", "tags"})
#: Arguments that are file system paths.
PATH_ARGS = frozenset({"working_directory", "path"})
#: Free-text arguments bounded by MAX_QUERY_CHARS (content is bounded by storage settings).
QUERY_ARGS = frozenset({"query", "concept", "expression", "description"})
#: List arguments with their own bound.
LIST_LIMITS = {"items": MAX_BATCH_ITEMS}


class LimitError(ValueError):
    """An argument over a limit or not storable; the message names the argument."""


# -- JSON depth ------------------------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of a JSON text, found without decoding it (strings skipped).

    Linear and iterative, so a hostile 50,000-level document costs milliseconds instead of
    a RecursionError in the decoder. Malformed text gives some number; the decoder then
    refuses it anyway.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    opens = raw.count(b"[") + raw.count(b"{")
    if opens <= MAX_JSON_DEPTH:
        return opens  # an upper bound, and within the limit: no need to look closer
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    return json_depth(data) > limit


# -- arguments -------------------------------------------------------------------------------


def _short(value: str, n: int = 60) -> str:
    return repr(value[:n] + "..." if len(value) > n else value)


def check_text(value: str, label: str) -> None:
    """Text that can be stored and sent back: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise LimitError(f"{label}: contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LimitError(
            f"{label}: contains a lone surrogate (U+{ord(value[exc.start]):04X}) at "
            f"position {exc.start}; send valid Unicode text"
        ) from None


def check_path(value: str, label: str) -> None:
    if len(value) > MAX_PATH_CHARS:
        raise LimitError(
            f"{label}: a path of at most {MAX_PATH_CHARS} characters (got {len(value)})"
        )
    if value.startswith("~") and os.path.expanduser(value.split("/", 1)[0]).startswith("~"):
        raise LimitError(f"{label}: cannot expand {_short(value.split('/', 1)[0])} (no such user)")
    for part in value.split("/"):
        if len(part.encode("utf-8")) > MAX_PATH_PART_BYTES:
            raise LimitError(
                f"{label}: each path component at most {MAX_PATH_PART_BYTES} bytes "
                f"({_short(part)} is longer)"
            )


def _check_string(key: str, value: str, label: str) -> None:
    check_text(value, label)
    if key in PATH_ARGS:
        check_path(value, label)
    elif key in NAME_ARGS and len(value) > MAX_NAME_CHARS:
        raise LimitError(
            f"{label}: at most {MAX_NAME_CHARS} characters (got {len(value)}: {_short(value)})"
        )
    elif key in QUERY_ARGS and len(value) > MAX_QUERY_CHARS:
        raise LimitError(f"{label}: at most {MAX_QUERY_CHARS} characters (got {len(value)})")


def _check_value(key: str, value: Any, label: str) -> None:
    if isinstance(value, str):
        _check_string(key, value, label)
    elif isinstance(value, list):
        limit = LIST_LIMITS.get(key, MAX_LIST_ITEMS)
        if len(value) > limit:
            raise LimitError(f"{label}: at most {limit} items (got {len(value)})")
        item_key = "name" if key in NAME_LIST_ARGS else ""
        for i, item in enumerate(value):
            _check_value(item_key, item, f"{label}[{i}]")
    elif isinstance(value, dict):
        if len(value) > MAX_LIST_ITEMS:
            raise LimitError(f"{label}: at most {MAX_LIST_ITEMS} keys (got {len(value)})")
        for k, v in value.items():
            check_text(str(k), f"{label} key {_short(str(k), 30)}")
            _check_value(str(k), v, f"{label}.{str(k)[:30]}")


def check_arguments(arguments: dict[str, Any] | None) -> None:
    """Raise LimitError naming the first argument that breaks a limit."""
    for key, value in (arguments or {}).items():
        check_text(str(key), f"argument name {_short(str(key), 30)}")
        _check_value(str(key), value, f"`{key}`")


def cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


# -- JSON-RPC messages -----------------------------------------------------------------------

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


def rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _valid_id(value: Any) -> bool:
    # MCP: a request id is a string or an integer (not null, not a bool, not a float)
    return isinstance(value, str | int) and not isinstance(value, bool)


def parse_message(
    line: bytes, max_bytes: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(message, None)`` for a well-formed JSON-RPC message, else ``(None, error answer)``.

    Every request gets an answer: a message whose id cannot be trusted is answered with
    ``id: null``, as JSON-RPC 2.0 says.
    """
    if len(line) > max_bytes:
        return None, rpc_error(
            None,
            INVALID_REQUEST,
            f"Invalid Request: {len(line)} bytes, larger than the limit of {max_bytes} "
            "(server.max_request_bytes)",
        )
    if too_deep(line):
        return None, rpc_error(
            None,
            INVALID_REQUEST,
            f"Invalid Request: JSON nested deeper than {MAX_JSON_DEPTH} levels",
        )
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None, rpc_error(None, PARSE_ERROR, "Parse error: not valid JSON (UTF-8)")
    if not isinstance(message, dict):
        return None, rpc_error(
            None, INVALID_REQUEST, "Invalid Request: a message is one JSON object (no batches)"
        )
    has_id = "id" in message
    if (
        has_id
        and not _valid_id(message["id"])
        and ("method" in message or message["id"] is not None)
    ):
        return None, rpc_error(
            None, INVALID_REQUEST, "Invalid Request: `id` must be a string or an integer"
        )
    request_id = message.get("id")
    if message.get("jsonrpc") != "2.0":
        return None, rpc_error(
            request_id, INVALID_REQUEST, 'Invalid Request: `jsonrpc` must be "2.0"'
        )
    if "method" in message and not isinstance(message["method"], str):
        return None, rpc_error(
            request_id, INVALID_REQUEST, "Invalid Request: `method` must be a string"
        )
    if "method" not in message and not has_id:
        return None, rpc_error(None, INVALID_REQUEST, "Invalid Request: no `method` and no `id`")
    problem = _params_problem(message.get("method"), message.get("params"))
    if problem:
        return None, rpc_error(request_id, INVALID_PARAMS, f"Invalid params: {problem}")
    if _SURROGATE_ESCAPE.search(line):
        answer = _lone_surrogate_answer(message)
        if answer is not None:
            return None, answer
    return message, None


#: A JSON escape of a UTF-16 surrogate: only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate_answer(message: dict[str, Any]) -> dict[str, Any] | None:
    """The answer to a message with a lone surrogate (the MCP SDK drops such a message
    unanswered over stdio): for a tool call the tool's own validation error, else
    Invalid params."""
    params = message.get("params") or {}
    request_id = message.get("id")
    if message.get("method") == "tools/call":
        try:
            check_arguments(params.get("arguments"))
        except LimitError as exc:
            text = f"{exc} [invalid_argument]"
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "result": {"content": [{"type": "text", "text": text}], "isError": True},
            }
    try:
        check_text(json.dumps(message, ensure_ascii=False), "message")
    except LimitError:
        return rpc_error(
            request_id, INVALID_PARAMS, "Invalid params: text with a lone surrogate (not Unicode)"
        )
    return None


#: The params of the methods whose shape is checked here (the SDK drops a request whose
#: params it cannot validate over stateless HTTP, leaving it unanswered).
_PARAM_SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    "tools/call": {"name": (str,), "arguments": (dict, type(None))},
    "prompts/get": {"name": (str,), "arguments": (dict, type(None))},
    "resources/read": {"uri": (str,)},
}
_OPTIONAL = frozenset({"arguments"})


def _params_problem(method: Any, params: Any) -> str | None:
    if method is None:
        return None
    if params is not None and not isinstance(params, dict):
        return "`params` must be an object"
    shape = _PARAM_SHAPES.get(method)
    if shape is None:
        return None
    params = params or {}
    for key, types in shape.items():
        if key not in params and key in _OPTIONAL:
            continue
        if not isinstance(params.get(key), types):
            wanted = " or ".join("null" if t is type(None) else _TYPE_NAMES[t] for t in types)
            return f"`params.{key}` must be {wanted}"
    return None


_TYPE_NAMES: dict[type, str] = {str: "a string", dict: "an object"}
