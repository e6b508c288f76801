"""Finding, and starting, the one session-buddy service of a data directory.

The service writes ``<data>/service.json`` (pid, address, version) once it listens, and holds
an exclusive lock on ``<data>/service.lock`` for its whole life: a second service for the
same data directory sees the lock and exits (after retrying for :data:`LOCK_WAIT_S`), and a
stale ``service.json`` left by a killed service is recognised because its process is gone or
its port refuses connections.

Bridges that find no live service start one under ``<data>/service.start.lock``, so when two
bridges start at once exactly one service is spawned. Light imports only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

SERVICE_FILE = "service.json"
SERVICE_LOCK = "service.lock"
START_LOCK = "service.start.lock"
START_TIMEOUT_S = 60.0
#: How long a starting service waits for the service lock: a service that is stopping (idle,
#: signalled) still holds it for a moment after it removed its file, and a starter spawned in
#: that moment takes over instead of exiting (its bridge would report "stopped while starting").
LOCK_WAIT_S = 0.5


def read_service(data_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((data_dir / SERVICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and {"pid", "host", "port"} <= info.keys() else None


def write_service(data_dir: Path, info: dict[str, Any]) -> None:
    """Atomically replace service.json."""
    tmp = data_dir / f".{SERVICE_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(info))
    os.replace(tmp, data_dir / SERVICE_FILE)


def remove_service(data_dir: Path, pid: int) -> None:
    """Remove service.json if it still describes process ``pid``."""
    info = read_service(data_dir)
    if info is not None and info.get("pid") == pid:
        with contextlib.suppress(OSError):
            (data_dir / SERVICE_FILE).unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists": look at its state
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def live_service(data_dir: Path) -> dict[str, Any] | None:
    info = read_service(data_dir)
    if info is None or not pid_alive(int(info["pid"])):
        return None
    if not port_open(str(info["host"]), int(info["port"])):
        return None
    return info


@contextlib.contextmanager
def start_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / START_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


_LAUNCHER = (
    "import os, subprocess, sys\n"
    "log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,"
    " start_new_session=True, close_fds=True, umask=0o077)\n"
    "print(p.pid)\n"
)


_DELAYED = (
    "import runpy, sys, time\n"
    "time.sleep(float(sys.argv[1]))\n"
    "sys.argv = ['session-buddy', 'service']\n"
    "runpy.run_module('session_buddy.cli', run_name='__main__')\n"
)


def spawn_service(data_dir: Path, config: str | None, delay_s: float = 0.0) -> int:
    """Start `session-buddy service` fully detached (through a launcher that exits at once,
    so the service is not our child and never lingers as a zombie); returns its pid.
    ``delay_s`` lets the service start later (a hook warming it up leaves the CPU to the
    client and its MCP front first)."""
    import subprocess  # here: the hooks import this module and rarely spawn

    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ)
    env["SESSION_BUDDY_DATA_DIR"] = str(data_dir)
    if config:
        env["SESSION_BUDDY_CONFIG"] = str(config)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _LAUNCHER,
            str(logs / "service.log"),
            sys.executable,
            *(
                ["-c", _DELAYED, str(delay_s)]
                if delay_s > 0
                else ["-m", "session_buddy.cli", "service"]
            ),
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return int(out.stdout.decode().strip())


def take_service_lock(data_dir: Path, wait_s: float = LOCK_WAIT_S) -> IO[str] | None:
    """``data_dir``'s service lock, held as long as the returned file stays open; None when
    another process still holds it after ``wait_s`` seconds of retrying."""
    lock = open(data_dir / SERVICE_LOCK, "a+")  # noqa: SIM115 - held by the caller
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                return None
            time.sleep(0.02)


def service_lock_held(data_dir: Path) -> bool:
    """Whether a service process holds ``data_dir``'s service lock (it takes the lock first,
    then binds and writes its file: a starter that lost the race waits for that one)."""
    try:
        lock = take_service_lock(data_dir, wait_s=0.0)
    except OSError:
        return False
    if lock is None:
        return True
    lock.close()  # (closing the file releases the lock)
    return False


def ensure_service(
    data_dir: Path, config: str | None = None, timeout: float = START_TIMEOUT_S
) -> dict[str, Any]:
    """The live service of ``data_dir``, started if needed. Raises RuntimeError on failure."""
    info = live_service(data_dir)
    if info is not None:
        return info
    with start_lock(data_dir):
        info = live_service(data_dir)
        if info is not None:
            return info
        pid = spawn_service(data_dir, config)
        deadline = time.monotonic() + timeout
        waited = False  # for another service that held the lock when ours gave up
        while time.monotonic() < deadline:
            info = live_service(data_dir)
            if info is not None:
                return info
            if not pid_alive(pid):
                # it exits at once when another service holds the lock: wait for that one
                other = read_service(data_dir)
                if (other is not None and pid_alive(int(other["pid"]))) or service_lock_held(
                    data_dir
                ):  # (a service that holds the lock may not have written its file yet)
                    waited = True
                    time.sleep(0.05)
                    continue
                if waited:  # that one was stopping (slower than LOCK_WAIT_S): start ours again
                    waited = False
                    pid = spawn_service(data_dir, config)
                    continue
                raise RuntimeError(
                    f"the session-buddy service stopped while starting; "
                    f"see {data_dir / 'logs' / 'service.log'}"
                )
            time.sleep(0.02)
        raise RuntimeError(
            f"the session-buddy service did not start within {timeout:.0f} s; "
            f"see {data_dir / 'logs' / 'service.log'}"
        )
