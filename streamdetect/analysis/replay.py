"""Sources and files run through a detector in the calling thread: the base of scan, evaluate and calibrate.

The daemon runs sources through the batching engine instead; replay keeps every window's scores, which the
offline tools need and a long-running daemon must not hoard. Both hand audio to the detector through its one
entry, ``Detector.feed``, and show it to the audio tap first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.events import EventRecord
from streamdetect.pipeline.results import ScoreLog
from streamdetect.pipeline.streams import RunSummary, StreamSettings, StreamState, summarize
from streamdetect.pipeline.tap import AudioTap
from streamdetect.pipeline.windows import Window
from streamdetect.sources.base import AudioSource, Gap
from streamdetect.sources.file import read_blocks


class Replay:
    """One stream driven through the detector in this thread: live streams are analysed block by block, files in
    batches of ``runtime.batch_size``. ``tap`` (default: the detector's outputs alone) sees the audio first and
    the privacy verdicts after; it listens to the detector until ``finish``."""

    def __init__(self, detector: Detector, stream: StreamState, tap: AudioTap | None = None):
        self.detector, self.stream = detector, stream
        self.tap = tap if tap is not None else AudioTap(detector.sinks)
        self._pending: list[Window] = []
        detector.listeners.append(self.tap)

    def push(self, block: np.ndarray | Gap) -> list[EventRecord]:
        if not isinstance(block, Gap):
            self.tap.block(self.stream, block, held=self.detector.filters_privacy)
        self._pending += self.detector.feed(self.stream, block)
        if self.stream.live or len(self._pending) >= self.detector.config.runtime.batch_size:
            return self._flush()
        return []

    def finish(self) -> list[EventRecord]:
        """End of stream (or shutdown): analyse what is owed, then close active events."""
        try:
            self._pending += self.detector.feed(self.stream, None)
            records = self._flush()
            return records + self.detector.end_stream(self.stream)
        finally:
            self.detector.listeners.remove(self.tap)

    def run(self, blocks: Iterable[np.ndarray | Gap]) -> list[EventRecord]:
        """Every block, then ``finish`` (also when the blocks raise)."""
        records: list[EventRecord] = []
        try:
            for block in blocks:
                records += self.push(block)
        finally:
            records += self.finish()
        return records

    def _flush(self) -> list[EventRecord]:
        items = [(self.stream, window) for window in self._pending]
        self._pending = []
        return self.detector.analyse(items)


def analyse_file(detector: Detector, path: Path, on_block: Callable[[np.ndarray], None] | None = None,
                 ) -> tuple[StreamState, list[EventRecord]]:
    """Run a file through the detector in this thread, logging every window's scores (``stream.score_log``)."""
    stream = detector.open_stream(Path(path).name, live=False)
    stream.score_log = ScoreLog(stream.name)
    detector.listeners.append(stream.score_log)

    def blocks() -> Iterable[np.ndarray]:
        for block in read_blocks(path, detector.bundle.sample_rate):
            yield block
            if on_block is not None:
                on_block(block)

    try:
        return stream, Replay(detector, stream).run(blocks())
    finally:
        detector.listeners.remove(stream.score_log)


@dataclass
class FileScores:
    """A file run through the detector: every window's scores and the events it reported."""

    duration_s: float
    starts_s: np.ndarray  # (windows,)
    ends_s: np.ndarray
    scores: np.ndarray  # (windows, events)
    vetoed: np.ndarray  # (windows, events) bool: a negative prompt outscored the event
    events: list[tuple[float, float, str]]  # (start_s, end_s, label) of each detected event


def score_file(detector: Detector, path: Path) -> FileScores:
    stream, records = analyse_file(detector, path)
    assert stream.score_log is not None
    starts, ends, scores, vetoed = stream.score_log.arrays(len(detector.bank.labels))
    # Novelty records have no column of scores and no reference labels: evaluate and calibrate leave them out.
    events = [(r.start_s, r.end_s, r.label) for r in records
              if r.phase == "end" and r.end_s is not None and r.label in detector.bank.labels]
    return FileScores(stream.seconds, starts, ends, scores, vetoed, events)


def run_source(detector: Detector, source: AudioSource, stop: threading.Event,
               settings: StreamSettings | None = None, tap: AudioTap | None = None) -> RunSummary:
    """Drive one source through the detector in this thread until it ends or ``stop`` is set."""
    settings = settings or StreamSettings()
    stream = detector.open_stream(source.name, source.live, settings.gate, settings.labels, settings.schedule)
    t0 = time.perf_counter()
    Replay(detector, stream, tap).run(source.blocks(stop))
    return summarize(stream, source, detector.bundle.sample_rate, time.perf_counter() - t0)
