"""What the detector and the batching engine write to, as interfaces of the pipeline's own.

The pipeline never imports a sink, the metrics or the embedding log: the daemon hands it objects that have these
methods (``SinkSet``, ``Metrics``, ``EmbeddingLogWriter``), so data flows one way, sources -> pipeline -> sinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamdetect.pipeline.events import Catalog, EventRecord, LabelScore


class Outputs(Protocol):
    """Where records go (the sinks), and the audio for the sinks that keep it (clips)."""

    @property
    def wants_audio(self) -> bool: ...

    def emit(self, record: EventRecord) -> None: ...

    def audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int) -> None: ...

    def stream_ended(self, stream: str) -> None: ...

    def catalog_changed(self, catalog: Catalog) -> None: ...

    def window_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:
        """With the privacy filter on: samples ``start_sample``..``end_sample`` of the stream were judged, and
        hold speech if ``private`` (the sinks that keep audio must not keep them)."""


class DetectorObserver(Protocol):
    """Counts what the detector did (Prometheus metrics in the daemon)."""

    def window_scored(self, stream: str, labels: tuple[str, ...], scores: np.ndarray, gated: bool) -> None: ...

    def windows_dropped(self, stream: str, count: int) -> None: ...

    def record_emitted(self, record: EventRecord) -> None: ...

    def catalog_changed(self, catalog: Catalog) -> None: ...

    def windows_private(self, stream: str, count: int) -> None: ...

    def windows_scheduled_out(self, stream: str, count: int) -> None: ...


class EngineObserver(Protocol):
    """Counts what the batching engine did: audio heard per stream, backlog, latency."""

    def expect(self, stream: str, live: bool) -> None: ...

    def heard(self, stream: str, live: bool) -> None: ...

    def forget(self, stream: str) -> None: ...

    def backlog_changed(self, windows: int) -> None: ...

    def window_latency(self, seconds: float) -> None: ...

    def windows_dropped(self, stream: str, count: int) -> None: ...


class EmbeddingObserver(Protocol):
    """Keeps each analysed window's embedding (the embedding log, for text search over past audio)."""

    def add(self, stream: str, start_s: float, end_s: float, wall_time: str, embedding: np.ndarray) -> None: ...


@dataclass(frozen=True)
class WindowView:
    """One analysed window as a live view shows it: every label's score with its threshold, what it sounds like.

    ``private`` marks a window whose audio must not be shown or kept (a privacy filter sets it); a live view
    then shows its scores but blanks its audio.
    """

    stream: str
    start_s: float
    end_s: float
    wall_time: str
    labels: tuple[str, ...]
    scores: np.ndarray  # (labels,) this window's score per label
    thresholds: tuple[float, ...]
    top: tuple[LabelScore, ...]
    sounds_like: tuple[LabelScore, ...]
    gated: bool
    embedding: np.ndarray | None  # None for gated windows
    private: bool = False


class LiveObserver(Protocol):
    """Sees the incoming audio and every window's scores as they happen (the web dashboard's live view).

    Every method is called on the detection path (the feeding threads and the inference thread), so they must
    only copy what they need and return.
    """

    def live_audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int,
                   held: bool = False) -> None:
        """Incoming audio; ``held``: the privacy filter is on, so none of it may be shown or played before
        ``live_privacy`` has judged it."""

    def live_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:
        """With the privacy filter on: the window over samples ``start_sample``..``end_sample`` was judged, and
        holds speech if ``private`` (its audio must then be blanked)."""

    def live_window(self, view: WindowView) -> None: ...
