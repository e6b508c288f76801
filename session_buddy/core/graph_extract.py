"""Which entities a text mentions, found by rules (no model): deterministic and conservative.

:func:`extract` reads one item's text and returns each mention (name, type, position) and
the relations the text states outright. Better to miss than to invent:

* **files and paths** - ``auth/jwt.py``, ``./src/app.ts``, ``pyproject.toml``: a name with a
  known extension (:data:`EXTENSIONS`) or a well-known bare file name, not inside a URL;
* **code** - definitions anywhere (``def verify_token(``, ``class TokenCache:``), and in
  inline code spans a single identifier shaped like code (``verify_token``, ``TokenCache``,
  ``jwt.decode()``: an underscore, a dot, ``::``, inner capitals or a call), never a plain
  word;
* **errors** - exception types (``ValueError``, ``HttpServerError``), error codes with an
  ``ERR``/``ERROR`` part or digits (``ERR_CONN_4021``), errno names (``ECONNREFUSED``) and
  ``E123``-style lint codes;
* **packages** - from import lines (Python, JavaScript/TypeScript, Rust), install commands
  (pip, uv, poetry, npm, pnpm, yarn, cargo, go) and manifests (``dependencies`` of
  ``package.json`` or ``pyproject.toml``); standard-library modules are not packages;
* **projects** - a known project name (from the project records) as a whole word;
* **people** - a team member's name as a whole word (``alice`` or ``Alice``), nobody else.

Relations: ``X defined_in F`` when a text defines ``X`` and names exactly one file ``F``,
or says "``X`` is defined in ``F``". :data:`STOP` lists generic names never taken.
"""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

EXTENSIONS = tuple(
    str.split(
        "py pyi ipynb js jsx mjs cjs ts tsx vue svelte rs go java kt kts scala rb php c h cc cpp "
        "hpp cs swift m sh bash zsh ps1 sql md rst txt toml yaml yml json jsonl ini cfg conf lock "
        "html css scss proto tf xml gradle dockerfile env"
    )
)
BARE_FILES = ("Dockerfile", "Makefile", "Justfile", "Procfile", "Gemfile", "Rakefile")
#: generic names never taken as an entity (compared in lower case)
STOP = frozenset(
    str.split(
        "self this cls true false none null nil undefined main test tests foo bar baz qux todo "
        "fixme id ok args kwargs init __init__ __main__ value values data result results error "
        "errors exception warning string str int float bool list dict set tuple object type "
        "name names key keys item items file files path config setup run start stop get set "
        "new old tmp temp example sample default index app api src lib utils util helpers "
        "e.g i.e etc readme.md"
    )
)
#: at most this many mentions are taken from one text
MAX_MENTIONS = 200

_EXT = "|".join(sorted(EXTENSIONS, key=len, reverse=True))
_PATH = re.compile(
    r"(?<![\w/.:@~-])((?:~?/)?(?:\.{1,2}/)?(?:[\w@+-][\w.@+-]*/)*[\w-][\w.-]*\.(?:" + _EXT + r"))"
    r"(?![\w/-])",
    re.IGNORECASE,
)
_BARE = re.compile(r"(?<![\w/.-])(" + "|".join(BARE_FILES) + r")(?![\w./-])")
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
_SPAN = re.compile(r"(?<!`)`([^`\n]{1,120})`(?!`)")
_DEF = re.compile(
    r"\b(?:async\s+def|def|fn|func|function)\s+([A-Za-z_]\w*)\s*[(<]"
    r"|\b(?:class|struct|interface|trait|enum)\s+([A-Z]\w*)\s*[(:{<]"
)
_IDENT = re.compile(r"^([A-Za-z_]\w*(?:(?:\.|::)[A-Za-z_]\w*)*)(\(\))?$")
_ERROR_TYPE = re.compile(r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception))\b")
_ERROR_CODE = re.compile(
    r"\b((?:ERR|ERROR)_[A-Z0-9_]*[A-Z0-9]|[A-Z][A-Z0-9]*_(?:ERR|ERROR)(?:_[A-Z0-9]+)*"
    r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_\d+[A-Z0-9_]*|E\d{3,4})\b"
)
_ERRNO = re.compile(r"\b(E[A-Z]{3,})\b")
_ERRNO_NAMES = frozenset(errno.errorcode.values())
_PY_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([A-Za-z_][\w.]*(?:[ \t]*,"
    r"[ \t]*[A-Za-z_][\w.]*)*))",
    re.M,
)
_JS_IMPORT = re.compile(
    r"""(?:\bimport\b[^'"\n;]*?\bfrom[ \t]*|\bimport[ \t]*|\brequire\([ \t]*)['"]([@\w][\w./@-]*)['"]"""
)
_RUST_USE = re.compile(r"^[ \t]*(?:pub[ \t]+)?use[ \t]+([a-z_][a-z0-9_]*)::", re.M)
#: an install command at the start of a line (a shell prompt allowed) or of a code span
_INSTALL = re.compile(
    r"(?:^|`)[ \t]*(?:\$[ \t]*)?(?:pip3?|uv[ \t]+pip|uv|poetry|npm|pnpm|yarn|cargo|go)[ \t]+"
    r"(?:install|add|get)[ \t]+([^\n`;&|]+)",
    re.M,
)
_JSON_DEPS = re.compile(r'"(?:dev|peer|optional)?[dD]ependencies"\s*:\s*\{([^}]*)\}')
_JSON_DEP = re.compile(r'"([@\w][\w./@-]*)"\s*:\s*"')
_TOML_DEPS = re.compile(r"\bdependencies\s*=\s*\[([^\]]*)\]")
_TOML_DEP = re.compile(r"""["']([A-Za-z0-9][A-Za-z0-9._-]*)""")
_PKG_NAME = re.compile(r"^(@[\w.-]+/[\w.-]+|[A-Za-z0-9][\w.-]*)")
_DEFINED_IN = re.compile(
    r"^[`'\"]?(?:\(\))?[`'\"]?\s+(?:is\s+|was\s+|are\s+)?(?:defined|declared|implemented|lives?)"
    r"\s+in\s+[`'\"]?$"
)
_SKIP_MODULES = frozenset(sys.stdlib_module_names) | {"__future__", "typing_extensions"}
_RUST_SKIP = frozenset({"std", "core", "alloc", "crate", "self", "super"})


@dataclass(frozen=True, slots=True)
class Found:
    """A mention: ``name`` of ``entity_type`` at ``start:end`` of the text."""

    name: str
    entity_type: str
    start: int
    end: int


@dataclass
class Extraction:
    mentions: list[Found] = field(default_factory=list)
    #: (source name, relation type, target name), between mentioned entities
    relations: list[tuple[str, str, str]] = field(default_factory=list)

    def types(self) -> dict[str, str]:
        """Each mentioned name with its type (the first rule that found it decides)."""
        out: dict[str, str] = {}
        for m in self.mentions:
            out.setdefault(m.name, m.entity_type)
        return out


class _Collector:
    def __init__(self) -> None:
        self.found: list[Found] = []
        self.taken: list[tuple[int, int]] = []
        self.types: dict[str, str] = {}

    def add(self, name: str, entity_type: str, start: int, end: int) -> bool:
        if not name or name.lower() in STOP or len(name) < 2:
            return False
        if any(s <= start < e or start <= s < end for s, e in self.taken):
            return False
        kind = self.types.setdefault(name, entity_type)
        self.found.append(Found(name, kind, start, end))
        self.taken.append((start, end))
        return True


def _files(text: str, out: _Collector) -> None:
    for m in _PATH.finditer(text):
        name = m.group(1)
        start = m.start(1)
        if name.startswith("./"):
            name, start = name[2:], start + 2
        out.add(name, "file", start, m.end(1))
    for m in _BARE.finditer(text):
        out.add(m.group(1), "file", m.start(1), m.end(1))


def _errors(text: str, out: _Collector) -> None:
    for m in _ERROR_TYPE.finditer(text):
        out.add(m.group(1), "error", m.start(1), m.end(1))
    for m in _ERROR_CODE.finditer(text):
        out.add(m.group(1), "error", m.start(1), m.end(1))
    for m in _ERRNO.finditer(text):
        if m.group(1) in _ERRNO_NAMES:
            out.add(m.group(1), "error", m.start(1), m.end(1))


def _definitions(text: str, out: _Collector) -> list[str]:
    defined = []
    for m in _DEF.finditer(text):
        group = 1 if m.group(1) else 2
        kind = "function" if group == 1 else "class"
        if out.add(m.group(group), kind, m.start(group), m.end(group)):
            defined.append(m.group(group))
    return defined


def _code_like(name: str) -> bool:
    return (
        "_" in name.strip("_")
        or "." in name
        or "::" in name
        or bool(re.search(r"[a-z][A-Z]", name))
        or bool(re.match(r"^[A-Z][a-z]+[A-Z]", name))
    )


def _spans(text: str, out: _Collector) -> None:
    for m in _SPAN.finditer(text):
        inner = m.group(1).strip()
        ident = _IDENT.match(inner)
        if ident is None:
            continue
        name, call = ident.group(1), bool(ident.group(2))
        if not (call or _code_like(name)):
            continue
        start = m.start(1) + m.group(1).index(name)
        if name[0].isupper() and "." not in name and "::" not in name:
            kind = "class"
        elif ("." in name or "::" in name) and not call:
            kind = "module" if name.islower() else "symbol"
        else:
            kind = "function"
        out.add(name, kind, start, start + len(name))


def _package(name: str) -> str | None:
    m = _PKG_NAME.match(name.strip().strip("'\""))
    if m is None:
        return None
    pkg = m.group(1)
    if pkg.startswith("-") or pkg.startswith("."):
        return None
    return pkg.rstrip(".")


def _add_package(out: _Collector, text: str, name: str, start: int) -> None:
    pkg = _package(name)
    if pkg and pkg.split(".")[0] not in _SKIP_MODULES and not pkg.startswith("node:"):
        out.add(pkg, "package", start, start + len(pkg))


def _packages(text: str, out: _Collector) -> None:
    for m in _PY_IMPORT.finditer(text):
        group = 1 if m.group(1) else 2
        block, base = m.group(group), m.start(group)
        for part in re.finditer(r"[A-Za-z_][\w.]*", block):
            top = part.group(0).split(".")[0]
            _add_package(out, text, top, base + part.start())
    for m in _JS_IMPORT.finditer(text):
        spec = m.group(1)
        parts = spec.split("/")
        name = "/".join(parts[:2]) if spec.startswith("@") else parts[0]
        _add_package(out, text, name, m.start(1))
    for m in _RUST_USE.finditer(text):
        if m.group(1) not in _RUST_SKIP:
            _add_package(out, text, m.group(1), m.start(1))
    for m in _INSTALL.finditer(text):
        for word in re.finditer(r"\S+", m.group(1)):
            if word.group(0).startswith("-"):
                continue
            quoted = word.group(0)[:1] in "'\""
            _add_package(out, text, word.group(0), m.start(1) + word.start() + quoted)
    for m in _JSON_DEPS.finditer(text):
        for dep in _JSON_DEP.finditer(m.group(1)):
            _add_package(out, text, dep.group(1), m.start(1) + dep.start(1))
    for m in _TOML_DEPS.finditer(text):
        for dep in _TOML_DEP.finditer(m.group(1)):
            _add_package(out, text, dep.group(1), m.start(1) + dep.start(1))


def _words(text: str, names: Iterable[str], kind: str, out: _Collector, *, capital: bool) -> None:
    for name in names:
        if len(name) < 3 or name.lower() in STOP:
            continue
        forms = {name, name[:1].upper() + name[1:]} if capital else {name}
        pattern = re.compile(
            r"(?<![\w/.@-])(" + "|".join(re.escape(f) for f in sorted(forms)) + r")(?![\w/@-])"
        )
        for m in pattern.finditer(text):
            if out.add(name, kind, m.start(1), m.end(1)):
                break  # one mention of a project or person per text is enough


def _defined_in(text: str, found: list[Found], defined: list[str]) -> list[tuple[str, str, str]]:
    files = list(dict.fromkeys(f.name for f in found if f.entity_type == "file"))
    relations: list[tuple[str, str, str]] = []
    if len(files) == 1:
        relations += [(name, "defined_in", files[0]) for name in dict.fromkeys(defined)]
    code = [f for f in found if f.entity_type in ("function", "class", "symbol", "module")]
    paths = [f for f in found if f.entity_type == "file"]
    for c in code:
        for p in paths:
            if 0 < p.start - c.end <= 40 and _DEFINED_IN.match(text[c.end : p.start]):
                relations.append((c.name, "defined_in", p.name))
    return list(dict.fromkeys(relations))


def extract(text: str, *, projects: Iterable[str] = (), people: Iterable[str] = ()) -> Extraction:
    """The mentions and stated relations of ``text`` (module doc). ``projects`` are the
    known project names, ``people`` the team members' names."""
    out = _Collector()
    _files(text, out)
    _errors(text, out)
    defined = _definitions(text, out)
    _packages(text, out)
    _spans(text, out)
    _words(text, projects, "project", out, capital=False)
    _words(text, people, "person", out, capital=True)
    found = sorted(out.found, key=lambda f: f.start)[:MAX_MENTIONS]
    return Extraction(found, _defined_in(text, found, defined))


def query_names(query: str) -> list[str]:
    """Names a search query may be about: what :func:`extract` finds in it, its words that
    look like code, and the whole query."""
    names = [f.name for f in extract(query).mentions]
    names += [w.strip("`'\"()") for w in query.split()]
    names.append(query.strip().strip("`"))
    return [n for n in dict.fromkeys(names) if n and n.lower() not in STOP]
