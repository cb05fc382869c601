"""What the live view shows, kept as the detector works: the audio tap's ``LiveAudio`` and a window listener.

The feeding threads hand over audio (turned into spectrogram columns here, a few FFTs per second), the inference
thread hands over each window's scores; both only append to bounded deques under one lock. The live view's
event stream reads deltas by a sequence number, so a slow or vanished browser never holds the detector back.
Embeddings of the last ``history_s`` are kept too, for the prompt playground's "within a second" curve (the
embedding log on disk is written once a minute).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from streamdetect.pipeline.results import WindowResult
from streamdetect.util.stft import Stft
from streamdetect.web.listen import AudioGate, ListenRing
from streamdetect.web.spectro import SpectrogramParams, encode, hop_samples, quantise, stft

MAX_PUSH_S = 2.0
LISTEN_KEEP_S = 10.0  # shown audio kept per stream for listeners (PCM16 at the model rate: ~1 MB at 48 kHz)
# Live views and listeners one session may hold at once: two tabs, each a view and a listener. One viewer could
# take every ``web.max_live_clients`` slot (and hold them while connected), so nobody else saw anything.
LIVE_PER_SESSION = 4


class Slot(Enum):
    """What ``LiveHub.subscribe`` answered: a slot taken (true), or why none was."""

    TAKEN = "taken"
    ALL_TAKEN = "all taken"  # web.max_live_clients are open
    SESSION_FULL = "session full"  # this session holds max_per_session already

    def __bool__(self) -> bool:
        return self is Slot.TAKEN


def _newer(items: deque[tuple[Any, ...]], after: int, most: int) -> list[tuple[Any, ...]]:
    """The newest ``most`` entries with a sequence number above ``after``, read from the right end (a push is
    called often and wants few of the thousands held)."""
    out: list[tuple[Any, ...]] = []
    for item in reversed(items):
        if item[0] <= after or len(out) >= most:
            break
        out.append(item)
    out.reverse()
    return out


@dataclass
class _Stream:
    name: str
    history: int  # columns and windows kept
    sample_rate: int = 0
    heard_at: float = 0.0  # monotonic time of the last audio
    windows_seen: int = 0
    stft: Stft | None = None  # made at the first shown audio, when the sample rate is known; keeps the carry
    cols: deque = field(default_factory=deque)  # (seq, wall epoch of the column, bytes)
    windows: deque = field(default_factory=deque)  # (seq, dict)
    embeddings: deque = field(default_factory=deque)  # (wall epoch, start_s, end_s, float16 vector)
    latest: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # last change
    gate: AudioGate = field(default_factory=AudioGate)
    ring: ListenRing = field(default_factory=lambda: ListenRing(LISTEN_KEEP_S))


class LiveHub:
    """Per-stream live state; ``delta(stream, after)`` is what one live view needs since its last message."""

    def __init__(self, history_s: float = 300.0, stale_after_s: float = 10.0,
                 params: SpectrogramParams | None = None, max_clients: int = 32,
                 max_per_session: int = LIVE_PER_SESSION):
        self.history_s, self.stale_after_s = history_s, stale_after_s
        self.params = params or SpectrogramParams()
        self.max_clients, self.max_per_session = max_clients, max_per_session
        self.subscribers = 0
        self._held: dict[str, int] = {}  # session -> slots it holds (only sessions holding some)
        self.sent_bytes = 0
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._seq = 0
        self.closed = threading.Event()

    def _stream(self, name: str) -> _Stream:
        found = self._streams.get(name)
        if found is None:
            found = self._streams[name] = _Stream(name, int(self.history_s * self.params.columns_per_s))
        return found

    # -- detection side (LiveAudio, WindowListener) ----------------------------------------------------------

    def live_audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int,
                   held: bool = False) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        with self._lock:
            s = self._stream(stream)
            s.heard_at, s.sample_rate = time.monotonic(), sample_rate
            self._show(s, s.gate.push(start_sample, block, held, sample_rate))

    def live_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:
        with self._lock:
            s = self._stream(stream)
            if s.sample_rate:
                self._show(s, s.gate.judged(start_sample, end_sample, private))

    def _show(self, s: _Stream, blocks: list[tuple[int, np.ndarray]]) -> None:
        """Audio that may be shown: into the listeners' ring and the spectrogram columns."""
        if s.stft is None or s.stft.hop != hop_samples(self.params, s.sample_rate):  # first audio, or a new rate
            s.stft = stft(self.params, s.sample_rate)
        hop = s.stft.hop
        for start, block in blocks:
            s.ring.add(start, block, s.sample_rate)
            cols = quantise(s.stft.push(block), self.params.n_bins)
            now = time.time()
            for i, col in enumerate(cols):
                self._seq += 1
                s.cols.append((self._seq, now - (cols.shape[0] - 1 - i) * hop / s.sample_rate, col.tobytes()))
            while len(s.cols) > s.history:
                s.cols.popleft()
            if cols.shape[0]:
                s.seq = self._seq

    def window(self, view: WindowResult) -> None:
        if view.scheduled_out:  # never scored: nothing to show (its privacy mark comes through the tap)
            return
        wall = view.wall
        scores = {label: round(float(v), 4) for label, v in zip(view.labels, view.scores, strict=True)}
        entry = {"t": round(wall, 3), "scores": scores, "gated": view.gated}
        with self._lock:
            s = self._stream(view.stream)
            self._seq += 1
            s.seq = self._seq
            s.windows_seen += 1
            s.windows.append((self._seq, entry))
            while s.windows and s.windows[0][1]["t"] < wall - self.history_s:
                s.windows.popleft()
            if view.embedding is not None and not view.private:
                s.embeddings.append((wall, view.start_s, view.end_s, np.asarray(view.embedding, np.float16)))
                while s.embeddings and s.embeddings[0][0] < wall - self.history_s:
                    s.embeddings.popleft()
            s.latest = {"t": entry["t"], "scores": scores,
                        "thresholds": dict(zip(view.labels, view.thresholds, strict=True)),
                        "top": [[t.label, t.score] for t in view.top],
                        "sounds_like": [[t.label, t.score] for t in view.sounds_like], "gated": view.gated}

    # -- web side ---------------------------------------------------------------------------------------------

    def streams(self) -> list[str]:
        with self._lock:
            return sorted(self._streams)

    def delta(self, selected: str | None, after: int) -> dict[str, Any]:
        """Summaries of the streams that changed since ``after`` (all of them when ``after`` is 0), and the new
        spectrogram columns and window scores of the ``selected`` stream."""
        now = time.monotonic()
        with self._lock:
            out: dict[str, Any] = {"seq": self._seq, "streams": [], "selected": selected,
                                   "stale_after_s": self.stale_after_s}
            for s in self._streams.values():
                if s.seq > after or after == 0:
                    age = now - s.heard_at if s.heard_at else None
                    out["streams"].append({"name": s.name, "age_s": None if age is None else round(age, 2),
                                           "stale": age is None or age > self.stale_after_s,
                                           "windows": s.windows_seen, **s.latest})
            chosen = self._streams.get(selected) if selected is not None else None
            if chosen is not None:
                # a file analysed faster than real time would send seconds of columns per push; the view
                # shows the newest ones, so a push carries at most MAX_PUSH_S of them
                cols = _newer(chosen.cols, after, int(MAX_PUSH_S * self.params.columns_per_s))
                if cols:
                    out["spectrogram"] = {"columns": encode(np.frombuffer(b"".join(c[2] for c in cols), np.uint8)),
                                          "frames": len(cols), "bins": self.params.n_bins,
                                          "t_end": round(cols[-1][1], 3), "columns_per_s": self.params.columns_per_s,
                                          "max_hz": chosen.sample_rate / 2}
                out["windows"] = [w for _, w in _newer(chosen.windows, after, len(chosen.windows))]
        return out

    def listen(self, stream: str, after: int | None, lead_s: float = 1.0) -> tuple[int, int, np.ndarray]:
        """``(next position, sample rate, PCM16 samples)`` of the shown audio of ``stream`` after ``after``."""
        with self._lock:
            s = self._streams.get(stream)
            if s is None or not s.sample_rate:
                raise LookupError(f"no audio from a stream called {stream!r} yet")
            end, samples = s.ring.since(after, int(lead_s * s.sample_rate))
            return end, s.sample_rate, samples

    def stale(self) -> dict[str, bool]:
        now = time.monotonic()
        with self._lock:
            return {s.name: not s.heard_at or now - s.heard_at > self.stale_after_s for s in self._streams.values()}

    def recent_embeddings(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(stream per window, wall epochs, stream start s, end s, embeddings) of the last ``history_s``."""
        with self._lock:
            rows = [(s.name, *e) for s in self._streams.values() for e in s.embeddings]
        if not rows:
            return [], np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0), np.float16)
        return ([r[0] for r in rows], np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                np.array([r[3] for r in rows]), np.stack([r[4] for r in rows]))

    def subscribe(self, session: str | None = None) -> Slot:
        """Take a slot for a live view or listener of ``session`` (None: not limited per session, as the one
        local user on loopback, who has nobody to crowd out)."""
        with self._lock:
            if self.subscribers >= self.max_clients:
                return Slot.ALL_TAKEN
            if session is not None:
                if self._held.get(session, 0) >= self.max_per_session:
                    return Slot.SESSION_FULL
                self._held[session] = self._held.get(session, 0) + 1
            self.subscribers += 1
            return Slot.TAKEN

    def unsubscribe(self, sent_bytes: int, session: str | None = None) -> None:
        with self._lock:
            self.subscribers -= 1
            self.sent_bytes += sent_bytes
            if session is not None:
                left = self._held.pop(session, 0) - 1
                if left > 0:
                    self._held[session] = left

    def close(self) -> None:
        self.closed.set()
