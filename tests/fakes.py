"""Stand-ins the tests share for what a station is connected to: a live audio source.

One class covers what five hand-made sources did (an array delivered as fast as it is read, paced noise or
silence until stopped, audio the test hands in as it goes), so each test says only what it needs.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from streamdetect.sources.base import AudioSource

SAMPLE_RATE = 48_000


class LiveSource(AudioSource):
    """A live source (``live = True``: the engine treats it as a microphone or a camera).

    - ``audio`` given: that array in blocks of ``block_s``, then the source ends.
    - no ``audio``: blocks of ``level`` plus noise of RMS ``noise`` (seeded), until stopped or until ``max_s``
      seconds of audio were delivered (``None``: no bound), so that a test that forgets to stop it still ends.
    - ``hand_fed``: only what the test hands in with ``feed(seconds)`` (made as above), until ``end()``.
    ``pace_s`` is the wall time waited before each block (0: as fast as the reader asks). The wait is on the stop
    event, so a stop is prompt whatever the pace.
    """

    live = True

    def __init__(self, audio: np.ndarray | None = None, name: str = "live", *, block_s: float = 0.5,
                 pace_s: float = 0.0, level: float = 0.0, noise: float = 0.0, max_s: float | None = 600.0,
                 hand_fed: bool = False, sample_rate: int = SAMPLE_RATE, seed: int = 0):
        super().__init__(AudioSource.Options(), sample_rate, name)
        self.audio, self.pace_s, self.level, self.noise, self.max_s = audio, pace_s, level, noise, max_s
        self.block = int(round(block_s * sample_rate))
        self.rng = np.random.default_rng(seed)
        self.hand_fed = hand_fed
        self.fed_s = 0.0  # what feed() handed in, in whole blocks
        self._fed: queue.Queue[np.ndarray | None] = queue.Queue()

    def make(self, n: int) -> np.ndarray:
        """``n`` samples of ``level`` plus the seeded noise."""
        block = np.full(n, self.level, np.float64)
        if self.noise:
            block += self.noise * self.rng.standard_normal(n)
        return block.astype(np.float32)

    def feed(self, seconds: float) -> None:
        """Hand in ``seconds`` of audio (whole blocks) for a ``hand_fed`` source."""
        count = int(seconds * self.sample_rate) // self.block
        self.fed_s += count * self.block / self.sample_rate
        for _ in range(count):
            self._fed.put(self.make(self.block))

    def end(self) -> None:
        """A ``hand_fed`` source ends after what was fed so far."""
        self._fed.put(None)

    def _next(self, stop: threading.Event, delivered: int) -> np.ndarray | None:
        if self.hand_fed:
            while not stop.is_set():
                try:
                    return self._fed.get(timeout=0.1)
                except queue.Empty:
                    continue
            return None
        if self.audio is not None:
            return self.audio[delivered : delivered + self.block] if delivered < self.audio.size else None
        if self.max_s is not None and delivered >= self.max_s * self.sample_rate:
            return None
        return self.make(self.block)

    def blocks(self, stop: threading.Event):
        delivered = 0
        while not stop.is_set():
            if self.pace_s and stop.wait(self.pace_s):
                return
            block = self._next(stop, delivered)
            if block is None:
                return
            delivered += block.size
            yield block
