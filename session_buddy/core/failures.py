"""Failures in tool output, and what resolved them (the streaming half of the error memory).

**Recognising** (:func:`recognise`): the failures a command's output (or a pasted prompt)
shows, each as a :class:`Failure` with a normalised *signature*, the same text for the same
problem wherever it happens:

* a Python exception line (``KeyError: 'user_id'``, also pytest's ``E   KeyError: ...``):
  ``KeyError: 'user_id'`` with paths, numbers and addresses replaced (``<path>``, ``<n>``);
* a failing test (pytest's ``FAILED tests/test_x.py::test_y - ...`` / ``ERROR ...``):
  ``test tests/test_x.py::test_y``; when an output names failing tests, their assertion lines
  are not failures of their own;
* a linter or compiler error with its code: ruff/flake8/pylint ``E501``, mypy
  ``mypy [attr-defined]``, TypeScript ``TS2345``, rustc ``E0308``, ESLint
  ``eslint no-unused-vars``, a C/C++/Go ``error: <message>``.

**Linking** (:class:`FixTracker`, fed the turns of a transcript in order; its state is JSON
and carries over to the next import of the same file): a failure seen in a Bash result stays
*open* until a later run of the same program (``pytest``, ``ruff``, ``tsc``...: the command
without ``uv run`` / ``npx`` / ``python -m``...) shows it no more and succeeded (or, for a
test, completed with a summary line). If files were edited in between (Edit, Write,
MultiEdit, NotebookEdit results that succeeded), the failure was **fixed by** those edits,
with the assistant's words before the first edit as the description; without an edit it just
went away (flaky, or fixed elsewhere) and is no fix. No storage and no MCP in here: the
events go to :class:`session_buddy.core.errorfix.ErrorMemory`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

#: failures kept open per transcript (the oldest is forgotten first)
MAX_OPEN = 20
#: files kept per fix
MAX_FILES = 20
#: failures recognised in one output
MAX_PER_OUTPUT = 12
SIGNATURE_CHARS = 160
SAMPLE_CHARS = 240
DESCRIPTION_CHARS = 240
#: tools whose successful result means a file was changed
EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
#: tools whose output is a command's (the only output scanned for failures)
RUN_TOOLS = frozenset({"Bash", "BashOutput"})

_EXCEPTION = re.compile(
    r"^(?:E\s+)?(?:[A-Za-z_][\w]*\.)*"
    r"([A-Z][A-Za-z0-9]*(?:Error|Exception|Failure))"
    r"(?::\s*(.*))?$"
)
_PYTEST = re.compile(r"^(FAILED|ERROR)\s+(\S+?\.py(?:::\S+)?)(?:\s+-\s+(.*))?$")
_PYTEST_SUMMARY = re.compile(
    r"^=*\s*\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed)\b.*\bin [\d.]+s\b",
    re.M,
)
_LINT = re.compile(r"^(?P<path>\S+?):\d+:(?:\d+:)? (?P<code>[A-Z]{1,4}\d{3,4})\b:? (?P<msg>.*)$")
_MYPY = re.compile(
    r"^(?P<path>\S+?):\d+(?::\d+)?: error: (?P<msg>.*?)\s+\[(?P<code>[a-z][\w-]*)\]$"
)
_TSC = re.compile(
    r"^(?P<path>\S+?)(?:\(\d+,\d+\):?|:\d+:\d+)\s*(?:-\s*)?error (?P<code>TS\d{3,5}): (?P<msg>.*)$"
)
#: ruff's full format: the code and message, then `` --> path:line:col`` on the next line
_RUFF = re.compile(r"^(?P<code>[A-Z]{1,4}\d{3,4}) (?P<msg>\S.*)$")
_ARROW = re.compile(r"^\s*-->\s")
_RUSTC = re.compile(r"^error\[(?P<code>E\d{4})\]: (?P<msg>.*)$")
_ESLINT = re.compile(r"^\s+\d+:\d+\s+error\s+(?P<msg>.+?)\s{2,}(?P<code>@?[a-z][\w/-]*)$")
_CC = re.compile(r"^(?P<path>\S+?\.\w+):\d+:(?:\d+:)? (?:fatal )?error: (?P<msg>.*)$")

_QUOTED_PATH = re.compile(r"""(["'])(?:[A-Za-z]:)?[^"'\s]*[\\/][^"'\s]*\1""")
_PATH = re.compile(r"(?:(?<=\s)|^)(?:[A-Za-z]:)?(?:\.{0,2}[\\/])?(?:[\w.@+-]+[\\/])+[\w.@+-]+")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_SPACE = re.compile(r"\s+")
#: words in front of the program a command runs (``uv run pytest`` runs pytest)
_LAUNCHERS = frozenset(
    {"uv", "uvx", "run", "poetry", "pdm", "hatch", "pipenv", "rye", "npx", "pnpm", "yarn",
     "npm", "bunx", "bun", "exec", "dlx", "python", "python3", "-m", "time", "sudo", "env",
     "nice", "cargo", "go", "make", "just"}
)  # fmt: skip
#: commands that only prepare the one that runs (``cd x && pytest``)
_NOT_PROGRAMS = frozenset({"cd", "export", "source", ".", "set", "pushd", "echo"})
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def normalise(text: str) -> str:
    """A message with what differs between occurrences taken out: paths, addresses, ids and
    numbers; white space folded; cut to :data:`SIGNATURE_CHARS`."""
    text = _QUOTED_PATH.sub(r"\1<path>\1", text)
    text = _PATH.sub("<path>", text)
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()[:SIGNATURE_CHARS]


@dataclass(slots=True)
class Failure:
    """One failure as recognised: ``signature`` is what identifies it, ``sample`` the line."""

    signature: str
    kind: str  # exception | test | lint | type | compiler
    sample: str


def _line_failure(line: str) -> Failure | None:
    """A failure of one line of output (None when the line shows none)."""
    sample = line.strip()[:SAMPLE_CHARS]
    for pattern, kind, name in (
        (_MYPY, "type", "mypy [{code}]"),
        (_TSC, "type", "{code}"),
        (_RUSTC, "compiler", "{code}"),
        (_LINT, "lint", "{code}"),
        (_ESLINT, "lint", "eslint {code}"),
    ):
        found = pattern.match(line)
        if found:
            return Failure(name.format(code=found["code"]), kind, sample)
    found = _CC.match(line)
    if found:
        return Failure("error: " + normalise(found["msg"]), "compiler", sample)
    stripped = line.strip()
    found = _EXCEPTION.match(stripped)
    if found and (not line[:1].isspace() or stripped.startswith("E ")):
        message = normalise(found[2] or "")
        return Failure(found[1] + (f": {message}" if message else ""), "exception", sample)
    return None


def recognise(text: str) -> list[Failure]:
    """The failures ``text`` shows (at most :data:`MAX_PER_OUTPUT`, each signature once)."""
    text = _ANSI.sub("", text)
    tests: dict[str, Failure] = {}
    others: dict[str, Failure] = {}
    lines = text.splitlines()
    for index, raw in enumerate(lines):
        line = raw.rstrip()
        if not line or len(line) > 2000:
            continue
        ruff = _RUFF.match(line)
        if ruff and index + 1 < len(lines) and _ARROW.match(lines[index + 1]):
            others.setdefault(ruff["code"], Failure(ruff["code"], "lint", line[:SAMPLE_CHARS]))
            continue
        found = _PYTEST.match(line.strip())
        if found:
            test_id = found[2].replace("\\", "/")
            tests.setdefault(f"test {test_id}", Failure(f"test {test_id}", "test", line[:240]))
            continue
        failure = _line_failure(line)
        if failure is not None:
            others.setdefault(failure.signature, failure)
    if tests:  # the tests' own assertion lines are how they failed, not failures of their own
        others = {s: f for s, f in others.items() if f.kind != "exception"}
    return [*tests.values(), *others.values()][:MAX_PER_OUTPUT]


def program_of(command: str) -> str | None:
    """The program a shell command runs (``uv run pytest -q`` -> ``pytest``; ``cd x && ruff
    check`` -> ``ruff``), for telling a later run of the same check; None when there is none."""
    for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", command.strip()):
        words = [w for w in part.split() if "=" not in w or w.startswith("-")]
        if not words or words[0] in _NOT_PROGRAMS:
            continue
        for word in words:
            name = word.rsplit("/", 1)[-1]
            if name in _LAUNCHERS or name.startswith("-"):
                continue
            return name.removesuffix(".exe")
    return None


def file_of_test(signature: str) -> str | None:
    """The file of a test signature (``test tests/test_x.py::test_y`` -> ``tests/test_x.py``)."""
    if not signature.startswith("test "):
        return None
    return signature[5:].split("::", 1)[0] or None


_CALL_ARG = re.compile(r"\b(command|file_path|notebook_path)=(.*?)(?= \w+=|…|$)")


def call_argument(call: str | None, name: str) -> str | None:
    """One argument of a tool-call summary (``[tool_use Edit] file_path=/x.py old_string=...``)."""
    if not call:
        return None
    for found in _CALL_ARG.finditer(call):
        if found[1] == name:
            return found[2].strip() or None
    return None


def edited_file(metadata: dict[str, Any]) -> str | None:
    """The file a successful Edit/Write/MultiEdit/NotebookEdit result changed, relative to the
    session's folder when it is inside it."""
    if metadata.get("tool") not in EDIT_TOOLS or metadata.get("is_error"):
        return None
    call = metadata.get("tool_call")
    path = call_argument(call, "file_path") or call_argument(call, "notebook_path")
    if not path:
        return None
    cwd = metadata.get("cwd")
    if isinstance(cwd, str) and cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1 :]
    return path


def one_line(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    return (flat[: limit - 1].rsplit(" ", 1)[0] or flat[: limit - 1]) + "…"


@dataclass
class OpenFailure:
    signature: str
    kind: str
    sample: str
    program: str | None
    command: str | None
    session_id: str | None
    project: str | None
    at: str | None
    files: list[str] = field(default_factory=list)
    description: str | None = None


@dataclass
class FixEvent:
    """``seen``: a failure happened; ``fixed``: the edits in ``files`` resolved it."""

    event: str  # seen | fixed
    signature: str
    kind: str
    sample: str
    session_id: str | None
    project: str | None
    at: str | None  # when it failed
    command: str | None = None  # the failing run (seen) or the passing run (fixed)
    fixed_at: str | None = None
    files: list[str] = field(default_factory=list)
    description: str | None = None


class FixTracker:
    """Follows one transcript: failures of commands, the edits after them, the runs that
    show them gone. :meth:`state` is JSON for the next import of the same file."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.open: dict[str, OpenFailure] = {}
        self.prose: str | None = None
        for entry in (state or {}).get("open", []):
            try:
                failure = OpenFailure(**entry)
            except TypeError:
                continue
            self.open[failure.signature] = failure
        prose = (state or {}).get("prose")
        self.prose = prose if isinstance(prose, str) else None

    def state(self) -> dict[str, Any] | None:
        if not self.open and self.prose is None:
            return None
        return {"open": [asdict(f) for f in self.open.values()], "prose": self.prose}

    def feed(
        self,
        role: str,
        content: str,
        metadata: dict[str, Any],
        *,
        session_id: str | None,
        project: str | None,
        at: datetime | None,
    ) -> list[FixEvent]:
        """The events one turn makes (usually none)."""
        if role == "assistant":
            if self.open and content.strip():
                self.prose = one_line(content, DESCRIPTION_CHARS)
            return []
        if role != "tool":
            return []
        path = edited_file(metadata)
        if path is not None:
            for failure in self.open.values():
                if not failure.files:
                    failure.description = self.prose
                if path not in failure.files and len(failure.files) < MAX_FILES:
                    failure.files.append(path)
            return []
        if metadata.get("tool") not in RUN_TOOLS:
            return []
        stamp = at.isoformat() if at else None
        command = call_argument(metadata.get("tool_call"), "command")
        return list(self._run(content, metadata, command, session_id, project, stamp))

    def _run(
        self,
        content: str,
        metadata: dict[str, Any],
        command: str | None,
        session_id: str | None,
        project: str | None,
        stamp: str | None,
    ) -> Iterator[FixEvent]:
        program = program_of(command) if command else None
        found = {f.signature: f for f in recognise(content)}
        failed = bool(metadata.get("is_error")) or bool(found)
        completed = _PYTEST_SUMMARY.search(content) is not None
        for signature, failure in list(self.open.items()):
            if signature in found or failure.program != program or program is None:
                continue
            if failed and not (failure.kind == "test" and completed):
                continue
            del self.open[signature]
            if failure.files:
                yield FixEvent(
                    "fixed",
                    signature,
                    failure.kind,
                    failure.sample,
                    failure.session_id,
                    failure.project,
                    failure.at,
                    command=command[:200] if command else None,
                    fixed_at=stamp,
                    files=list(failure.files),
                    description=failure.description or self.prose,
                )
        for signature, new in found.items():
            if signature in self.open:
                continue
            self.open[signature] = OpenFailure(
                signature,
                new.kind,
                new.sample,
                program,
                command[:200] if command else None,
                session_id,
                project,
                stamp,
            )
            yield FixEvent(
                "seen",
                signature,
                new.kind,
                new.sample,
                session_id,
                project,
                stamp,
                command=command[:200] if command else None,
            )
        while len(self.open) > MAX_OPEN:
            self.open.pop(next(iter(self.open)))
        if not self.open:
            self.prose = None
