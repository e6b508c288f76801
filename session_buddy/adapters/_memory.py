"""The process's resident memory, and handing freed heap back to the OS.

``rss_bytes`` reads ``VmRSS`` from ``/proc/self/status`` (Linux), else ``psutil`` when it
is installed, else ``None``. ``release_free_memory`` calls glibc's ``malloc_trim(0)``: after
a large transient allocation (loading the index, the model's graph optimisation, a batch of
long texts) glibc keeps the freed pages mapped, so the resident size stays at its peak; the
trim returns them. It is a no-op where there is no glibc.
"""

from __future__ import annotations

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
