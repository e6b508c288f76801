"""The process's resident memory, and handing freed heap back to the OS.

``rss_bytes`` reads ``VmRSS`` from ``/proc/self/status`` (Linux), else ``psutil`` when it
is installed, else ``None``. ``release_free_memory`` calls glibc's ``malloc_trim(0)``: after
a large transient allocation (loading the index, the model's graph optimisation, a batch of
long texts) glibc keeps the freed pages mapped, so the resident size stays at its peak; the
trim returns them. It is a no-op where there is no glibc. :class:`IdleTrim` runs it once a
burst of work is over (the server touches it after every tool call).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


def rss_bytes() -> int | None:
    """The resident set size of this process in bytes, or None when it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS (glibc); True when a trim ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class IdleTrim:
    """Runs :func:`release_free_memory` (in a thread) once ``delay`` seconds have passed
    without a :meth:`touch`: searches and stores leave freed heap that glibc keeps mapped
    (~30 MB over 40 searches after a store at 100k items), and a trim per call would cost
    each call its time."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        self.runs = 0
        self._handle: asyncio.TimerHandle | None = None

    def touch(self) -> None:
        """Work just happened (call from the event loop): trim after ``delay`` of quiet."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(self.delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.runs += 1
        # RuntimeError: the loop's executor is shut down (the process is ending)
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().run_in_executor(None, release_free_memory)
