"""Per-stream state the detector keeps: the window cutter, the trackers, counters, and a run's summary.

Everything a stream carries between two blocks of audio lives in its ``StreamState``, so two streams (or two
detectors) can run side by side in one process and one test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from streamdetect.config import GateConfig
from streamdetect.pipeline.events import EventTracker
from streamdetect.pipeline.novelty import NoveltyState
from streamdetect.pipeline.results import ScoreLog
from streamdetect.pipeline.windows import Windower
from streamdetect.schedule import Clock, Schedule, utc_now
from streamdetect.sources.base import AudioSource


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
    windows_processed: int = 0
    records_emitted: int = 0
    gated_windows: int = 0  # analysed as silence by the energy gate, without the encoder
    dropped_windows: int = 0  # dropped unanalysed by the inference queue: over a bound, or left at stop
    gate: GateConfig | None = None  # this stream's own energy gate; None follows the config's top-level gate
    labels: frozenset[str] | None = None  # the events this stream listens for; None: all of them
    score_log: ScoreLog | None = None  # the listener replay keeps this stream's raw scores in (offline tools)
    novelty: NoveltyState | None = None  # site profile and novelty tracker, when novelty is enabled
    schedule: Schedule | None = None  # when the stream is recorded; None: always
    private_windows: int = 0  # windows the privacy filter found speech in (their audio is not stored)
    scheduled_out_windows: int = 0  # windows outside every active period of the stream and its events

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    @property
    def position(self) -> int:
        """Samples of the stream so far (lost audio included): where the next block starts."""
        return self.windower.total_samples

    @property
    def sample_rate(self) -> int:
        return self.windower.sample_rate

    @property
    def seconds(self) -> float:
        return self.windower.total_samples / self.windower.sample_rate

    def skip(self, n_samples: int) -> int:
        """Lost audio: stream time moves on; returns how many windows touching the gap go unanalysed."""
        before = self.windower.dropped_windows
        self.windower.skip(n_samples)
        return self.windower.dropped_windows - before

    def wall_datetime(self, stream_s: float) -> datetime:
        """Live streams: when that sample was heard. Files: when the result was computed."""
        if self.live:
            assert self.started_at is not None  # set by __post_init__
            return self.started_at + timedelta(seconds=stream_s)
        return self.clock()

    def wall(self, stream_s: float) -> float:
        """``wall_datetime`` as epoch seconds, the form times take inside the pipeline."""
        return self.wall_datetime(stream_s).timestamp()

    def recorded(self, start_sample: int) -> bool:
        """Whether audio from ``start_sample`` on lies in the stream's schedule (always, without one)."""
        return self.schedule is None or self.schedule.active(
            self.wall_datetime(start_sample / self.windower.sample_rate))


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
