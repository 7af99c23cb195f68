"""Process memory: give freed heap pages back between stages, and read the peak RSS.

Tokenizing a whole corpus leaves many small freed blocks that glibc keeps; trimming at stage
boundaries lets the next stage reuse that memory instead of growing the peak. The allocator's
own thresholds are left as they are: within a stage, the walk's per-batch temporaries reuse
the heap's pages (a fixed mmap threshold gave each one fresh zero pages, faulted in per batch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def release() -> None:
    """Give freed heap pages back to the OS (e.g. after tokenizing a whole corpus)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20
