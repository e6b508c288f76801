"""The layout figures of issue 12, read statically from session_buddy/ (nothing imported):

- import cycles: among module-level imports (what tests/test_layout.py forbids), and also
  counting imports inside functions and under TYPE_CHECKING (each strongly connected
  component counted once, with one cycle through it shown);
- top-level modules in session_buddy/;
- the longest class and the longest function (lines from `def`/`class` to the last line);
- the pairs the `duplicates` tool reports for session_buddy/ (when it is on PATH).

    .venv/bin/python benchmarks/layout.py [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.layout_graph import cycles, read_package, spans, top_level_modules  # noqa: E402


def duplicate_pairs() -> int | None:
    """The pair count of `duplicates` over session_buddy/, or None without the tool."""
    tool = shutil.which("duplicates")
    if tool is None:
        return None
    out = subprocess.run(
        [tool, "--repo", str(ROOT / "session_buddy"), "--seconds", "120"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    first = out.splitlines()[0] if out else ""
    if first.startswith("no duplicates"):
        return 0
    found = re.match(r"(\d+) pairs?\b", first)
    return int(found.group(1)) if found else None


def figures() -> dict[str, Any]:
    modules = read_package()
    every = spans(modules)
    longest_class = max((s for s in every if s.kind == "class"), key=lambda s: s.lines)
    longest_function = max((s for s in every if s.kind == "function"), key=lambda s: s.lines)
    deferred = cycles(modules, deferred=True)
    return {
        "modules": len(modules),
        "import_cycles": len(cycles(modules)),
        "import_cycles_with_deferred_imports": len(deferred),
        "deferred_cycles": [" -> ".join(c) for c in deferred],
        "top_level_modules": len(top_level_modules()),
        "longest_class": {"name": longest_class.key, "lines": longest_class.lines},
        "longest_function": {"name": longest_function.key, "lines": longest_function.lines},
        "duplicate_pairs": duplicate_pairs(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    found = figures()
    if parser.parse_args().json:
        print(json.dumps(found, indent=2))
        return
    print(f"modules read:                 {found['modules']}")
    print(f"import cycles (module level): {found['import_cycles']}")
    print(f"  counting deferred imports:  {found['import_cycles_with_deferred_imports']}")
    for cycle in found["deferred_cycles"]:
        print(f"    {cycle}")
    print(f"top-level modules:            {found['top_level_modules']}")
    for key in ("longest_class", "longest_function"):
        span = found[key]
        print(f"{key.replace('_', ' ') + ':':<30}{span['lines']} lines, {span['name']}")
    pairs = found["duplicate_pairs"]
    print(f"duplicates pairs:             {'n/a (no duplicates tool)' if pairs is None else pairs}")


if __name__ == "__main__":
    main()
