"""The preallocated ring an audio callback writes into without blocking, read by its consumer.

Positions are absolute sample counts since the stream started (Python ints, so they never wrap), which makes a
window's start time exact: ``start_sample / sample_rate``, however the audio arrived in blocks.
"""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """Single-producer single-consumer float32 ring of fixed capacity.

    The writer never blocks (an audio callback must not); when the reader falls behind, the oldest unread
    samples are overwritten and counted in ``overrun_samples`` instead of vanishing silently.
    """

    def __init__(self, capacity_samples: int):
        if capacity_samples <= 0:
            raise ValueError(f"ring buffer capacity must be positive, got {capacity_samples}")
        self.capacity_samples = capacity_samples
        self._data = np.zeros(capacity_samples, dtype=np.float32)
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self.written_samples = 0  # absolute index one past the newest sample
        self.read_samples = 0  # absolute index of the oldest sample the reader still needs
        self.overrun_samples = 0
        self.overrun_events = 0

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        n = block.shape[0]
        if n == 0:
            return
        with self._lock:
            if n > self.capacity_samples:  # only the newest capacity_samples can be kept
                dropped = n - self.capacity_samples
                block = block[dropped:]
                self.written_samples += dropped
                n = self.capacity_samples
            start = self.written_samples % self.capacity_samples
            first = min(n, self.capacity_samples - start)
            self._data[start : start + first] = block[:first]
            self._data[: n - first] = block[first:]
            self.written_samples += n
            oldest_kept = self.written_samples - self.capacity_samples
            if oldest_kept > self.read_samples:
                self.overrun_samples += oldest_kept - self.read_samples
                self.overrun_events += 1
                self.read_samples = oldest_kept
            self._readable.notify_all()

    def available(self) -> int:
        with self._lock:
            return self.written_samples - self.read_samples

    def wait(self, min_samples: int, timeout_s: float) -> bool:
        """Block the reader until ``min_samples`` unread samples exist or the timeout passes."""
        with self._readable:
            return self._readable.wait_for(lambda: self.written_samples - self.read_samples >= min_samples, timeout_s)

    def peek(self, start_sample: int, n_samples: int) -> np.ndarray:
        """Copy of samples ``[start_sample, start_sample + n_samples)``, which must still be held."""
        with self._lock:
            oldest = max(0, self.written_samples - self.capacity_samples)
            if start_sample < oldest or start_sample + n_samples > self.written_samples:
                raise IndexError(
                    f"samples [{start_sample}, {start_sample + n_samples}) not held; buffer holds "
                    f"[{oldest}, {self.written_samples})"
                )
            return self._copy(start_sample, n_samples)

    def consume(self, upto_sample: int) -> None:
        """Tell the writer that samples before ``upto_sample`` may be overwritten."""
        with self._lock:
            self.read_samples = max(self.read_samples, min(upto_sample, self.written_samples))

    def read_new(self) -> tuple[int, np.ndarray]:
        """Take every unread sample: ``(absolute start index, samples)``."""
        with self._lock:
            start = self.read_samples
            out = self._copy(start, self.written_samples - start)
            self.read_samples = self.written_samples
            return start, out

    def _copy(self, start_sample: int, n_samples: int) -> np.ndarray:
        out = np.empty(n_samples, dtype=np.float32)
        start = start_sample % self.capacity_samples
        first = min(n_samples, self.capacity_samples - start)
        out[:first] = self._data[start : start + first]
        out[first:] = self._data[: n_samples - first]
        return out
