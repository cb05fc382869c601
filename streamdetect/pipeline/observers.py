"""What the detector and the batching engine write to, as interfaces of the pipeline's own.

The pipeline never imports a sink or the metrics: the daemon hands it objects that have these methods
(``SinkSet``, ``Metrics``), so data flows one way, sources -> pipeline -> sinks. What each window was goes to
the ``WindowListener``s (``streamdetect.pipeline.results``); the audio itself goes through the ``AudioTap``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamdetect.pipeline.events import Catalog, EventRecord


class Outputs(Protocol):
    """Where records go (the sinks), and the audio for the sinks that keep it (clips, through the tap)."""

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
    """Counts what the detector did besides judging windows (Prometheus metrics in the daemon)."""

    def windows_dropped(self, stream: str, count: int) -> None: ...

    def record_emitted(self, record: EventRecord) -> None: ...

    def catalog_changed(self, catalog: Catalog) -> None: ...


class EngineObserver(Protocol):
    """Counts what the batching engine did: audio heard per stream, backlog, latency."""

    def expect(self, stream: str, live: bool) -> None: ...

    def heard(self, stream: str, live: bool) -> None: ...

    def forget(self, stream: str) -> None: ...

    def backlog_changed(self, windows: int) -> None: ...

    def window_latency(self, seconds: float) -> None: ...

    def windows_dropped(self, stream: str, count: int) -> None: ...
