"""Per-stream state the detector keeps: the window cutter, the trackers, counters, and a run's summary.

Everything a stream carries between two blocks of audio lives in its ``StreamState``, so two streams (or two
detectors) can run side by side in one process and one test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from streamdetect.config import GateConfig
from streamdetect.pipeline.events import EventTracker
from streamdetect.pipeline.novelty import NoveltyState
from streamdetect.pipeline.windows import Window, Windower
from streamdetect.schedule import Clock, Schedule, utc_now
from streamdetect.sources.base import AudioSource


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds")


@dataclass
class ScoreLog:
    """Every analysed window's scores, for the tools that look at raw scores (scan, evaluate, calibrate)."""

    starts_s: list[float] = field(default_factory=list)
    ends_s: list[float] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)  # one (events,) row per window
    vetoed: list[np.ndarray] = field(default_factory=list)  # one (events,) bool row: a negative won

    def arrays(self, n_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.scores:
            empty = np.zeros((0, n_events))
            return np.zeros(0), np.zeros(0), empty, empty.astype(bool)
        return (np.array(self.starts_s), np.array(self.ends_s), np.stack(self.scores), np.stack(self.vetoed))


@dataclass(frozen=True)
class StreamSettings:
    """One stream's detection settings from its config entry, kept beside the source rather than in it, so a
    source knows nothing of detection: its own energy gate (None: the config's top-level gate) and the labels
    of the events it listens for (None: all), and the periods it is recorded in (None: always)."""

    gate: GateConfig | None = None
    labels: tuple[str, ...] | None = None
    schedule: tuple[str, ...] | None = None


@dataclass
class StreamState:
    """Per-stream state: its window cutter, one tracker per label, counters."""

    name: str
    live: bool
    windower: Windower
    trackers: list[EventTracker]
    clock: Clock = utc_now  # the detector's clock: when a live stream started, when a file's window is analysed
    started_at: datetime | None = None  # None: now, by ``clock``
    pending: list[Window] = field(default_factory=list)
    windows_processed: int = 0
    records_emitted: int = 0
    gated_windows: int = 0  # analysed as silence by the energy gate, without the encoder
    dropped_windows: int = 0  # dropped unanalysed by the inference queue: over a bound, or left at stop
    gate: GateConfig | None = None  # this stream's own energy gate; None follows the config's top-level gate
    labels: frozenset[str] | None = None  # the events this stream listens for; None: all of them
    score_log: ScoreLog | None = None
    novelty: NoveltyState | None = None  # site profile and novelty tracker, when novelty is enabled
    schedule: Schedule | None = None  # when the stream is recorded; None: always
    private_windows: int = 0  # windows the privacy filter found speech in (their audio is not stored)
    scheduled_out_windows: int = 0  # windows outside every active period of the stream and its events

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def wall_datetime(self, stream_s: float) -> datetime:
        """Live streams: when that sample was heard. Files: when the result was computed."""
        if self.live:
            return self.started_at + timedelta(seconds=stream_s)
        return self.clock()

    def wall_time(self, stream_s: float) -> str:
        return _iso(self.wall_datetime(stream_s))


@dataclass
class RunSummary:
    stream: str
    audio_s: float
    windows: int
    records: int
    dropped_windows: int
    gated_windows: int
    wall_s: float
    source_stats: dict[str, int]
    private_windows: int = 0  # found to hold speech by the privacy filter
    scheduled_out_windows: int = 0  # not analysed: outside every active period


def summarize(stream: StreamState, source: AudioSource, sample_rate: int, wall_s: float) -> RunSummary:
    return RunSummary(
        stream=stream.name,
        audio_s=stream.windower.total_samples / sample_rate,
        windows=stream.windows_processed,
        records=stream.records_emitted,
        dropped_windows=stream.windower.dropped_windows + stream.dropped_windows,
        gated_windows=stream.gated_windows,
        wall_s=wall_s,
        private_windows=stream.private_windows,
        scheduled_out_windows=stream.scheduled_out_windows,
        source_stats={**source.stats(), **({"nonfinite_samples": stream.windower.nonfinite_samples}
                                           if stream.windower.nonfinite_samples else {})},
    )
