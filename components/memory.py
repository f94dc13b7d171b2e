"""Hands back to the operating system the memory a finished step freed.

LocalDagRunner runs every component in one process, and glibc keeps what a component freed in
its heaps for reuse: the process's resident size stays at the largest component's peak for the
rest of the run, beneath the Pusher's serving check (a second TensorFlow process) and every
later component. malloc_trim returns the free pages; elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_freed_memory() -> None:
    """Collects the earlier steps' unreachable objects (a Keras model is a web of reference
    cycles), then returns the free pages of every malloc arena to the OS (glibc only)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return
    trim(0)
