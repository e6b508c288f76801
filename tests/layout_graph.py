"""A static picture of the package's layout, read with ``ast`` (nothing is imported).

Used by ``tests/test_layout.py`` (the rules) and ``benchmarks/layout.py`` (the figures):

* :func:`read_package`: every module under ``session_buddy/`` with its imports, each marked
  *eager* (runs when the module is imported: top level, class bodies, ``try``/``if`` blocks)
  or *deferred* (inside a function, or under ``if TYPE_CHECKING:``);
* :func:`cycles`: the import cycles among eager imports (strongly connected components);
* :func:`spans`: the line span of every class and function (methods and nested ones too).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "session_buddy"


@dataclass(frozen=True)
class Import:
    target: str  # the module imported (``pkg.mod`` for ``from pkg import mod``), or a name
    line: int
    eager: bool  # runs at import time (not inside a function, not under TYPE_CHECKING)


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)


@dataclass(frozen=True)
class Span:
    module: str
    qualname: str  # ``Class.method``, ``outer.inner``
    kind: str  # "class" or "function"
    lines: int

    @property
    def key(self) -> str:
        return f"{self.module}:{self.qualname}"


def read_package(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of ``package`` (under ``root``) by dotted name, imports resolved."""
    modules: dict[str, Module] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, tree)
    for module in modules.values():
        is_package = module.path.name == "__init__.py"
        module.imports = list(_imports(module.tree, module.name, is_package, set(modules)))
    return modules


def _imports(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, eager: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, eager) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, is_package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in known else base, node.lineno, eager))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                visit(stmt, False)
            for stmt in node.orelse:
                visit(stmt, eager)
        else:
            deferred = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            for child in ast.iter_child_nodes(node):
                visit(child, eager and not deferred)

    visit(tree, True)
    return found


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".")
    if not is_package:
        parts.pop()
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(modules: dict[str, Module], *, deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at import time (``deferred``: also those
    imported inside functions or for type checking)."""
    return {
        m.name: {
            i.target
            for i in m.imports
            if (i.eager or deferred) and i.target in modules and i.target != m.name
        }
        for m in modules.values()
    }


def cycles(modules: dict[str, Module], *, deferred: bool = False) -> list[list[str]]:
    """Each import cycle, as a path ``a -> b -> ... -> a`` (one per strongly connected
    component, through its first module). Eager imports only unless ``deferred``."""
    graph = import_graph(modules, deferred=deferred)
    return [_cycle_path(graph, sorted(c)) for c in _components(graph) if len(c) > 1]


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: set[str] = set()
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.add(top)
                        if top == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = [start]
    for node in queue:
        for child in sorted(graph[node] & members):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return component  # not reached: a component of two or more holds a cycle through start


def spans(modules: dict[str, Module]) -> list[Span]:
    """Every class and function (methods and nested functions too) with its line count,
    from its ``def``/``class`` line to its last line."""
    found: list[Span] = []

    def visit(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                qualname = f"{prefix}{child.name}"
                lines = (child.end_lineno or child.lineno) - child.lineno + 1
                found.append(Span(module, qualname, kind, lines))
                visit(child, module, qualname + ".")
            else:
                visit(child, module, prefix)

    for module in modules.values():
        visit(module.tree, module.name, "")
    return found


def top_level_modules(root: Path = ROOT, package: str = PACKAGE) -> list[str]:
    """The ``.py`` files directly in the package folder."""
    return sorted(p.name for p in (root / package).glob("*.py"))
