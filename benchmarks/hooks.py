"""Claude Code hook latency and what each hook injects; the size of the tool definitions.

Runs the real hook command (``python -m session_buddy.cli hook <Event>``, a fresh process per
run, as Claude Code runs it) against a real shared service on a temporary data dir holding
``--items`` memories, and prints p50/p95 wall times:

- SessionStart and UserPromptSubmit with the service warm;
- SessionStart with no service running (the fallback to the handoff file; the hook starts the
  service in the background);
- PreToolUse with learned permissions on;

plus the characters each hook injected, and the size of the server's tool definitions (all of
``tools/list``, and the part Claude Code sends when it loads every tool: name, description and
input schema).

    .venv/bin/python benchmarks/hooks.py [--items 1000] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOPICS = [
    (
        "payments",
        "the webhook retry charged the card twice; charge() is idempotent on the order id",
    ),
    ("auth", "JWT verification failed after the key rotation; verify_token reads the kid header"),
    ("search", "BM25 scores drifted after the stemmer upgrade; rebuild the postings"),
    ("deploy", "the container healthcheck timed out; raise start_period to 30 s"),
    ("tests", "pytest was slow because the fixture rebuilt the database per test"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_hook(env: dict[str, str], event: str, payload: dict[str, Any]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "session_buddy.cli", "hook", event],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    seconds = time.perf_counter() - started
    text = ""
    if done.stdout.strip():
        output = json.loads(done.stdout)["hookSpecificOutput"]
        text = output.get("additionalContext") or output.get("permissionDecisionReason") or ""
    return seconds, text


def series(env: dict[str, str], event: str, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    times, sizes = [], []
    for payload in payloads:
        seconds, text = run_hook(env, event, payload)
        times.append(seconds * 1000)
        sizes.append(len(text))
    return {
        "p50_ms": round(statistics.median(times)),
        "p95_ms": round(percentile(times, 0.95)),
        "injected_chars_max": max(sizes),
        "injected_chars_mean": round(statistics.mean(sizes)),
        "runs": len(times),
    }


def tool_definition_sizes() -> dict[str, int]:
    from session_buddy.server.catalog import load_catalog

    tools = load_catalog()["tools/list"]["tools"]
    loaded = [
        {
            "name": t["name"],
            "description": t.get("description", ""),
            "input_schema": t["inputSchema"],
        }
        for t in tools
    ]
    return {
        "tools": len(tools),
        "tools_list_chars": len(json.dumps({"tools": tools})),
        "claude_code_loaded_chars": len(json.dumps(loaded)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    from session_buddy.server.bridge import call_tool
    from tests.mcp_peers import stop_service

    tmp = Path(tempfile.mkdtemp(prefix="sb-hooks-bench-"))
    data = tmp / "data"
    project = tmp / "payments"
    (project / ".git").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_BUDDY_")}
    env.update(
        SESSION_BUDDY_DATA_DIR=str(data),
        HOME=str(tmp / "home"),
        PYTHONPATH=str(ROOT),
        SESSION_BUDDY_PERMISSIONS__ENABLED="true",
    )
    os.environ.update(env)
    rng = random.Random(7)
    try:
        items = []
        for n in range(args.items):
            project_name, fact = TOPICS[n % len(TOPICS)]
            items.append(
                {
                    "content": f"{fact} (note {n}, seen in {rng.choice(['ci', 'review', 'prod'])})",
                    "project": "payments" if project_name == "payments" else project_name,
                    "role": "assistant",
                }
            )
        for start in range(0, len(items), 500):
            call_tool(data, None, "store_conversations", {"items": items[start : start + 500]})
        call_tool(
            data,
            None,
            "store_reflection",
            {"content": TOPICS[0][1], "project": "payments", "tags": ["decision"]},
        )
        for _ in range(3):
            call_tool(data, None, "permissions", {"action": "list"})
        payload = {"cwd": str(project), "source": "startup"}
        start_payloads = [{**payload, "session_id": f"s{n}"} for n in range(args.runs)]
        prompts = ["why was the card charged twice?", "kubernetes helm chart rollout"]
        prompt_payloads = [
            {"cwd": str(project), "session_id": f"p{n}", "prompt": prompts[n % 2]}
            for n in range(args.runs)
        ]
        bash = {"cwd": str(project), "tool_name": "Bash", "tool_input": {"command": "pytest -q"}}
        for _ in range(3):
            run_hook(env, "PostToolUse", bash)
        report = {
            "items": args.items,
            "SessionStart_warm": series(env, "SessionStart", start_payloads),
            "UserPromptSubmit_warm": series(env, "UserPromptSubmit", prompt_payloads),
            "PreToolUse_warm": series(env, "PreToolUse", [bash] * args.runs),
        }
        cold_times, cold_sizes = [], []
        for n in range(5):  # no service: the fallback, and the hook starts one
            stop_service(data)
            seconds, text = run_hook(env, "SessionStart", {**payload, "session_id": f"c{n}"})
            cold_times.append(seconds * 1000)
            cold_sizes.append(len(text))
            time.sleep(3)  # let the started service come up before it is stopped again
        report["SessionStart_cold"] = {
            "p50_ms": round(statistics.median(cold_times)),
            "max_ms": round(max(cold_times)),
            "injected_chars_max": max(cold_sizes),
            "runs": len(cold_times),
        }
        report["tool_definitions"] = tool_definition_sizes()
    finally:
        stop_service(data)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
