"""Return the C heap's free pages to the operating system between the phases of a long search.

glibc keeps freed memory in its heap; a search that allocates many buffers of changing sizes would
keep hundreds of MB resident that it no longer uses (measured at 50k: 300 MB peak resident against
~190 MB live). ``malloc_trim(0)`` hands the free pages back. A no-op where the C library has no
``malloc_trim`` (macOS, Windows, musl).

Example:
    >>> release_free_heap() in (True, False)
    True
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Give the heap's free pages back to the OS; True when the C library could."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
