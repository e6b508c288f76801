"""What the server lists (tools, prompts, resources), answered before the server is loaded.

Claude Code does not wait for MCP servers in ``claude -p``: it sends its first model request
about 170 ms after it starts, with whatever tools its servers have listed by then. A cold
shared service takes seconds to start, so the stdio front answers ``tools/list``,
``prompts/list``, ``resources/list`` and ``resources/templates/list`` at once from
``catalog.json`` beside this module: the server's own answers, written by
``session-buddy docs --write`` (a test checks the file equals what the server lists, as it does
for ``initialize``). Tool *calls* still go to the server. Standard library only.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).resolve().parent / "catalog.json"

#: The list methods the front answers itself, and the key of each in catalog.json.
METHODS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")


@cache
def load_catalog(path: Path = CATALOG_FILE) -> dict[str, dict[str, Any]]:
    """The stored answers by method; empty when the file is missing or unreadable (the front
    then forwards list requests to the server as it does every other request)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {m: data[m] for m in METHODS if isinstance(data.get(m), dict)}


def listed(method: object, params: object) -> dict[str, Any] | None:
    """The stored answer to a list request, or None when the server must answer (another
    method, or a request for a later page: the stored answers are whole, one page each)."""
    if not isinstance(method, str) or method not in METHODS:
        return None
    if isinstance(params, dict) and params.get("cursor"):
        return None
    return load_catalog().get(method)
