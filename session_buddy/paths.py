"""Where session-buddy keeps its files, and keeping them private (folders 0700, files 0600)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "SESSION_BUDDY_DATA_DIR"
#: The umask of every process that writes the data directory (service, standalone server).
PRIVATE_UMASK = 0o077


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
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self

    def make_private(self, *extra_files: Path) -> list[str]:
        """Set this process's umask to 0077 (every file it creates from now on is 0600, every
        folder 0700: the database and its WAL, service.json, logs) and repair looser modes
        of what exists: the data folder, its subfolders and their files, and ``extra_files``
        (a database kept elsewhere). Returns one line per repaired path, for a warning."""
        os.umask(PRIVATE_UMASK)
        self.ensure()
        repaired: list[str] = []
        for folder in (self.data, self.logs, self.handoffs):
            repaired += _tighten(folder, 0o700)
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        repaired += _tighten(Path(entry.path), 0o600)
        for path in extra_files:
            for candidate in (path, path.with_name(path.name + ".wal")):
                if candidate.is_file():
                    repaired += _tighten(candidate, 0o600)
        return repaired


def _tighten(path: Path, mode: int) -> list[str]:
    try:
        current = stat.S_IMODE(path.lstat().st_mode)
    except OSError:
        return []
    if current & 0o077 == 0:
        return []
    try:
        os.chmod(path, mode)
    except OSError as exc:
        return [f"{path} is mode {current:04o} and could not be made {mode:04o}: {exc}"]
    return [f"{path} was mode {current:04o}, now {mode:04o}"]
