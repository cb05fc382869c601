"""Audio the dashboard may show or play: held until the privacy filter has judged it, private stretches blanked,
and the last seconds kept as PCM16 for listeners.

With the privacy filter on, the detector hands audio over before its windows are scored. A sample may leave the
process only once every window covering it has been judged: windows come in order, so that is every sample
before the start of the newest judged window plus one hop (the smallest step seen between judged windows). Audio
that is never judged (the filter switched off by a reload, more held than ``max_held_s``) is blanked, never
shown. Private stretches are zeros in the spectrogram and in what listeners hear; the rest plays as heard.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

Block = tuple[int, np.ndarray]  # (absolute start sample, float32 samples)


@dataclass
class AudioGate:
    """Per stream: audio waiting for judgement, and the private stretches it will be blanked in."""

    max_held_s: float = 30.0
    held: deque = field(default_factory=deque)  # Blocks not yet judged
    held_samples: int = 0
    private: deque = field(default_factory=lambda: deque(maxlen=1024))  # (start, end) judged private
    released: int = 0  # every sample before this has been judged
    last_start: int | None = None
    hop: int | None = None  # smallest step between judged windows

    def push(self, start: int, block: np.ndarray, held: bool, sample_rate: int) -> list[Block]:
        """Audio in; what may be shown now out (in order)."""
        if not held:  # the filter is off: what was held is never judged, so it is blanked
            out = [(s, np.zeros_like(b)) for s, b in self.held] + [(start, block)]
            self.held.clear()
            self.held_samples = 0
            return out
        self.held.append((start, block))
        self.held_samples += block.size
        out = []
        while self.held and self.held_samples > self.max_held_s * sample_rate:
            s, b = self.held.popleft()
            self.held_samples -= b.size
            out.append((s, np.zeros_like(b)))
        return out + self._release()

    def judged(self, start: int, end: int, private: bool) -> list[Block]:
        if private:
            if self.private and start <= self.private[-1][1]:  # overlapping windows: one stretch
                start = min(start, self.private[-1][0])
                end = max(end, self.private.pop()[1])
            self.private.append((start, end))
        if self.last_start is not None and start > self.last_start:
            self.hop = min(self.hop or start - self.last_start, start - self.last_start)
        self.last_start = start if self.last_start is None else max(self.last_start, start)
        self.released = max(self.released, min(end, start + (self.hop or 0)))
        return self._release()

    def _release(self) -> list[Block]:
        out = []
        while self.held and self.held[0][0] < self.released:
            s, b = self.held.popleft()
            self.held_samples -= b.size
            cut = self.released - s
            if cut < b.size:  # part of the block is not judged yet
                self.held.appendleft((self.released, b[cut:]))
                self.held_samples += b.size - cut
                b = b[:cut]
            out.append((s, self._blank(s, b)))
        return out

    def _blank(self, start: int, block: np.ndarray) -> np.ndarray:
        spans = [(a, b) for a, b in self.private if a < start + block.size and b > start]
        if not spans:
            return block
        block = block.copy()
        for a, b in spans:
            block[max(a - start, 0) : b - start] = 0.0
        return block


@dataclass
class ListenRing:
    """The last ``keep_s`` of shown audio of one stream as PCM16, addressed by absolute sample index."""

    keep_s: float = 10.0
    chunks: deque = field(default_factory=deque)  # (start, int16 samples)
    samples: int = 0

    def add(self, start: int, block: np.ndarray, sample_rate: int) -> None:
        self.chunks.append((start, np.clip(np.rint(block * 32767.0), -32768, 32767).astype(np.int16)))
        self.samples += block.size
        while self.chunks and self.samples - self.chunks[0][1].size >= self.keep_s * sample_rate:
            self.samples -= self.chunks.popleft()[1].size

    def since(self, after: int | None, lead: int) -> tuple[int, np.ndarray]:
        """``(next position, samples)`` of what came after ``after``; a new listener (``None``, or one that
        fell behind the ring) starts ``lead`` samples before the newest."""
        if not self.chunks:
            return (after or 0), np.zeros(0, np.int16)
        end = self.chunks[-1][0] + self.chunks[-1][1].size
        oldest = self.chunks[0][0]
        if after is None or after < oldest:
            after = max(oldest, end - lead)
        parts = [c[max(after - s, 0):] for s, c in self.chunks if s + c.size > after]
        return end, (np.concatenate(parts) if parts else np.zeros(0, np.int16))


@dataclass
class Pacer:
    """At most real time for one listener, whatever pace the stream is analysed at: a token bucket of
    ``burst_s`` seconds of samples, filled at ``sample_rate``. A file analysed faster than real time is heard in
    its newest stretches (the older ones are skipped), so a listener's bandwidth stays bounded."""

    sample_rate: int
    burst_s: float = 1.0
    tokens: float = 0.0
    last: float | None = None

    def take(self, samples: np.ndarray, now: float) -> np.ndarray:
        if self.last is None:
            self.tokens = self.burst_s * self.sample_rate
        else:
            self.tokens = min(self.burst_s * self.sample_rate, self.tokens + (now - self.last) * self.sample_rate)
        self.last = now
        if samples.size > self.tokens:
            samples = samples[samples.size - int(self.tokens):]
        self.tokens -= samples.size
        return samples
