"""Logging that never touches stdout (stdout carries JSON-RPC in stdio mode), and stays
bounded: log files rotate by size, each argument of a record is cut to
``MAX_LOG_ARG_CHARS`` characters, a record to ``MAX_RECORD_CHARS``, and a message repeated
more than ``REPEATS_PER_WINDOW`` times in ``REPEAT_WINDOW_S`` is counted, not written."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TextIO

LOGGER_NAME = "session_buddy"
MAX_LOG_ARG_CHARS = 200
MAX_RECORD_CHARS = 2000
REPEAT_WINDOW_S = 60.0
REPEATS_PER_WINDOW = 5
#: Libraries whose loggers follow the configured level and our handlers (FastMCP's own
#: Rich handler writes boxed, 80-column tracebacks and every request at INFO).
LIBRARY_LOGGERS = ("fastmcp", "mcp", "uvicorn", "uvicorn.error", "docket")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more chars)"


class BoundedRecords(logging.Filter):
    """Cuts long arguments and messages; rate-limits records that repeat."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key: [window start, count]

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _cut(a, MAX_LOG_ARG_CHARS) if isinstance(a, str) else a for a in record.args
            )
        message = record.getMessage()
        if len(message) > MAX_RECORD_CHARS:
            record.msg, record.args = _cut(message, MAX_RECORD_CHARS), None
        return self._admit(record)

    def _admit(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())  # the same text, repeated
        now = time.monotonic()
        window = self._seen.get(key)
        if window is None or now - window[0] > REPEAT_WINDOW_S:
            suppressed = int(window[1]) - REPEATS_PER_WINDOW if window else 0
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = [now, 1]
            if suppressed > 0:
                record.msg = f"{record.getMessage()} (and {suppressed} more like it, not logged)"
                record.args = None
            return True
        window[1] += 1
        return window[1] <= REPEATS_PER_WINDOW


class RotatingLog(RotatingFileHandler):
    """A size-rotated log file, created 0600. With ``follow_std`` the process's stdout and
    stderr (fd 1 and 2) point at the current file, so output that bypasses logging (a
    crash, a library's print) is in the same, bounded file."""

    def __init__(self, path: Path, max_bytes: int, backups: int, follow_std: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.follow_std = follow_std
        self._follow()

    def _follow(self) -> None:
        if self.follow_std and self.stream is not None:
            sys.stderr.flush()
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)

    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is None:
            self.stream = self._open()
        os.chmod(self.baseFilename, 0o600)
        self._follow()


def route_logging_to_stderr(
    level: int | str | None = None,
    log_file: Path | None = None,
    *,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 3,
    follow_std: bool = False,
) -> None:
    """Point stdlib logging (and structlog, if loaded) at stderr or a file, never stdout."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        stream = getattr(existing, "stream", None)
        if stream is sys.stdout or stream is sys.__stdout__:
            root.removeHandler(existing)
        elif log_file is not None and type(existing) is logging.StreamHandler:
            root.removeHandler(existing)  # the file replaces stderr
    handler: logging.Handler
    if log_file is not None:
        handler = RotatingLog(log_file, max_bytes, backups, follow_std)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(BoundedRecords())
    if log_file is not None or not root.handlers:
        root.addHandler(handler)
        _file_handler[0] = handler
    if log_file is not None:
        reclaim_logging(level or logging.WARNING)
    if level is not None:
        logging.getLogger(LOGGER_NAME).setLevel(level)
    if "structlog" in sys.modules:
        import structlog

        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


_file_handler: list[logging.Handler | None] = [None]


def reclaim_logging(level: int | str) -> None:
    """Route FastMCP's and the MCP SDK's loggers through ours, at ``level``, and put the
    log file's handler back on the root logger (ACB's structlog setup replaces the root
    handlers with a plain, unbounded stderr handler)."""
    root = logging.getLogger()
    mine = _file_handler[0]
    if mine is None:
        mine = _file_handler[0] = logging.StreamHandler(sys.stderr)
        mine.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        mine.addFilter(BoundedRecords())
    if mine is not None:
        for existing in list(root.handlers):
            if existing is not mine and isinstance(existing, logging.StreamHandler):
                root.removeHandler(existing)
        if mine not in root.handlers:
            root.addHandler(mine)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")


# -- reading the log files (``session-buddy logs``) -------------------------------------------


def log_files(base: Path) -> list[Path]:
    """``base`` and its rotated files (``base.1`` is the newest of those), oldest first."""
    rotated = []
    for path in base.parent.glob(base.name + ".*"):
        suffix = path.name[len(base.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    found = [p for _, p in sorted(rotated, reverse=True)]
    return [*found, base] if base.exists() else found


def read_lines(files: list[Path], lines: int, match: Callable[[str], bool]) -> list[str]:
    """The last ``lines`` lines across ``files`` (in order) that ``match``."""
    kept: deque[str] = deque(maxlen=max(0, lines))
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as stream:
                for line in stream:
                    if match(line):
                        kept.append(line.rstrip("\n"))
        except OSError:
            continue  # rotated away while reading
    return list(kept)


def follow_lines(
    base: Path, match: Callable[[str], bool], poll_s: float = 0.25, start: int | None = None
) -> Iterator[str]:
    """Lines appended to ``base`` after offset ``start`` (default: its end now), forever,
    across rotations: when the file is replaced or shrinks, the new one is read from its
    start."""
    stream, inode = _open_at(base, end=True, start=start)
    partial = ""
    while True:
        if stream is None:
            time.sleep(poll_s)
            stream, inode = _open_at(base, end=False)
            continue
        chunk = stream.readline()
        if chunk:
            partial += chunk
            if partial.endswith("\n"):
                line, partial = partial.rstrip("\n"), ""
                if match(line):
                    yield line
            continue
        time.sleep(poll_s)
        if _replaced(base, inode, stream.tell()):
            stream.close()
            stream, inode = _open_at(base, end=False)


def _open_at(
    base: Path, *, end: bool, start: int | None = None
) -> tuple[TextIO | None, int | None]:
    try:
        stream = base.open(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    if end:
        size = stream.seek(0, os.SEEK_END)
        if start is not None and start < size:
            stream.seek(start)
    return stream, os.fstat(stream.fileno()).st_ino


def _replaced(base: Path, inode: int | None, position: int) -> bool:
    try:
        found = base.stat()
    except OSError:
        return True
    return found.st_ino != inode or found.st_size < position
