"""How long each tool's answer is, in characters of the JSON text an agent reads, for a
realistic store (issue 13: answers cost context).

Builds a store of ``--items`` (default 1,200) coding memories through a real FastMCP client:
conversation turns of a few hundred to a few thousand characters (code, tracebacks) with the
metadata an import keeps (transcript path, line, uuid), and reflections with tags, across
five projects; opens, checkpoints and ends a session in a git repository (so ``start`` brings
back a handoff); then calls every tool once with typical arguments and prints the length of
each answer (the tool's default answer; ``verbose``/``detail`` rows for the long form).

    .venv/bin/python benchmarks/answer_sizes.py [--items 1200] [--markdown]

Run it with ``PYTHONPATH`` set to another checkout to measure that code (calls whose
arguments it does not know answer with an error, measured as such).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

MODULES = ["auth", "billing", "scheduler", "ingest", "storage", "api", "cache", "worker"]
PROJECTS = ["widget", "billing-svc", "ingest", "dashboard", "infra-tools"]
ERRORS = [
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "TimeoutError: the pool timed out after 30.0 s",
    "KeyError: 'tenant_id'",
    "duckdb.IOException: Could not set lock on file",
    "sqlalchemy.exc.IntegrityError: duplicate key value violates unique constraint",
    "PermissionError: [Errno 13] Permission denied: '/var/run/worker.sock'",
]
ACTIONS = [
    "adding a retry with exponential backoff",
    "moving the call off the event loop",
    "batching the writes in one transaction",
    "closing the connection in a finally block",
    "normalising timestamps to UTC",
    "caching the token for its lifetime",
    "streaming the file instead of reading it whole",
]
TOPICS = [
    "the CSV export",
    "flaky integration tests",
    "memory growth in the worker",
    "slow cold starts",
    "the nightly backup job",
    "the DuckDB write lock",
]
CODE = '''```python
def {name}(session, items):
    """Write the items of one batch; retried on a lost connection."""
    for attempt in range(5):
        try:
            with session.begin():
                session.execute(insert(Item), [i.row() for i in items])
            return len(items)
        except ConnectionResetError:
            time.sleep(0.1 * 2 ** attempt)
    raise StorageError("gave up after 5 attempts")
```'''
TRACE = """Traceback (most recent call last):
  File "/srv/{module}/{module}/worker.py", line {line}, in run
    result = await self.handle(job)
  File "/srv/{module}/{module}/handlers.py", line {line2}, in handle
    rows = await self.store.write(job.items)
{error}"""


def _fill(rng: random.Random, text: str) -> str:
    return text.format(
        module=rng.choice(MODULES),
        error=rng.choice(ERRORS),
        action=rng.choice(ACTIONS),
        topic=rng.choice(TOPICS),
        name=f"write_{rng.choice(MODULES)}_batch",
        line=rng.randint(20, 900),
        line2=rng.randint(20, 900),
    )


def assistant_turn(rng: random.Random) -> str:
    parts = [
        _fill(rng, "Looking at {topic}: the {module} service fails with {error}."),
        _fill(
            rng,
            "The cause is in {module}/handlers.py: the connection is reused after the "
            "peer closed it, so the next write fails. I fixed it by {action}.",
        ),
    ]
    if rng.random() < 0.5:
        parts.append(_fill(rng, TRACE))
    if rng.random() < 0.6:
        parts.append(_fill(rng, CODE))
    parts += [
        _fill(
            rng,
            "I ran the tests of {module} again: 214 passed, 2 skipped. The change also "
            "makes {topic} less noisy, since the retries are logged once per batch.",
        )
        for _ in range(rng.randint(0, 4))
    ]
    return "\n\n".join(parts)


def user_turn(rng: random.Random) -> str:
    return _fill(
        rng,
        rng.choice(
            [
                "The {module} job failed again last night with {error}. Can you look at why?",
                "Please fix {topic}; we keep seeing {error} in {module}.",
                "Why is {topic} slow since Monday? The {module} logs show retries.",
            ]
        ),
    )


def reflection(rng: random.Random) -> tuple[str, list[str]]:
    text = _fill(
        rng,
        rng.choice(
            [
                "Fix: {error} in {module} came from a reused connection; fixed by {action}.",
                "Decision: for {topic} we keep {module} stateless and rely on {action}.",
                "Gotcha: {module} raises {error} when the batch is empty; guard it before writing.",
            ]
        ),
    )
    return text, rng.sample(["fix", "decision", "gotcha", "duckdb", "retry", "worker"], 2)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(folder: Path) -> Path:
    repo = folder / "widget"
    (repo / "widget").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "widget"\nversion = "0.1.0"\n')
    (repo / "widget" / "__init__.py").write_text("def parse(s):\n    return s.split()\n")
    (repo / "tests" / "test_parse.py").write_text("def test_parse():\n    assert True\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "add", ".")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "init")
    return repo


async def fill(client: Any, items: int, rng: random.Random) -> None:
    reflections = items // 4
    turns = items - reflections
    batch: list[dict[str, Any]] = []
    for n in range(turns):
        project = PROJECTS[n % len(PROJECTS)]
        session = f"{(n // 40):08x}-5e6f-4a7b-8c9d-{n // 40:012x}"
        batch.append(
            {
                "content": assistant_turn(rng) if n % 2 else user_turn(rng),
                "role": "assistant" if n % 2 else "user",
                "project": project,
                "session_id": session,
                "metadata": {
                    "transcript": f"/home/dev/.claude/projects/-home-dev-src-{project}/{session}.jsonl",
                    "line": n % 40 + 1,
                    "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
                    "source": "claude-code",
                    "cwd": f"/home/dev/src/{project}",
                },
            }
        )
        if len(batch) == 200:
            await client.call_tool("store_conversations", {"items": batch})
            batch = []
    if batch:
        await client.call_tool("store_conversations", {"items": batch})
    for n in range(reflections):
        text, tags = reflection(rng)
        await client.call_tool(
            "store_reflection",
            {"content": f"{text} (note {n})", "tags": tags, "project": PROJECTS[n % 5]},
        )


async def size(client: Any, tool: str, args: dict[str, Any]) -> tuple[int, Any]:
    """The length of the answer's text, and its structured content (or the error)."""
    result = await client.call_tool(tool, args, raise_on_error=False)
    text = "".join(getattr(c, "text", "") for c in result.content)
    return len(text), result.structured_content if not result.is_error else text


def calls(repo: Path, ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(row label, tool, arguments), in the order they run."""
    rid, sid = ids["reflection"], ids["session"]
    q = "duckdb lock on file in the worker"
    return [
        ("search (10 hits)", "search", {"query": q}),
        ("search verbose", "search", {"query": q, "verbose": True}),
        ("search, nothing stored", "search", {"query": "kubernetes helm chart rollout"}),
        ("search limit=50", "search", {"query": q, "limit": 50}),
        ("quick_search", "quick_search", {"query": q}),
        ("search_summary", "search_summary", {"query": q}),
        ("search_by_file", "search_by_file", {"path": "storage/handlers.py"}),
        ("search_by_concept", "search_by_concept", {"concept": "retry with backoff"}),
        ("search_code", "search_code", {"query": "write batch retry"}),
        ("search_errors", "search_errors", {"query": "ConnectionResetError"}),
        ("search_temporal", "search_temporal", {"expression": "today"}),
        ("get (short id)", "get", {"id": rid[:8]}),
        ("reflection_stats", "reflection_stats", {}),
        ("search_insights", "search_insights", {"query": q}),
        ("insights_statistics", "insights_statistics", {}),
        ("start (with a handoff)", "start", {"working_directory": str(repo)}),
        ("start detail", "start", {"working_directory": str(repo), "detail": True}),
        ("checkpoint", "checkpoint", {}),
        ("checkpoint detail", "checkpoint", {"detail": True}),
        ("status", "status", {}),
        ("health", "health", {}),
        ("list_sessions", "list_sessions", {}),
        ("get_session", "get_session", {"session_id": sid}),
        ("get_messages", "get_messages", {"session_id": sid}),
        ("export_session", "export_session", {"session_id": sid}),
        ("list_project_groups", "list_project_groups", {}),
        ("get_project_graph", "get_project_graph", {}),
        ("search_across_projects", "search_across_projects", {"query": q, "project": "widget"}),
        ("get_project_insights", "get_project_insights", {"project": "widget"}),
        ("quality_trend", "quality_trend", {}),
        ("session_analytics", "session_analytics", {}),
        ("patterns", "patterns", {}),
        ("read_graph", "read_graph", {}),
        ("search_nodes", "search_nodes", {"query": "worker"}),
        ("sync_status", "sync_status", {}),
        ("events_webhooks", "events_webhooks", {}),
        ("permissions", "permissions", {}),
        ("end", "end", {"summary": "Fixed the worker's lost connections.", "next_steps": ["x"]}),
    ]


async def run(items: int, markdown: bool) -> None:
    from fastmcp import Client

    from session_buddy.server.app import create_server
    from session_buddy.settings import load_settings

    rng = random.Random(13)
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        settings = load_settings(data_dir=Path(tmp) / "data").settings
        async with Client(create_server(settings)) as client:
            t0 = time.perf_counter()
            await fill(client, items, rng)
            stored = time.perf_counter() - t0
            brief = (await client.call_tool("start", {"working_directory": str(repo)})).data
            sid = brief["session"]["id"]
            await client.call_tool("checkpoint", {})
            await client.call_tool(
                "end",
                {
                    "summary": "Made the worker's writes survive lost connections (retry with "
                    "backoff) and moved the DuckDB writes to one transaction per batch.",
                    "decisions": ["Retries stay in the storage layer, not in the handlers."],
                    "next_steps": ["Add a test for an empty batch.", "Measure the nightly job."],
                },
            )
            found = await client.call_tool("search", {"query": "Gotcha", "kind": "reflection"})
            hit = (found.structured_content or {}).get("hits", [{}])[0]
            rows = []
            ids = {"reflection": hit.get("id", "0000"), "session": sid}
            if len(ids["reflection"]) < 36:  # a short id: get gives the whole one
                got = await client.call_tool("get", {"id": ids["reflection"]})
                ids["reflection"] = got.data["id"]
            for label, tool, args in calls(repo, ids):
                chars, shown = await size(client, tool, args)
                rows.append((label, chars, shown))
    print(f"store: {items} items in {stored:.1f}s", flush=True)
    if markdown:
        print("| Answer | Characters |\n|---|---:|")
    for label, chars, shown in rows:
        error = isinstance(shown, str)
        note = f"  (error: {' '.join(shown.split())[:70]})" if error else ""
        print(f"| {label} | {chars:,} |{note}" if markdown else f"{label:<28} {chars:>7,}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.items, args.markdown))


if __name__ == "__main__":
    main()
