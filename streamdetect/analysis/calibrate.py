"""Thresholds chosen from data: the lowest threshold per event that reaches a target precision (or stays under a
target number of false alarms per hour) on the user's own positive and negative recordings.

Every candidate threshold is tried by replaying the window scores through the real event state machine (with
the event's hysteresis, ``min_windows``, cooldown and negative prompts), so the counted detections are the ones
the detector would report: a positive clip counts as found if the event fires in it at least once; every start
on negative audio is a false alarm.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from streamdetect.analysis.replay import FileScores, score_file
from streamdetect.config import EventConfig
from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.events import EventTracker, WindowScore, event_rules
from streamdetect.sources.file import audio_files


@dataclass
class Calibration:
    label: str
    old_threshold: float
    threshold: float | None  # None: no threshold reaches the target
    precision: float
    recall: float
    false_alarms_per_hour: float
    positives: int
    negative_hours: float


def count_starts(ws: FileScores, column: int, event: EventConfig, threshold: float) -> int:
    """How many times the event would fire on these windows at ``threshold``."""
    tracker = EventTracker(event.label, replace(event_rules([event])[0], threshold=threshold))
    starts = 0
    for i in range(ws.scores.shape[0]):
        window = WindowScore(float(ws.starts_s[i]), float(ws.ends_s[i]), float(ws.scores[i, column]),
                             "negative" if ws.vetoed[i, column] else None, (), 0.0)  # no wall time: starts are counted
        starts += sum(1 for r in tracker.update(window) if r.phase == "start")
    return starts


def calibrate_event(event: EventConfig, column: int, positives: list[FileScores], negatives: list[FileScores],
                    target_precision: float | None, max_false_alarms_per_hour: float | None,
                    candidates: int = 200) -> Calibration:
    values = np.concatenate([w.scores[:, column] for w in positives + negatives])
    grid = np.unique(np.quantile(values, np.linspace(0, 1, candidates))) if values.size else np.array([])
    hours = sum(w.duration_s for w in negatives) / 3600
    best: Calibration | None = None
    for threshold in grid:  # ascending: the first that meets the target has the highest recall
        found = sum(1 for w in positives if count_starts(w, column, event, float(threshold)) > 0)
        alarms = sum(count_starts(w, column, event, float(threshold)) for w in negatives)
        precision = found / (found + alarms) if found + alarms else 1.0
        fa_per_hour = alarms / hours if hours else 0.0
        ok = (target_precision is None or precision >= target_precision) and (
            max_false_alarms_per_hour is None or fa_per_hour <= max_false_alarms_per_hour)
        if ok and found:
            best = Calibration(event.label, event.threshold, round(float(threshold), 4), precision,
                               found / len(positives), fa_per_hour, len(positives), hours)
            break
    return best or Calibration(event.label, event.threshold, None, float("nan"), 0.0, float("nan"),
                               len(positives), hours)


def positives_by_label(source: Path, labels: tuple[str, ...]) -> dict[str, list[Path]]:
    """A folder with one sub-folder per label, a TSV list of ``path<TAB>label``, or (one event) a plain folder."""
    if source.is_file():
        out: dict[str, list[Path]] = {}
        for n, line in enumerate(source.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{source}:{n}: expected 'path<TAB>label', found {line!r}")
            path = (source.parent / parts[0]) if not Path(parts[0]).is_absolute() else Path(parts[0])
            out.setdefault(parts[1], []).append(path)
        return out
    folders = {d.name: audio_files(d) for d in source.iterdir() if d.is_dir() and d.name in labels}
    if folders:
        return folders
    if len(labels) == 1:
        return {labels[0]: audio_files(source)}
    raise ValueError(f"{source} has no sub-folder named after an event ({', '.join(labels)}); put each event's "
                     "positive clips in a folder of its name, or pass a list file")


def calibrate(detector: Detector, positives_source: Path, negatives_dir: Path, target_precision: float | None,
              max_false_alarms_per_hour: float | None, progress: bool = True) -> list[Calibration]:
    from tqdm import tqdm

    labels = detector.bank.labels
    by_label = positives_by_label(positives_source, labels)
    negative_files = audio_files(negatives_dir)
    every = sorted({p for paths in by_label.values() for p in paths} | set(negative_files))
    scored = {p: score_file(detector, p) for p in tqdm(every, desc="scoring", unit="file", file=sys.stderr,
                                                          disable=not progress)}
    results = []
    for column, event in enumerate(detector.config.events):
        positives = [scored[p] for p in by_label.get(event.label, [])]
        if not positives:
            results.append(Calibration(event.label, event.threshold, None, float("nan"), float("nan"),
                                       float("nan"), 0, 0.0))
            continue
        results.append(calibrate_event(event, column, positives, [scored[p] for p in negative_files],
                                       target_precision, max_false_alarms_per_hour))
    return results
