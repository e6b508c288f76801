"""The layout rules, checked statically over every module of ``session_buddy/`` (ast only,
nothing imported): no import cycle, no import against the layers, few top-level modules, no
overlong class or function, tools as module-level functions.

The figures these rules bound are printed by ``benchmarks/layout.py``.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.layout_graph import Module, cycles, read_package, spans, top_level_modules

CORE = "session_buddy.core"
ADAPTERS = "session_buddy.adapters"
SEARCH = "session_buddy.search"
TOOLS = "session_buddy.tools"


@dataclass(frozen=True)
class Rule:
    """Modules under ``sources`` never import a module under ``forbidden`` (unless it is
    under ``allowed``). A name covers the module and everything below it; ``*`` stands for
    one part of a dotted name. Imports inside functions and under TYPE_CHECKING count."""

    name: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()


RULES = (
    Rule("no-di", (CORE, ADAPTERS, SEARCH), ("session_buddy.di",)),
    Rule(
        "no-fronts",
        (CORE, ADAPTERS, SEARCH),
        ("session_buddy.server", "session_buddy.cli", TOOLS),
    ),
    Rule("adapters-below-core", (ADAPTERS,), (CORE, TOOLS)),
    Rule("no-mcp-in-core", (CORE, SEARCH), ("fastmcp", "mcp")),
    Rule("tools-use-protocols", (TOOLS,), (f"{ADAPTERS}.*.*",), (f"{ADAPTERS}.*._base",)),
)

#: rule -> modules that may still break it
KNOWN_EXCEPTIONS: dict[str, tuple[str, ...]] = {}

MAX_TOP_LEVEL_MODULES = 6
MAX_CLASS_LINES = 450
MAX_FUNCTION_LINES = 80

#: Today's overlong classes and functions, each with its length now: it may shrink or go,
#: never grow. Do not add to this list.
LONG_ALLOWED: dict[str, int] = {}

#: Tool modules whose ``register`` still defines the tools inside it. Do not add to this.
NESTED_TOOLS_ALLOWED: tuple[str, ...] = ()


def _covers(pattern: str, module: str) -> bool:
    """Does ``pattern`` (dotted, ``*`` = one part) name ``module`` or a package above it?"""
    want, parts = pattern.split("."), module.split(".")
    return len(parts) >= len(want) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want, strict=False)
    )


def back_edges(
    modules: dict[str, Module], exceptions: dict[str, tuple[str, ...]] = KNOWN_EXCEPTIONS
) -> list[str]:
    """Every import that breaks a rule, as ``rule: module:line -> target``."""
    found = []
    for module in modules.values():
        for rule in RULES:
            if not any(_covers(s, module.name) for s in rule.sources):
                continue
            if any(_covers(e, module.name) for e in exceptions.get(rule.name, ())):
                continue
            for imp in module.imports:
                if any(_covers(f, imp.target) for f in rule.forbidden) and not any(
                    _covers(a, imp.target) for a in rule.allowed
                ):
                    found.append(f"{rule.name}: {module.name}:{imp.line} -> {imp.target}")
    return found


def nested_tool_modules(modules: dict[str, Module]) -> list[str]:
    """Tool modules whose ``register`` defines functions inside it."""
    found = []
    for module in modules.values():
        if not _covers(TOOLS, module.name):
            continue
        for node in module.tree.body:
            if (
                isinstance(node, ast.FunctionDef)
                and node.name == "register"
                and any(
                    isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    for n in ast.walk(node)
                    if n is not node
                )
            ):
                found.append(module.name)
    return found


def overlong(modules: dict[str, Module]) -> dict[str, int]:
    return {
        s.key: s.lines
        for s in spans(modules)
        if s.lines > (MAX_CLASS_LINES if s.kind == "class" else MAX_FUNCTION_LINES)
    }


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return read_package()


def test_no_import_cycle(modules: dict[str, Module]) -> None:
    found = cycles(modules)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_back_edge(modules: dict[str, Module]) -> None:
    found = back_edges(modules)
    assert not found, "imports against the layers (rule: module:line -> target):\n" + "\n".join(
        found
    )


def test_known_exceptions_still_needed(modules: dict[str, Module]) -> None:
    """An exception nobody needs any more is removed, so it cannot hide a new back-edge."""
    unexcused = back_edges(modules, exceptions={})
    for rule, names in KNOWN_EXCEPTIONS.items():
        for name in names:
            assert any(e.startswith(f"{rule}: {name}") for e in unexcused), (
                f"{name} no longer breaks {rule}: remove it from KNOWN_EXCEPTIONS"
            )


def test_few_top_level_modules() -> None:
    names = top_level_modules()
    assert len(names) <= MAX_TOP_LEVEL_MODULES, names


def test_no_overlong_class_or_function(modules: dict[str, Module]) -> None:
    found = overlong(modules)
    new = {k: v for k, v in found.items() if k not in LONG_ALLOWED}
    grown = {k: (LONG_ALLOWED[k], v) for k, v in found.items() if v > LONG_ALLOWED.get(k, v)}
    stale = sorted(set(LONG_ALLOWED) - set(found))
    assert not new, f"over {MAX_CLASS_LINES} (class) / {MAX_FUNCTION_LINES} (function) lines: {new}"
    assert not grown, f"grew past its allowance (allowed, now): {grown}"
    assert not stale, f"no longer overlong, remove from LONG_ALLOWED: {stale}"


def test_tools_are_module_level_functions(modules: dict[str, Module]) -> None:
    found = nested_tool_modules(modules)
    new = sorted(set(found) - set(NESTED_TOOLS_ALLOWED))
    stale = sorted(set(NESTED_TOOLS_ALLOWED) - set(found))
    assert not new, f"tools defined inside register(): {new}"
    assert not stale, f"now module-level, remove from NESTED_TOOLS_ALLOWED: {stale}"


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """A small package with one of each fault: the checks above must report them (and
    not count imports inside functions or under TYPE_CHECKING as cycles)."""
    files = {
        "__init__.py": "",
        "di/__init__.py": "from session_buddy.core import a\n",
        "core/__init__.py": "",
        "core/a.py": "from . import b\ndef f():\n    from session_buddy import di\n",
        "core/b.py": "import session_buddy.core.a\nfrom fastmcp import FastMCP\n",
        "core/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from session_buddy.tools import t\n",
        "adapters/__init__.py": "",
        "adapters/storage/__init__.py": "",
        "adapters/storage/_base.py": "from session_buddy.core.a import f\n",
        "adapters/storage/duckdb.py": "",
        "tools/__init__.py": "",
        "tools/t.py": "from session_buddy.adapters.storage._base import X\n"
        "from session_buddy.adapters.storage.duckdb import Storage\n"
        "from session_buddy.core import c\n"  # no cycle: c imports t only for type checking
        "def register(mcp):\n    def tool():\n        pass\n" + "    x = 1\n" * 80,
    }
    for name, text in files.items():
        path = tmp_path / "session_buddy" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    fake = read_package(tmp_path)
    assert cycles(fake) == [
        ["session_buddy.core.a", "session_buddy.core.b", "session_buddy.core.a"]
    ]
    assert back_edges(fake) == [
        "adapters-below-core: session_buddy.adapters.storage._base:1 -> session_buddy.core.a",
        "no-di: session_buddy.core.a:3 -> session_buddy.di",
        "no-mcp-in-core: session_buddy.core.b:2 -> fastmcp",
        "no-fronts: session_buddy.core.c:3 -> session_buddy.tools.t",
        "tools-use-protocols: session_buddy.tools.t:2 -> session_buddy.adapters.storage.duckdb",
    ]
    assert nested_tool_modules(fake) == ["session_buddy.tools.t"]
    assert overlong(fake) == {"session_buddy.tools.t:register": 83}
