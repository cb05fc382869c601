"""What the detector and the batching engine write to, as interfaces of the pipeline's own.

The pipeline never imports a sink, the metrics or the embedding log: the daemon hands it objects that have these
methods (``SinkSet``, ``Metrics``, ``EmbeddingLogWriter``), so data flows one way, sources -> pipeline -> sinks.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamdetect.pipeline.events import EventRecord


class Outputs(Protocol):
    """Where records go (the sinks), and the audio for the sinks that keep it (clips)."""

    @property
    def wants_audio(self) -> bool: ...

    def emit(self, record: EventRecord) -> None: ...

    def audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int) -> None: ...

    def stream_ended(self, stream: str) -> None: ...


class DetectorObserver(Protocol):
    """Counts what the detector did (Prometheus metrics in the daemon)."""

    def window_scored(self, stream: str, labels: tuple[str, ...], scores: np.ndarray, gated: bool) -> None: ...

    def windows_dropped(self, stream: str, count: int) -> None: ...

    def record_emitted(self, record: EventRecord) -> None: ...


class EngineObserver(Protocol):
    """Counts what the batching engine did: audio heard per stream, backlog, latency."""

    def heard(self, stream: str, live: bool) -> None: ...

    def forget(self, stream: str) -> None: ...

    def backlog_changed(self, windows: int) -> None: ...

    def windows_dropped(self, stream: str, count: int) -> None: ...

    def window_latency(self, seconds: float) -> None: ...


class EmbeddingObserver(Protocol):
    """Keeps each analysed window's embedding (the embedding log, for text search over past audio)."""

    def add(self, stream: str, start_s: float, end_s: float, wall_time: str, embedding: np.ndarray) -> None: ...
