"""Logging that never touches stdout (stdout carries JSON-RPC in stdio mode)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER_NAME = "session_buddy"


def route_logging_to_stderr(level: int | str | None = None, log_file: Path | None = None) -> None:
    """Point stdlib logging (and structlog, if loaded) at stderr or a file, never stdout."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        stream = getattr(existing, "stream", None)
        if stream is sys.stdout or stream is sys.__stdout__:
            root.removeHandler(existing)
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if log_file is not None or not root.handlers:
        root.addHandler(handler)
    if level is not None:
        logging.getLogger(LOGGER_NAME).setLevel(level)
    if "structlog" in sys.modules:
        import structlog

        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")
