"""Process-wide settings that make compiled JAX code on a CPU as fast as the machine allows.

`keep_freed_memory` asks glibc's allocator to keep freed memory for reuse rather than hand it
back to the operating system. XLA's CPU runtime allocates the large buffers of a compiled call
(a scan's stacked outputs, a gradient's residuals) afresh on every call; above glibc's default
mmap threshold each such buffer is a fresh mapping whose pages fault in, zero-filled, as they are
first written. On machines where page faults are expensive (virtual machines especially) that
dominates a recurrent training step: measured on this project's 2-core VM, a forward and backward
pass of the LSTM at 196 steps × batch 64 × hidden 64 took 90–110 ms with the defaults and 55 ms
with freed memory kept (benchmarks/lstm.py). PyTorch keeps its own caches, so the benchmarks set
this for both sides of every comparison, and memdyn's command lines set it before running.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Buffers up to 1 GiB from the heap; glibc versions that cap the threshold at 32 MiB (their
# documented maximum on 64-bit) refuse the larger value, so that is asked for next.
_MMAP_THRESHOLDS = (2**30, 32 * 1024 * 1024)
_TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Keep freed heap memory in the process (glibc on Linux); returns whether it took effect.

    Elsewhere (macOS, musl) it does nothing and returns `False`. It changes no results, only
    where memory comes from; call it once, early, before the large allocations.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mapped = any(mallopt(_M_MMAP_THRESHOLD, threshold) for threshold in _MMAP_THRESHOLDS)
    return mapped and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
