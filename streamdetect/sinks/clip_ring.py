"""The clips sink's memory of each stream: recent audio as PCM16 in a preallocated ring, addressed by absolute
sample index, with the stretches that were lost and (with the privacy filter on) those that held speech.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass
class StreamAudio:
    """The recent audio of one stream as PCM16 in a preallocated ring, addressed by absolute sample index."""

    capacity: int
    sample_rate: int
    origin: datetime  # UTC wall time of sample 0, for clip names
    data: np.ndarray = field(init=False)
    written: int = 0  # absolute index one past the newest sample held
    ended: bool = False
    feeder: int | None = None  # thread that feeds this stream: it must never wait for its own audio
    gaps: deque = field(default_factory=lambda: deque(maxlen=256))  # (start, end) of lost audio
    judged: int | None = None  # privacy filter on: end of the stretch judged so far (None: filter off)
    private: deque = field(default_factory=lambda: deque(maxlen=4096))  # (start, end) holding speech

    def __post_init__(self) -> None:
        self.data = np.zeros(self.capacity, dtype=np.int16)

    @property
    def oldest(self) -> int:
        return max(0, self.written - self.capacity)

    def write(self, start_sample: int, block: np.ndarray) -> None:
        if start_sample > self.written:  # lost audio: time moved on, keep silence there
            self.gaps.append((self.written, start_sample))
            n = min(start_sample - self.written, self.capacity)
            self._put(start_sample - n, np.zeros(n, dtype=np.int16))
            self.written = start_sample
        pcm = np.clip(np.rint(block * 32768.0), -32768, 32767).astype(np.int16)
        if pcm.shape[0] > self.capacity:
            pcm = pcm[-self.capacity:]
            start_sample += block.shape[0] - self.capacity
        self._put(start_sample, pcm)
        self.written = start_sample + pcm.shape[0]

    def _put(self, start: int, pcm: np.ndarray) -> None:
        at = start % self.capacity
        first = min(pcm.shape[0], self.capacity - at)
        self.data[at : at + first] = pcm[:first]
        self.data[: pcm.shape[0] - first] = pcm[first:]

    def read(self, start: int, end: int) -> np.ndarray:
        out = np.empty(end - start, dtype=np.int16)
        at = start % self.capacity
        first = min(end - start, self.capacity - at)
        out[:first] = self.data[at : at + first]
        out[first:] = self.data[: end - start - first]
        return out

    def mark(self, start: int, end: int, private: bool) -> None:
        self.judged = max(self.judged or 0, end)
        if not private:
            return
        if self.private and start <= self.private[-1][1]:  # overlapping windows: one stretch
            start = min(start, self.private[-1][0])
            self.private.pop()
        self.private.append((start, end))

    def private_in(self, start: int, end: int) -> list[tuple[int, int]]:
        """The private stretches within ``start``..``end``; audio not judged yet counts as private."""
        if self.judged is None:
            return []
        spans = [(max(a, start), min(b, end)) for a, b in self.private if a < end and b > start]
        return spans + ([(max(self.judged, start), end)] if self.judged < end else [])

    def lost_seconds(self, start: int, end: int) -> float:
        lost = sum(max(0, min(end, b) - max(start, a)) for a, b in self.gaps)
        return lost / self.sample_rate
