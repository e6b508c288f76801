"""Where session-buddy keeps its files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "SESSION_BUDDY_DATA_DIR"


@dataclass(frozen=True)
class SessionPaths:
    """The data, log and handoff folders. Nothing is created until :meth:`ensure` is called."""

    data: Path
    logs: Path
    handoffs: Path

    @classmethod
    def from_settings(cls, data_dir: Path | str | None = None) -> SessionPaths:
        """`data_dir` (settings) > $SESSION_BUDDY_DATA_DIR > $HOME/.claude/data/session-buddy."""
        chosen = data_dir or os.environ.get(DATA_DIR_ENV)
        if chosen:
            root = Path(chosen).expanduser()
        else:
            home = Path(os.environ.get("HOME") or Path.home())
            root = home / ".claude" / "data" / "session-buddy"
        root = root.resolve()
        return cls(data=root, logs=root / "logs", handoffs=root / "handoffs")

    def ensure(self) -> SessionPaths:
        for folder in (self.data, self.logs, self.handoffs):
            folder.mkdir(parents=True, exist_ok=True)
        return self
