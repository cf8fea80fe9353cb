"""glibc's allocator, tuned for the long-running processes: the service and the batch driver.

Each function does nothing where the C library is not glibc (musl, macOS)."""
from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt's parameter numbers (malloc.h)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - both exist in glibc only
        return libc
    except (OSError, AttributeError):
        return None


LIBC = _glibc()


def trim_heap() -> None:
    """Hand the heap's free pages back to the system (malloc_trim)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def return_freed_memory_promptly() -> None:
    """Have glibc give large freed blocks back to the system at once.

    Decoding a large image allocates in blocks of up to 16 MB (PIL), and glibc raises its mmap
    threshold each time such a block is freed, so later blocks come from per-thread heaps that
    are never returned: 2 GB stayed held after ten large PNGs. A fixed threshold keeps blocks of
    4 MB and more in their own mappings, unmapped when freed."""
    if LIBC is not None:
        LIBC.mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)


def limit_arenas(n: int) -> None:
    """At most `n` malloc arenas from now on (glibc's default: 8 per core).

    The batch driver runs Ray's core worker, whose many threads each took an arena of their own;
    memory freed in one arena is not reused by another, and the driver crept up over a whole
    catalogue: over 100,000 replayed products its anonymous memory grew 160 -> 182 MiB with
    glibc's default and 158 -> 169 MiB with 2 arenas (docs/benchmarks.md). glibc fixes the limit
    when a process first needs more than 8 arenas, so this is called before Ray starts its
    threads; arenas already made stay."""
    if LIBC is not None:
        LIBC.mallopt(_M_ARENA_MAX, n)
