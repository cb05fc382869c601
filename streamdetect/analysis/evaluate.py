"""Evaluation of the real streaming pipeline against DCASE-style strong labels.

Metrics come from ``sed_scores_eval`` (maintained by the DCASE task 4 organisers) rather than our own code:
event-based precision/recall/F1 with a collar is computed by handing it the detector's events as a 0/1 score
timeline and a 0.5 threshold, and PSDS1 from the raw window scores, each window's score covering the hop around
its centre.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamdetect.analysis.replay import FileScores, score_file
from streamdetect.pipeline.detector import Detector
from streamdetect.sources.file import audio_files

Event = tuple[float, float, str]


class LabelsError(ValueError):
    """A strong-label file that cannot be used; says which line and why."""


def read_strong_labels(path: Path) -> dict[str, list[Event]]:
    """``filename onset offset event_label`` rows (tab-separated, header optional) -> events per file."""
    out: dict[str, list[Event]] = {}
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or (n == 1 and row[:2] == ["filename", "onset"]):
                continue
            if len(row) != 4:
                raise LabelsError(f"{path}:{n}: expected 4 tab-separated columns (filename onset offset "
                                  f"event_label), found {len(row)}")
            name, onset, offset, label = row
            try:
                start, end = float(onset), float(offset)
            except ValueError:
                raise LabelsError(f"{path}:{n}: onset/offset must be numbers, found {onset!r}, {offset!r}") from None
            if not 0 <= start < end:
                raise LabelsError(f"{path}:{n}: need 0 <= onset < offset, found {start} and {end}")
            out.setdefault(name, []).append((start, end, label))
    return {name: merge_touching(events) for name, events in out.items()}


def merge_touching(events: list[Event]) -> list[Event]:
    """Merge overlapping or touching events of one label (strong labels cannot tell them apart)."""
    merged: list[Event] = []
    for start, end, label in sorted(events, key=lambda e: (e[2], e[0])):
        if merged and merged[-1][2] == label and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), label)
        else:
            merged.append((start, end, label))
    return sorted(merged)


def event_timeline(events: list[Event], labels: tuple[str, ...], duration_s: float):
    """Detected events as a 0/1 score DataFrame, so that threshold 0.5 recovers exactly these events."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    bounds = sorted({0.0, duration_s, *(t for s, e, _ in events for t in (s, min(e, duration_s)))})
    bounds = [b for b in bounds if b <= duration_s]
    scores = np.zeros((len(bounds) - 1, len(labels)))
    for start, end, label in events:
        column = labels.index(label)
        for i in range(len(bounds) - 1):
            if bounds[i] >= start and bounds[i + 1] <= end:
                scores[i, column] = 1.0
    return create_score_dataframe(scores, np.array(bounds), list(labels))


def window_timeline(result: FileScores, labels: tuple[str, ...]):
    """Raw window scores as a score DataFrame: each window covers the stretch nearest to its centre."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    centres = (result.starts_s + result.ends_s) / 2
    bounds = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [max(result.duration_s, centres[-1] + 1e-3)]])
    return create_score_dataframe(result.scores.astype(np.float64), bounds, list(labels))


def event_fscore(detections: dict, ground_truth: dict[str, list[Event]], collar_s: float):
    """Collar-based (onset and offset within ``collar_s``) F1, precision, recall and counts per label.

    ``detections`` are ``event_timeline`` frames: thresholding them at 0.5 yields exactly the detected events.
    """
    from sed_scores_eval import collar_based

    return collar_based.fscore(detections, ground_truth, 0.5, onset_collar=collar_s, offset_collar=collar_s,
                               offset_collar_rate=0.0)


@dataclass
class Report:
    labels: tuple[str, ...]
    per_label: dict[str, dict[str, float]]
    micro: dict[str, float]
    macro_f1: float
    psds1: float
    files: int
    collar_s: float
    ignored_labels: list[str] = field(default_factory=list)  # in the labels file, not in the config
    unreferenced_labels: list[str] = field(default_factory=list)  # in the config, no reference events


def evaluate(detector: Detector, audio_dir: Path, labels_tsv: Path, collar_s: float = 1.0,
             progress: bool = True) -> Report:
    from sed_scores_eval import intersection_based
    from tqdm import tqdm

    truth = read_strong_labels(labels_tsv)
    labels = detector.bank.labels
    files = {p.relative_to(audio_dir).as_posix() if audio_dir.is_dir() else p.name: p for p in audio_files(audio_dir)}
    by_name = {p.name: p for p in files.values()}
    missing = [name for name in truth if name not in files and name not in by_name]
    if missing:
        raise LabelsError(f"{labels_tsv} names files not found under {audio_dir}: {', '.join(missing[:5])}"
                          + (" ..." if len(missing) > 5 else ""))
    ignored = sorted({label for events in truth.values() for _, _, label in events} - set(labels))
    # sed_scores_eval needs reference events for every class it scores; labels without any are reported with
    # their false alarms only.
    scored = tuple(x for x in labels if any(e[2] == x for events in truth.values() for e in events))
    if not scored:
        raise LabelsError(f"{labels_tsv} has no events for any configured label ({', '.join(labels)})")
    columns = [labels.index(x) for x in scored]
    detections, windows, ground_truth, durations = {}, {}, {}, {}
    unscored_fp = dict.fromkeys(labels, 0)
    for name, path in tqdm(sorted(files.items()), desc="evaluating", unit="file", file=sys.stderr,
                           disable=not progress):
        result = score_file(detector, path)
        detections[name] = event_timeline([e for e in result.events if e[2] in scored], scored, result.duration_s)
        result.scores = result.scores[:, columns]
        windows[name] = window_timeline(result, scored)
        ground_truth[name] = [e for e in truth.get(name, truth.get(path.name, [])) if e[2] in scored]
        durations[name] = result.duration_s
        for _, _, label in result.events:
            if label not in scored:
                unscored_fp[label] += 1
    f, p, r, stats = event_fscore(detections, ground_truth, collar_s)
    psds1 = intersection_based.psds(windows, ground_truth, durations, dtc_threshold=0.7, gtc_threshold=0.7,
                                    cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0)[0]
    per_label = {}
    for label in labels:
        if label in scored:
            per_label[label] = {"precision": float(p[label]), "recall": float(r[label]), "f1": float(f[label]),
                                "tp": int(stats[label]["tps"]), "fp": int(stats[label]["fps"]),
                                "n_ref": int(stats[label]["n_ref"])}
        else:
            fp = unscored_fp[label]
            per_label[label] = {"precision": 0.0 if fp else float("nan"), "recall": float("nan"),
                                "f1": float("nan"), "tp": 0, "fp": fp, "n_ref": 0}
    micro = {"precision": float(p["micro_average"]), "recall": float(r["micro_average"]),
             "f1": float(f["micro_average"])}
    return Report(labels, per_label, micro, float(f["macro_average"]), float(psds1), len(files), collar_s, ignored,
                  [x for x in labels if x not in scored])
