"""The C heap of a long-running process: glibc malloc statistics, and giving freed pages back.

Measured with ``bench/soak.py`` (``mallinfo2`` next to RSS): the bytes in use by C code stay flat over hours, but
glibc's heap grows in steps, with the free space inside it (freed activations of onnxruntime, numpy temporaries)
growing as much. glibc raises its mmap threshold each time a large mmapped block is freed, so later blocks of
that size come from the heap, and freed heap pages in the middle of an arena are only returned by
``malloc_trim``. Python's tracemalloc cannot see any of this. ``trim`` is called by the inference thread once a
minute (a few milliseconds); on a C library other than glibc both functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@dataclass(frozen=True)
class HeapStats:
    heap_bytes: int  # obtained from the system with brk/mmap for the arenas
    in_use_bytes: int  # handed out to C code (arenas and large mmapped blocks)
    free_bytes: int  # inside the arenas, not handed out: what fragmentation keeps resident
    mmapped_bytes: int


class NativeHeap:
    """glibc's malloc, if this process uses it."""

    def __init__(self) -> None:
        self._libc = None
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            libc.mallinfo2.restype = _MallInfo2
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            self._libc = libc
        except (OSError, AttributeError):  # musl, macOS, or a glibc older than 2.33
            pass

    @property
    def available(self) -> bool:
        return self._libc is not None

    def stats(self) -> HeapStats | None:
        if self._libc is None:
            return None
        m = self._libc.mallinfo2()
        return HeapStats(m.arena + m.hblkhd, m.uordblks + m.hblkhd, m.fordblks, m.hblkhd)

    def trim(self) -> bool:
        """Return the free pages of every arena to the system; True if any were."""
        return bool(self._libc.malloc_trim(0)) if self._libc is not None else False
