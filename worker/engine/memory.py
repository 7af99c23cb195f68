"""Process memory: give freed heap pages back between stages, and read the peak RSS.

Tokenizing a whole corpus leaves many small freed blocks that glibc keeps; trimming at stage
boundaries lets the next stage reuse that memory instead of growing the peak.
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


M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)
MMAP_THRESHOLD = 256 << 10


def return_large_blocks() -> None:
    """Allocations of 256 KiB and more get their own mapping, unmapped when freed. glibc
    otherwise raises that threshold as large blocks are freed and keeps later ones on its
    heap, so a walk's per-layer temporaries pile up (SmolLM2 lazy: peak RSS 904 -> 689 MB at
    1 MiB; 256 KiB also keeps GQA's sub-MiB key/value temporaries off the heap: walk peak
    587 -> 576 MB)."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release() -> None:
    """Give freed heap pages back to the OS (e.g. after tokenizing a whole corpus)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20
