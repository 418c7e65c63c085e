"""Keeping freed memory in the process instead of returning it to the system (glibc malloc).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it on
``free``, so each large tensor of a long clip is new memory whose pages the kernel zero-fills on first touch.
A 128 px stage-3 denoiser pass over 200 frames took 7 million page faults and 17 s of system time for 21 s of
wall time on the 2-core CPU; keeping freed memory (no mmap for large blocks, no trimming of the heap, the way
jemalloc and tcmalloc behave) made it 11 s. The process's peak memory grows by the allocator's fragmentation
(2.0 -> 2.7 GiB in that pass), and memory freed after the peak stays with the process.

The commands (`dawn-train`, `dawn-generate`, `dawn-evaluate`, `dawn-bench`, `dawn-demo`,
`dawn-precompute-motion`) call ``keep_freed_memory`` first; ``DAWN_KEEP_FREED_MEMORY=0`` turns it off. It does
nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV = "DAWN_KEEP_FREED_MEMORY"
# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Makes glibc malloc keep freed memory for reuse (mallopt: M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB);
    returns whether it is now on. Off when ``DAWN_KEEP_FREED_MEMORY=0`` or the C library is not glibc."""
    if os.environ.get(ENV, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
