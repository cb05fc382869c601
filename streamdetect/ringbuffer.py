"""Preallocated audio ring buffer and the window cutter that reads it.

Positions are absolute sample counts since the stream started (Python ints, so they never wrap), which makes a
window's start time exact: ``start_sample / sample_rate``, however the audio arrived in blocks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Window:
    """One analysis window; ``n_samples`` is below the window length only for the tail of a finite stream."""

    index: int
    start_sample: int
    samples: np.ndarray
    sample_rate: int

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def end_s(self) -> float:
        return (self.start_sample + self.n_samples) / self.sample_rate


class Windower:
    """Cuts ``window_s`` windows every ``hop_s`` out of a stream of blocks, with exact sample accounting."""

    def __init__(self, window_s: float, hop_s: float, sample_rate: int):
        self.sample_rate = sample_rate
        self.window_samples = int(round(window_s * sample_rate))
        self.hop_samples = int(round(hop_s * sample_rate))
        if self.window_samples <= 0 or self.hop_samples <= 0:
            raise ValueError(f"window ({window_s} s) and hop ({hop_s} s) must both be positive")
        capacity = self.window_samples + max(self.hop_samples, sample_rate)
        self.ring = RingBuffer(capacity)
        self.reset()

    def reset(self) -> None:
        self.ring = RingBuffer(self.ring.capacity_samples)
        self.next_index = 0
        self.next_start_sample = 0
        self.dropped_windows = 0
        self.nonfinite_samples = 0  # NaN/Inf in the input, replaced by 0 so they cannot poison a window's scores
        self._gap_end_sample = 0  # windows starting before this overlap lost audio and are not analysed

    @property
    def total_samples(self) -> int:
        return self.ring.written_samples

    def push(self, block: np.ndarray) -> Iterator[Window]:
        """Add a block and yield every window it completes.

        Blocks larger than the ring are split so that no sample is lost between two windows.
        """
        block = self._finite(np.asarray(block, dtype=np.float32).reshape(-1))
        step = self.ring.capacity_samples - self.window_samples
        for offset in range(0, block.shape[0], step):
            self.ring.write(block[offset : offset + step])
            yield from self._ready()

    def _finite(self, block: np.ndarray) -> np.ndarray:
        """One NaN would turn a whole window's log-mel, embedding and every score into NaN, and NaN compares
        false with any threshold: events would silently never fire. Such samples become silence and are
        counted (logged the first time)."""
        bad = ~np.isfinite(block)
        if not bad.any():
            return block
        n = int(bad.sum())
        if not self.nonfinite_samples:
            log.warning("%d non-finite audio sample(s) (NaN/Inf) at sample %d replaced by silence; later ones are "
                        "counted in the run summary", n, self.ring.written_samples + int(np.argmax(bad)))
        self.nonfinite_samples += n
        return np.where(bad, np.float32(0.0), block)

    def skip(self, n_samples: int) -> None:
        """Account for ``n_samples`` of lost audio: time moves on, windows overlapping the gap are dropped."""
        if n_samples <= 0:
            return
        self._gap_end_sample = self.ring.written_samples + n_samples
        zeros = np.zeros(min(n_samples, self.ring.capacity_samples), dtype=np.float32)
        while n_samples > 0:
            for _ in self.push(zeros[:n_samples]):
                pass  # _ready() drops every window that touches the gap and counts it in dropped_windows
            n_samples -= zeros.shape[0]

    def finish(self) -> Iterator[Window]:
        """Yield the windows a finite stream still owes: a short recording once, and an uncovered tail."""
        total = self.total_samples
        if total == 0:
            return
        last_end = (self.next_start_sample - self.hop_samples + self.window_samples) if self.next_index else 0
        start = self.next_start_sample if self.next_index else 0
        if (self.next_index == 0 or last_end < total) and start < total:
            yield self._cut(start, total - start)

    def _ready(self) -> Iterator[Window]:
        while self.next_start_sample + self.window_samples <= self.ring.written_samples:
            window = self._cut(self.next_start_sample, self.window_samples)
            if window.start_sample < self._gap_end_sample:
                self.dropped_windows += 1
                continue
            yield window

    def _cut(self, start_sample: int, n_samples: int) -> Window:
        window = Window(self.next_index, start_sample, self.ring.peek(start_sample, n_samples), self.sample_rate)
        self.next_index += 1
        self.next_start_sample = start_sample + self.hop_samples
        self.ring.consume(self.next_start_sample)
        return window
