"""Process set-up for the fast CPU paths: torch's thread count and glibc's allocator set to keep
freed memory in the process, so the hundreds of large temporary tensors of an exact TRPO step do
not each fault in fresh pages (:func:`configure_process`, :func:`retain_freed_memory`).

Meta-RL updates allocate and free the same large activations many times per iteration (one
[20, 2000, 64] float32 tensor is 10 MB; an exact TRPO step makes hundreds). glibc serves blocks
above its mmap threshold with fresh mmap pages and unmaps them on free, so every allocation
pays page faults and the zeroing of new pages in the kernel. :func:`retain_freed_memory` serves
such blocks from the heap and keeps freed memory in the process, as jemalloc or tcmalloc would;
the price is that the process keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
"""Blocks below this come from the heap (glibc >= 2.35 accepts it; older glibc caps the
threshold at 32 MB, which :func:`retain_freed_memory` falls back to)."""
MMAP_THRESHOLD_FALLBACK_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the top of the heap kept before glibc returns any to the OS."""


def retain_freed_memory() -> bool:
    """Serve blocks below 1 GB (32 MB on older glibc) from glibc's heap and keep freed memory
    in the process.

    Setting these ``mallopt`` parameters also turns off glibc's dynamic threshold (which
    otherwise follows the last freed block, so whether an allocation faults in fresh pages
    depends on the order of earlier ones). A no-op returning ``False`` where the C library
    is not glibc (macOS, musl, Windows).

    Returns:
        Whether both settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set: bool = any(mallopt(_M_MMAP_THRESHOLD, size) == 1
                         for size in (MMAP_THRESHOLD_BYTES, MMAP_THRESHOLD_FALLBACK_BYTES))
    trim_set: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set


def configure_process(num_threads: int, keep_freed_memory: bool = True) -> None:
    """Set torch's intra-op threads and, optionally, :func:`retain_freed_memory`.

    Args:
        num_threads: torch intra-op threads (the machine's cores; 1 when several processes
            share them).
        keep_freed_memory: apply :func:`retain_freed_memory` (``run.retain_freed_memory``).
    """
    torch.set_num_threads(num_threads)
    if keep_freed_memory:
        retain_freed_memory()
