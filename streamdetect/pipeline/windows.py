"""The window cutter: a stream's audio in, 3 s windows every 1 s out (by default), in a ring buffer.

Positions are absolute sample counts since the stream started (Python ints, so they never wrap), which makes a
window's start time exact: ``start_sample / sample_rate``, however the audio arrived in blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streamdetect.sources.ringbuffer import RingBuffer

log = logging.getLogger(__name__)


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
