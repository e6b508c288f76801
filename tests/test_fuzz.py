"""A bounded fuzz pass: bad inputs derived from every tool's schema, through the bridge.

Deterministic (a seeded generator, no hypothesis): a few hundred calls over every tool and
resource. It fails on any crash, hang or unanswered request, any non-JSON-RPC line on
stdout, any traceback in the service log, and checks the store is intact afterwards.
Path-like values stay inside the test's folder (the suite may run as root).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from tests.mcp_peers import StdioPeer, server_env, stop_service

SEED = 20
VALUES_PER_PROPERTY = 4
WINDOW = 8  # requests in flight at once (the bridge's workers)
#: Tools that would walk or touch folders outside the test: given only the test's paths.
PATH_PROPERTIES = {"working_directory", "path"}


def _strings(base: Path) -> list[Any]:
    return [
        "",
        " ",
        "\ud800",
        "a\udfffb",
        "nul\x00byte",
        "../../../../etc/passwd",
        "x" * 5000,
        "é" * 300,
        "%2e%2e%2f",
        "-1",
        "*",
        "{{}}",
        "'; drop table items; --",
        "\u202e\u0000",
        str(base / "missing" / "folder"),
    ]


def _paths(base: Path) -> list[Any]:
    a_file = base / "a_file.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    return [
        "",
        str(a_file),
        str(base / "missing"),
        str(base / ("n" * 300)),
        str(base) + "/" + "d/" * 2100,
        str(base / "nul\x00"),
        str(base / "\ud800"),
        "relative/../..",
        "~nosuchuser/x",
        str(base / "a_file.txt" / "below"),
        42,
        ["x"],
    ]


OTHER: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63,
    -(2**63) - 1,
    1.5,
    1e308,
    [],
    [None],
    ["x"] * 1001,
    [{"a": 1}],
    {},
    {"\ud800": 1},
    {"k": "\x00"},
    {"nested": {"deeper": [1, [2, [3]]]}},
]


def _cases(tools: list[dict[str, Any]], base: Path) -> list[tuple[str, Any]]:
    rng = random.Random(SEED)
    strings, paths = _strings(base), _paths(base)
    cases: list[tuple[str, Any]] = []
    for tool in sorted(tools, key=lambda t: t["name"]):
        name, schema = tool["name"], tool.get("inputSchema", {})
        props: dict[str, Any] = schema.get("properties", {})
        required = {p: _plausible(props[p], base) for p in schema.get("required", [])}
        cases += [(name, {}), (name, {**required, "no_such_argument": 1}), (name, [1, 2])]
        for prop in sorted(props):
            if prop in PATH_PROPERTIES:
                values = paths  # every path case: they reach the file system
            else:
                values = rng.sample(strings + OTHER, VALUES_PER_PROPERTY)
            for value in values:
                cases.append((name, {**required, prop: value}))
    return cases


def _plausible(schema: dict[str, Any], base: Path) -> Any:
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    if "string" in kinds:
        return schema.get("enum", ["fuzz"])[0]
    if "integer" in kinds:
        return 1
    if "array" in kinds:
        return []
    if "object" in kinds:
        return {}
    return None


def _resource_reads(base: Path) -> list[str]:
    names = ["..", "../../etc", "%2e%2e", "a%00b", "x" * 5000, "%ED%A0%80", "ok"]
    return [f"session-buddy://handoff/{n}/latest" for n in names] + [
        f"session-buddy://sessions/{n}/handoff" for n in names
    ]


def _answer_ok(answer: dict[str, Any]) -> bool:
    if "error" in answer:
        return isinstance(answer["error"].get("message"), str)
    return isinstance(answer.get("result"), dict)


def test_fuzz_every_tool_through_the_bridge(tmp_path: Path) -> None:
    data = tmp_path / "data"
    work = tmp_path / "work"
    work.mkdir()
    env = server_env(tmp_path, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb")
    peer = StdioPeer(env, work)
    problems: list[str] = []
    started = time.monotonic()
    try:
        peer.initialize()
        kept = peer.call(
            "store_reflection", {"content": "fuzz canary zqv9 survives", "project": "k"}
        )
        kept_id = kept["structuredContent"]["id"]
        tools = peer.wait_for(peer.request("tools/list"))["result"]["tools"]
        requests = [("tools/call", {"name": n, "arguments": a}) for n, a in _cases(tools, work)]
        requests += [("resources/read", {"uri": uri}) for uri in _resource_reads(work)]
        assert 300 <= len(requests) <= 1500, len(requests)
        for start in range(0, len(requests), WINDOW):
            window = {peer.request(m, p): (m, p) for m, p in requests[start : start + WINDOW]}
            deadline = time.monotonic() + 60
            while window:
                left = deadline - time.monotonic()
                try:
                    assert left > 0, "timed out"
                    message = peer.read_message(timeout=left)
                except AssertionError as exc:
                    raise AssertionError(
                        f"unanswered ({exc}): {list(window.values())!r:.2000}"
                    ) from None
                case = window.pop(message.get("id"), None)  # type: ignore[arg-type]
                if case is not None and not _answer_ok(message):
                    problems.append(f"{case!r:.300} -> {message!r:.300}")
        assert peer.proc.poll() is None, peer.stderr_text()
        # the store is intact and still answers
        found = peer.call(
            "search", {"query": "zqv9", "project": "k", "mode": "keyword", "fields": ["id"]}
        )
        assert [h["id"] for h in found["structuredContent"]["hits"]] == [kept_id]
        stats = peer.call("reflection_stats", {"project": "k"})
        assert stats["structuredContent"]["total"] >= 1
        print(f"fuzz: {len(requests)} requests in {time.monotonic() - started:.1f} s")
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        peer.proc.wait(timeout=60)
        peer.finish_stdout()
        stop_service(data)
    log = (data / "logs" / "service.log").read_text(encoding="utf-8", errors="replace")
    tracebacks = [chunk[:600] for chunk in log.split("Traceback (most recent call last)")[1:]]
    if os.environ.get("FUZZ_VERBOSE"):
        for chunk in tracebacks:
            print("----", chunk)
    assert problems == []
    assert tracebacks == [], f"{len(tracebacks)} tracebacks in the service log"
    assert log.count("\n") < 5000, "the service log grew out of bounds"
