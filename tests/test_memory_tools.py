"""The memory tools through a real MCP client (lite server, the real ONNX model): paging with
cursors, the searches that favour code or errors, summaries, time spans, and the limits
their signatures declare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError


async def call(client: Client[Any], tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data = result.structured_content
    assert isinstance(data, dict)
    return data


async def test_search_pages_with_cursors(client: Client[Any]) -> None:
    now = datetime.now(UTC)
    items = [
        {
            "content": f"deploy checklist step {n}: rotate the deploy keys",
            "project": "ops",
            "timestamp": (now - timedelta(minutes=n)).isoformat(),
        }
        for n in range(7)
    ]
    await call(client, "store_conversations", items=items)
    first = await call(client, "search", query="deploy keys", project="ops", limit=3)
    assert first["count"] == 3 and first["next_cursor"]
    seen = [h["id"] for h in first["hits"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await call(client, "get_more_results", cursor=cursor)
        seen += [h["id"] for h in page["hits"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 7
    again = await call(client, "search", query="ignored", cursor=first["next_cursor"])
    assert [h["id"] for h in again["hits"]] == seen[3:6]
    with pytest.raises(ToolError, match="cursor"):
        await call(client, "get_more_results", cursor="garbage")


async def test_limits_are_in_the_signatures(client: Client[Any]) -> None:
    tools = {t.name: t for t in await client.list_tools()}
    for name in ("search", "quick_search", "search_code", "search_temporal"):
        limit = tools[name].inputSchema["properties"]["limit"]
        assert (limit["minimum"], limit["maximum"]) == (1, 100), name
    for bad in (0, 101):
        with pytest.raises(ToolError, match="limit"):
            await call(client, "quick_search", query="anything", limit=bad)
    with pytest.raises(ToolError, match="items"):
        await call(client, "store_conversations", items=[])


async def test_code_and_errors_first_summary_and_time_span(client: Client[Any]) -> None:
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    plain = (await call(client, "store_reflection", content="Parser cache: keep it small."))["id"]
    code = (
        await call(client, "store_reflection", content="Parser cache:\n```\ndef cache(): ...\n```")
    )["id"]
    error = (
        await call(
            client, "store_reflection", content="Parser cache failed with ERR_CACHE_FULL traceback"
        )
    )["id"]
    await call(client, "store_conversation", content="an old parser cache chat", timestamp=old)

    by_code = await call(client, "search_code", query="parser cache", limit=2)
    assert code.startswith(by_code["hits"][0]["id"]) and by_code["next_cursor"] is None
    by_error = await call(client, "search_errors", query="parser cache", limit=2)
    assert error.startswith(by_error["hits"][0]["id"])  # a short id

    summary = await call(client, "search_summary", query="parser cache")
    assert summary["relevant"] >= 3 and summary["by_kind"]["reflection"] == 3
    assert summary["first"] <= summary["last"]
    assert {t["id"] for t in summary["top"]} >= {plain, code, error}

    listed = await call(client, "search_temporal", expression="last 3 days", verbose=True)
    assert listed["mode"] == "list" and listed["query"].startswith("(")
    assert [h["id"] for h in listed["hits"]] == [error, code, plain]  # newest first
    assert all(h["score"] == 1.0 and h["confidence"] == "high" for h in listed["hits"])
    within = await call(client, "search_temporal", expression="last 3 days", query="parser chat")
    assert within["mode"] == "hybrid" and "old parser" not in str(within["hits"])
