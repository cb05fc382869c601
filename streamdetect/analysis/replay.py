"""Sources and files run through a detector in the calling thread: the base of scan, evaluate and calibrate.

The daemon runs sources through the batching engine instead; replay keeps every window's scores, which the
offline tools need and a long-running daemon must not hoard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.events import EventRecord
from streamdetect.pipeline.streams import RunSummary, ScoreLog, StreamSettings, StreamState, summarize
from streamdetect.sources.base import AudioSource
from streamdetect.sources.file import read_blocks


def analyse_file(detector: Detector, path: Path, on_block: Callable[[np.ndarray], None] | None = None,
                 ) -> tuple[StreamState, list[EventRecord]]:
    """Run a file through the detector in this thread, logging every window's scores."""
    stream = detector.open_stream(Path(path).name, live=False)
    stream.score_log = ScoreLog()
    records: list[EventRecord] = []
    for block in read_blocks(path, detector.bundle.sample_rate):
        records += detector.push(stream, block)
        if on_block is not None:
            on_block(block)
    records += detector.finish(stream)
    return stream, records


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
    starts, ends, scores, vetoed = stream.score_log.arrays(len(detector.bank.labels))
    # Novelty records have no column of scores and no reference labels: evaluate and calibrate leave them out.
    events = [(r.start_s, r.end_s, r.label) for r in records if r.phase == "end" and r.label in detector.bank.labels]
    return FileScores(stream.windower.total_samples / detector.bundle.sample_rate, starts, ends, scores, vetoed,
                      events)




def run_source(detector: Detector, source: AudioSource, stop: threading.Event,
               settings: StreamSettings | None = None) -> RunSummary:
    """Drive one source through the detector in this thread until it ends or ``stop`` is set."""
    settings = settings or StreamSettings()
    stream = detector.open_stream(source.name, source.live, settings.gate, settings.labels, settings.schedule)
    t0 = time.perf_counter()
    try:
        for block in source.blocks(stop):
            detector.push(stream, block)
    finally:
        detector.finish(stream)
    return summarize(stream, source, detector.bundle.sample_rate, time.perf_counter() - t0)
