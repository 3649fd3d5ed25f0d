"""Hand freed memory back to the operating system between phases (glibc's `malloc_trim`).

torch's CPU tensors come from malloc. Freed blocks below glibc's mmap threshold stay in the
process's heaps, and that threshold rises to the largest block freed so far (up to 32 MB), so
after a few batches of decode activations and KV caches nearly every tensor is heap memory
that `free` keeps. Engines decode in a worker thread, whose arena is a separate heap. The
resident size then stays at the high-water mark of every phase at once. `malloc_trim(0)`
returns the free pages of every arena; it costs about a millisecond, so it is called where a
phase's transient memory has just died: after an engine batch, after an update, after an eval.

Covers glibc (Linux). Elsewhere (macOS, musl) it does nothing: those allocators give memory
back by themselves or not at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> None:
    """Return the free pages of every malloc arena to the OS (glibc); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
