"""Opt-in process settings that make CPU inference of the HSRA networks faster.

glibc's malloc hands big buffers (our 15–30 MB feature maps) back to the OS when they are freed and page-faults
them in again on the next forward: 15–30 % of an inference pass here. :func:`keep_freed_memory` tells glibc to
keep freed memory in the process instead (the effect of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
/ ``MALLOC_TOP_PAD_``), at the price of a resident set that stays at its peak. It changes the whole process,
so only programs (the CLI, benchmarks) call it, never the library by itself. jemalloc via ``LD_PRELOAD`` is the
alternative where it is installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 4 * 2**30,
                      top_pad: int = 256 * 2**20) -> bool:
    """Ask glibc to serve allocations up to ``mmap_threshold`` bytes from its heap and not to return freed
    heap memory below ``trim_threshold``. Returns False (and changes nothing) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, int(min(trim_threshold, 2**31 - 1))) == 1
    ok &= mallopt(_M_TOP_PAD, int(min(top_pad, 2**31 - 1))) == 1
    return bool(ok)
