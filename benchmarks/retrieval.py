"""Turn-level evidence recall on LoCoMo (../shared/data/locomo-dev.json), through the MCP tools.

Each turn is stored with `store_conversations` (project = sample_id, metadata = {"dia_id"},
timestamp = the session's date); each question is asked with `search` filtered to its
project, in keyword, semantic and hybrid mode. Reported per category and overall: R@5, R@10
(fraction of a question's evidence turns among the top k) and MRR (first evidence hit).

    .venv/bin/python benchmarks/retrieval.py [--data PATH] [--storage duckdb|memory]
        [--modes keyword,semantic,hybrid] [--set SECTION.KEY=VALUE ...] [--held-out]

``--held-out`` leaves out the dev set's conversations (conv-26, conv-30): with ``--data`` the
whole LoCoMo file (``data/locomo10.json`` of snap-research/LoCoMo), it measures the
conversations the settings were not tuned on.

The data is CC BY-NC 4.0 (see ../shared/data/README.md); it is read in place, never copied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
MODES = ("keyword", "semantic", "hybrid")
BATCH = 500


def parse_session_date(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> an aware datetime."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def normalise_dia(raw: str) -> str | None:
    m = re.fullmatch(r"D0*(\d+):0*(\d+)", raw.strip())
    return f"D{m.group(1)}:{m.group(2)}" if m else None


def evidence_of(qa: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for item in qa.get("evidence") or []:
        for part in re.split(r"[;\s]+", str(item)):
            dia = normalise_dia(part) if part else None
            if dia and dia not in found:
                found.append(dia)
    return found


def turns_of(sample: dict[str, Any]) -> list[dict[str, Any]]:
    conv = sample["conversation"]
    turns = []
    sessions = sorted(
        (int(k.split("_")[1]) for k in conv if re.fullmatch(r"session_\d+", k)),
    )
    for n in sessions:
        when = parse_session_date(conv[f"session_{n}_date_time"])
        for index, turn in enumerate(conv[f"session_{n}"]):
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shared an image: {turn['blip_caption']}]"
            turns.append(
                {
                    "content": text,
                    "role": "user",
                    "project": sample["sample_id"],
                    "session_id": f"{sample['sample_id']}-s{n}",
                    # turns of a session keep their order: one second apart
                    "timestamp": when.replace(second=min(59, index)).isoformat(),
                    "metadata": {"dia_id": normalise_dia(turn["dia_id"]) or turn["dia_id"]},
                }
            )
    return turns


#: the conversations of ../shared/data/locomo-dev.json, which the settings were tuned on
DEV_SAMPLES = ("conv-26", "conv-30")


async def run(
    data_path: Path,
    storage: str,
    modes: list[str],
    sets: dict[str, str],
    skip: tuple[str, ...] = (),
) -> None:
    from fastmcp import Client

    from session_buddy.server.app import create_server
    from session_buddy.settings import load_settings

    data = [
        s for s in json.loads(data_path.read_text(encoding="utf-8")) if s["sample_id"] not in skip
    ]
    if not data:
        sys.exit(f"no conversations left in {data_path} (--held-out leaves out {DEV_SAMPLES})")
    with tempfile.TemporaryDirectory() as tmp:
        # an answer for 500 stored items is longer than the default responses.max_chars
        overrides: dict[str, dict[str, Any]] = {"responses": {"max_chars": 1_000_000}}
        for key, value in sets.items():
            section, name = key.split(".", 1)
            overrides.setdefault(section, {})[name] = value
        settings = load_settings(
            data_dir=Path(tmp), adapters={"storage": storage}, **overrides
        ).settings
        async with Client(create_server(settings)) as client:
            id_to_dias: dict[str, set[str]] = defaultdict(set)
            stored = 0
            start = time.perf_counter()
            for sample in data:
                turns = turns_of(sample)
                for i in range(0, len(turns), BATCH):
                    chunk = turns[i : i + BATCH]
                    result = await client.call_tool("store_conversations", {"items": chunk})
                    for turn, item in zip(chunk, result.structured_content["items"], strict=True):
                        id_to_dias[item["id"]].add(turn["metadata"]["dia_id"])
                    stored += len(chunk)
            store_s = time.perf_counter() - start
            print(
                f"stored {stored} turns of {len(data)} conversations in {store_s:.1f} s ({storage})"
            )

            scores: dict[str, dict[str, list[tuple[float, float, float]]]] = {
                m: defaultdict(list) for m in modes
            }
            latencies: dict[str, list[float]] = {m: [] for m in modes}
            skipped = 0
            for sample in data:
                for qa in sample["qa"]:
                    evidence = evidence_of(qa)
                    if not evidence:
                        skipped += 1
                        continue
                    category = CATEGORIES.get(qa.get("category"), str(qa.get("category")))
                    for mode in modes:
                        t0 = time.perf_counter()
                        result = await client.call_tool(
                            "search",
                            {
                                "query": qa["question"],
                                "project": sample["sample_id"],
                                "mode": mode,
                                "limit": 10,
                                "fields": ["id"],  # the whole id (hits show 8 characters)
                            },
                        )
                        latencies[mode].append(time.perf_counter() - t0)
                        ranked = [
                            id_to_dias.get(h["id"], set())
                            for h in result.structured_content["hits"]
                        ]
                        r5 = sum(1 for e in evidence if any(e in d for d in ranked[:5])) / len(
                            evidence
                        )
                        r10 = sum(1 for e in evidence if any(e in d for d in ranked[:10])) / len(
                            evidence
                        )
                        rr = next(
                            (1 / (rank + 1) for rank, d in enumerate(ranked) if d & set(evidence)),
                            0.0,
                        )
                        scores[mode][category].append((r5, r10, rr))
                        scores[mode]["all"].append((r5, r10, rr))

    def fmt(values: list[tuple[float, float, float]]) -> str:
        n = len(values)
        r5 = sum(v[0] for v in values) / n
        r10 = sum(v[1] for v in values) / n
        mrr = sum(v[2] for v in values) / n
        return f"{r5:6.1%} {r10:6.1%} {mrr:6.3f}  (n={n})"

    print(
        f"questions with evidence: {len(scores[modes[0]]['all'])}, skipped without evidence: {skipped}"
    )
    order = [*CATEGORIES.values(), "all"]
    for mode in modes:
        lat = sorted(latencies[mode])
        p50 = lat[len(lat) // 2] * 1000
        p95 = lat[int(len(lat) * 0.95)] * 1000
        print(f"\n{mode}  (search p50 {p50:.1f} ms, p95 {p95:.1f} ms)")
        print(f"  {'category':<12} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
        for cat in order:
            if scores[mode].get(cat):
                print(f"  {cat:<12} {fmt(scores[mode][cat])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--storage", choices=["duckdb", "memory"], default="duckdb")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting for this run, e.g. --set search.session_smoothing=0",
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help=f"leave out the dev set's conversations ({', '.join(DEV_SAMPLES)})",
    )
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.set)
    if not args.data.exists():
        sys.exit(f"{args.data} not found: put the shared/ folder beside the repository")
    from session_buddy.logs import route_logging_to_stderr

    route_logging_to_stderr("WARNING")
    skip = DEV_SAMPLES if args.held_out else ()
    asyncio.run(run(args.data, args.storage, args.modes.split(","), sets, skip))


if __name__ == "__main__":
    main()
