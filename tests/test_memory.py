"""The C heap: glibc's statistics are read, freed pages go back to the system, and the daemon's inference thread
does that once a minute (the soak's RSS growth was free space inside glibc's heap, not a leak)."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
from fakes import LiveSource
from test_engine import SR, detector_for

from streamdetect.daemon.engine import BatchingEngine, run_sources
from streamdetect.util.memory import NativeHeap


def test_trim_gives_freed_heap_pages_back():
    heap = NativeHeap()
    assert heap.available  # glibc on every machine this runs on (Debian, Ubuntu)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(800)]  # 50 MB below the mmap threshold: heap, not mmap
    keep = blocks[-1]
    for b in blocks[:-1]:  # freed, but the last block pins the top of the heap: only malloc_trim returns them
        libc.free(b)
    before = heap.stats()
    assert before.free_bytes > 40 * 2**20
    assert heap.trim()
    after = heap.stats()
    libc.free(keep)
    assert after.in_use_bytes <= before.in_use_bytes + 2**20


class CountingHeap(NativeHeap):
    def __init__(self):
        super().__init__()
        self.trims = 0

    def trim(self) -> bool:
        self.trims += 1
        return super().trim()


def test_the_inference_thread_trims_the_heap_on_its_interval(tiny_model):
    det, _ = detector_for(tiny_model, 1.0)
    heap = CountingHeap()
    engine = BatchingEngine(det, heap=heap, trim_every_s=0.0)
    _, stats = run_sources(det, [LiveSource(np.zeros(10 * SR, np.float32), "s")], threading.Event(), engine=engine)
    assert heap.trims == stats.heap_trims >= 1
