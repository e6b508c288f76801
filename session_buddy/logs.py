"""Logging that never touches stdout (stdout carries JSON-RPC in stdio mode), and stays
bounded: log files rotate by size, each argument of a record is cut to
``MAX_LOG_ARG_CHARS`` characters, a record to ``MAX_RECORD_CHARS``, and a message repeated
more than ``REPEATS_PER_WINDOW`` times in ``REPEAT_WINDOW_S`` is counted, not written."""

from __future__ import annotations

import logging
import os
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

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
