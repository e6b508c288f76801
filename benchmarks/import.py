"""Transcript import throughput, with the raw embedding throughput of the same texts as the
reference, measured in the same run.

Writes a synthetic but realistic Claude Code transcript (default 10,000 turns: user prompts,
assistant prose with the odd ★ Insight block, tool calls and tool results, some long), then:

1. raw: the ONNX adapter's own ``encode`` on exactly the texts the import stores, in batches
   of 256 (the ceiling any import could reach);
2. import: ``CaptureService.import_transcripts`` (the path the CLI and the MCP tool use):
   streaming, parsing, insight extraction, embedding, DuckDB writes and offset saves, in a
   temporary data folder.

The transcript is split into ``--rounds`` session files and the two alternate file by file, so
load from other processes weighs on both alike. The model is loaded (and warmed) before
either is timed. CPU time of the process is reported too (steadier on a shared machine).

    .venv/bin/python benchmarks/import.py [--turns 10000] [--storage duckdb] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODULES = [
    "auth",
    "billing",
    "scheduler",
    "ingest",
    "search",
    "storage",
    "api",
    "cli",
    "cache",
    "worker",
    "sync",
    "gateway",
]
FILES = [
    "client.py",
    "models.py",
    "service.py",
    "handlers.py",
    "tasks.py",
    "schema.sql",
    "config.yaml",
    "test_api.py",
]
PROBLEMS = [
    "the retry loop never gives up when the server answers 503",
    "the cache returns stale entries after a deploy",
    "two workers pick up the same job",
    "the migration locks the orders table for minutes",
    "timestamps are stored without a time zone",
    "the CLI prints progress to stdout and breaks piping",
    "a slow query scans the whole events table",
    "the websocket reconnects in a tight loop",
]
FIXES = [
    "cap the retries and add exponential backoff with jitter",
    "key the cache by the schema version so a deploy invalidates it",
    "claim jobs with SELECT ... FOR UPDATE SKIP LOCKED",
    "split the migration and backfill in batches of 10k rows",
    "store UTC and convert at the edges",
    "send progress to stderr and keep stdout for data",
    "add a composite index on (project_id, created_at)",
    "back off exponentially and reset after a stable minute",
]


def write_transcript(path: Path, turns: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    session = str(uuid.uuid4())
    cwd = "/home/dev/work/acme-platform"
    clock = datetime(2025, 10, 1, 9, 0, tzinfo=UTC)
    parent: str | None = None
    written = 0
    tool_id = ""
    with path.open("w", encoding="utf-8") as fh:

        def emit(kind: str, message: dict[str, Any]) -> None:
            nonlocal parent, clock, written
            clock += timedelta(seconds=rng.randint(2, 40))
            event = {
                "parentUuid": parent,
                "isSidechain": False,
                "userType": "external",
                "cwd": cwd,
                "sessionId": session,
                "version": "1.0.98",
                "gitBranch": "main",
                "type": kind,
                "message": message,
                "uuid": str(uuid.uuid4()),
                "timestamp": clock.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            parent = event["uuid"]
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            written += 1

        step = 0
        while written < turns:
            step += 1
            module, file = rng.choice(MODULES), rng.choice(FILES)
            problem, fix = rng.choice(PROBLEMS), rng.choice(FIXES)
            phase = step % 4
            if phase == 0:
                emit(
                    "user",
                    {
                        "role": "user",
                        "content": (
                            f"In the {module} module ({file}), {problem}. It started after change #{step}. "
                            f"Can you find the cause and propose a fix that keeps the public API stable?"
                        ),
                    },
                )
            elif phase == 1:
                tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
                if rng.random() < 0.5:
                    block = {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": "Bash",
                        "input": {
                            "command": f"pytest tests/{module}/test_{file.split('.')[0]}.py -x -q -k case_{step}",
                            "description": f"Run the {module} tests",
                        },
                    }
                else:
                    block = {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": "Read",
                        "input": {
                            "file_path": f"{cwd}/src/{module}/{file}",
                            "offset": step,
                            "limit": 200,
                        },
                    }
                emit("assistant", {"role": "assistant", "content": [block]})
            elif phase == 2:
                lines = rng.randint(3, 120)
                output = "\n".join(
                    f"{n:>5}\t{rng.choice(['def', 'return', 'if', 'for', 'await'])} {module}_{rng.randint(0, 999)}({file!r}, step={step})"
                    for n in range(lines)
                )
                emit(
                    "user",
                    {
                        "role": "user",
                        "content": [
                            {
                                "tool_use_id": tool_id,
                                "type": "tool_result",
                                "content": output,
                                "is_error": rng.random() < 0.2,
                            }
                        ],
                    },
                )
            else:
                text = (
                    f"The cause is in `{module}/{file}`: {problem} because the code path added in change "
                    f"#{step} skips the guard. The fix is to {fix}. I'll keep the signature of "
                    f"`{module.title()}Service.run()` unchanged and add a regression test (case {step})."
                )
                if rng.random() < 0.1:
                    text += (
                        "\n\n`★ Insight ─────────────────────────────────────`\n"
                        f"- In {module}, {fix}: it removes the failure mode at its source.\n"
                        f"- Regression tests should pin case {step} so it cannot come back.\n"
                        "`─────────────────────────────────────────────────`"
                    )
                emit(
                    "assistant", {"role": "assistant", "content": [{"type": "text", "text": text}]}
                )


def stored_turns(path: Path) -> list[Any]:
    """Exactly the turns the import stores (same parser)."""
    from session_buddy.core.transcripts import ToolNames, parse_line

    tools = ToolNames()
    turns: list[Any] = []
    with path.open("rb") as fh:
        for line in fh:
            turns += parse_line(line.rstrip(b"\n"), tools=tools).turns
    return turns


def with_context(turns: list[Any], chars: int) -> list[str]:
    """The texts as the import embeds them (one file is one session): a short dialogue turn
    after the end of the dialogue turn before it (see MemoryService._contexts)."""
    from session_buddy.settings import EmbeddingsSettings

    longest = EmbeddingsSettings().context_max_turn_chars
    out: list[str] = []
    previous: str | None = None
    for turn in turns:
        dialogue = turn.role in ("user", "assistant") and turn.metadata.get("block") not in (
            "tool_use",
            "tool_result",
        )
        if chars > 0 and dialogue and previous is not None and len(turn.content) < longest:
            out.append(f"{previous[-chars:]}\n{turn.content}")
        else:
            out.append(turn.content)
        if dialogue:
            previous = turn.content
    return out


async def run(
    turns: int, storage: str, batch_size: int, rounds: int, context_chars: int
) -> dict[str, Any]:
    from session_buddy import di
    from session_buddy.adapters.embeddings._base import EmbeddingsBase
    from session_buddy.core.capture import CaptureService
    from session_buddy.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="sb-import-bench-") as tmp:
        root = Path(tmp)
        folder = root / "projects" / "-home-dev-work-acme-platform"
        folder.mkdir(parents=True)
        # the transcript is written as `rounds` session files; raw encoding and import alternate
        # file by file, so a change of machine load weighs on both sides alike
        files: list[tuple[Path, list[str], list[Any]]] = []
        per_round = -(-turns // rounds)
        for r in range(rounds):
            path = folder / f"{uuid.uuid4()}.jsonl"
            write_transcript(path, min(per_round, turns - r * per_round), seed=r)
            turns_of_file = stored_turns(path)
            files.append((path, [t.content for t in turns_of_file], turns_of_file))
        texts = [t for _, chunk, _ in files for t in chunk]
        settings = load_settings(
            data_dir=root / "data",
            adapters={"storage": storage},
            embeddings={"context_chars": context_chars},
        ).settings
        di.configure(settings)
        await di.startup()
        raw_s = raw_cpu = import_s = import_cpu = ctx_s = 0.0
        reports = []
        try:
            embeddings: Any = di.get(EmbeddingsBase)
            embeddings.encode(texts[:64])  # load and warm the model
            service = di.get(CaptureService)
            for path, chunk, file_turns in files:
                start, cpu = time.perf_counter(), time.process_time()
                for i in range(0, len(chunk), 256):
                    embeddings.encode(chunk[i : i + 256])
                raw_s += time.perf_counter() - start
                raw_cpu += time.process_time() - cpu
                if context_chars > 0:
                    contexted = with_context(file_turns, context_chars)
                    start = time.perf_counter()
                    for i in range(0, len(contexted), 256):
                        embeddings.encode(contexted[i : i + 256])
                    ctx_s += time.perf_counter() - start
                start, cpu = time.perf_counter(), time.process_time()
                reports.append(await service.import_transcripts(path, batch_size=batch_size))
                import_s += time.perf_counter() - start
                import_cpu += time.process_time() - cpu
        finally:
            await di.shutdown()
            di.reset()
    report = reports[0]
    for other in reports[1:]:
        report.add(other)
    assert report.stored == len(set(texts)) and report.turns == len(texts), (report, len(texts))
    raw_rate = len(texts) / raw_s
    import_rate = report.turns / import_s
    return {
        "turns": report.turns,
        "file_mb": round(report.bytes_read / 1e6, 1),
        "insights": report.insights,
        "raw_embed_per_s": round(raw_rate, 1),
        "import_turns_per_s": round(import_rate, 1),
        "ratio": round(import_rate / raw_rate, 3),
        # the model on exactly what the import embeds (turns with their context)
        "context_chars": context_chars,
        "raw_embed_with_context_per_s": round(len(texts) / ctx_s, 1) if ctx_s else None,
        "ratio_vs_context_inputs": round(import_rate / (len(texts) / ctx_s), 3) if ctx_s else None,
        # CPU seconds of the whole process (all threads): steadier when the machine is shared
        "cpu_ratio": round(raw_cpu / import_cpu, 3),
        "raw_cpu_s": round(raw_cpu, 2),
        "import_cpu_s": round(import_cpu, 2),
        "raw_s": round(raw_s, 2),
        "rounds": rounds,
        "import_s": round(import_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--storage", choices=["duckdb", "memory"], default="duckdb")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="Alternations of raw and import")
    parser.add_argument(
        "--context-chars",
        type=int,
        default=150,
        help="embeddings.context_chars (0: turns embedded alone)",
    )
    args = parser.parse_args()
    from session_buddy.logs import route_logging_to_stderr

    route_logging_to_stderr("WARNING")
    result = asyncio.run(
        run(args.turns, args.storage, args.batch_size, args.rounds, args.context_chars)
    )
    print(
        f"turns imported:        {result['turns']:,} ({result['file_mb']} MB, {result['insights']} insights)"
    )
    print(
        f"raw embedding:         {result['raw_embed_per_s']:,.1f} texts/s ({result['raw_s']} s, "
        f"alternating with the import in {result['rounds']} rounds)"
    )
    print(
        f"import (end to end):   {result['import_turns_per_s']:,.1f} turns/s ({result['import_s']} s)"
    )
    print(f"import / raw:          {result['ratio']:.1%} (target >= 80%)")
    print(
        f"by CPU time:           {result['cpu_ratio']:.1%} (raw {result['raw_cpu_s']} s, "
        f"import {result['import_cpu_s']} s of CPU)"
    )
    if result["ratio_vs_context_inputs"] is not None:
        print(
            f"raw embedding of the inputs as embedded (turn + {result['context_chars']} chars of "
            f"context): {result['raw_embed_with_context_per_s']:,.1f} texts/s; import is "
            f"{result['ratio_vs_context_inputs']:.1%} of it"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
