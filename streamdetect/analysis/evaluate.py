"""Evaluation of the real streaming pipeline against DCASE-style strong labels.

Metrics come from the DCASE reference tools rather than our own code. Event-based precision/recall/F1 is
``sed_eval``'s (the DCASE 2016-2019 reference): collar-based matching of the detected events, with an onset
collar and an offset collar of ``max(collar, offset_collar_rate * reference length)``. PSDS (scenarios 1 and 2
of DCASE 2021-2024 task 4) is ``sed_scores_eval``'s exact computation over the raw window scores, each window's
score covering the hop around its centre; ``tests/test_evaluate_dcase.py`` checks both against ``sed_eval`` and
``psds_eval`` run on the same files.

Reference events are taken as they are written, as the DCASE tools do: two events of one label that touch
(3.797-4.103 and 4.103-4.492) are two events. ``merge_touching=True`` merges touching and overlapping ones.
"""

from __future__ import annotations

import csv
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamdetect.analysis.replay import FileScores, score_file
from streamdetect.pipeline.detector import Detector
from streamdetect.sources.file import audio_files

Event = tuple[float, float, str]

# DCASE task 4's two PSDS scenarios (2021-2024): 1 rewards exact boundaries, 2 tolerant boundaries and
# penalises cross-triggers (a detection of one class on another class's reference).
PSDS_SCENARIOS: dict[int, dict[str, float | None]] = {
    1: {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None, "alpha_ct": 0.0, "alpha_st": 1.0,
        "max_efpr": 100.0},
    2: {"dtc_threshold": 0.1, "gtc_threshold": 0.1, "cttc_threshold": 0.3, "alpha_ct": 0.5, "alpha_st": 1.0,
        "max_efpr": 100.0},
}
# PSDS needs reference events of one class that do not touch: a touching pair is kept apart by this gap
SEPARATION_S = 1e-6


class LabelsError(ValueError):
    """A strong-label file that cannot be used; says which line and why."""


def read_strong_labels(path: Path, merge: bool = False) -> dict[str, list[Event]]:
    """``filename onset offset event_label`` rows (tab-separated, header optional) -> events per file.

    A row with only a file name (DCASE writes ``file<TAB><TAB><TAB>`` for a recording without events) lists
    the file with no events. ``merge``: merge touching or overlapping events of one label.
    """
    out: dict[str, list[Event]] = {}
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or (n == 1 and row[:2] == ["filename", "onset"]):
                continue
            if len(row) in (1, 4) and row[0] and not any(cell.strip() for cell in row[1:]):
                out.setdefault(row[0], [])
                continue
            if len(row) != 4:
                raise LabelsError(f"{path}:{n}: expected 4 tab-separated columns (filename onset offset "
                                  f"event_label), found {len(row)}")
            name, onset, offset, label = row
            try:
                start, end = float(onset), float(offset)
            except ValueError:
                raise LabelsError(f"{path}:{n}: onset/offset must be numbers (or all three empty for a file "
                                  f"without events), found {onset!r}, {offset!r}") from None
            if not 0 <= start < end:
                raise LabelsError(f"{path}:{n}: need 0 <= onset < offset, found {start} and {end}")
            if not label.strip():
                raise LabelsError(f"{path}:{n}: the event_label column is empty")
            out.setdefault(name, []).append((start, end, label))
    return {name: merge_touching(events) if merge else sorted(events) for name, events in out.items()}


def merge_touching(events: list[Event]) -> list[Event]:
    """Merge overlapping or touching events of one label (strong labels cannot tell them apart)."""
    merged: list[Event] = []
    for start, end, label in sorted(events, key=lambda e: (e[2], e[0])):
        if merged and merged[-1][2] == label and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), label)
        else:
            merged.append((start, end, label))
    return sorted(merged)


def apart_for_psds(events: list[Event]) -> list[Event]:
    """``sed_scores_eval``'s PSDS refuses reference events of one class that touch: the later one of a touching
    pair starts ``SEPARATION_S`` later (far below any detection's resolution); overlapping ones are merged."""
    out: list[Event] = []
    for start, end, label in sorted(events, key=lambda e: (e[2], e[0])):
        if out and out[-1][2] == label and start < out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]), label)
        elif out and out[-1][2] == label and start == out[-1][1]:
            out.append((start + SEPARATION_S, end, label))
        else:
            out.append((start, end, label))
    return sorted(out)


def window_timeline(result: FileScores, labels: tuple[str, ...]) -> Any:
    """Raw window scores as a score DataFrame (pandas, untyped here): each window covers the stretch nearest to
    its centre."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    centres = (result.starts_s + result.ends_s) / 2
    bounds = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [max(result.duration_s, centres[-1] + 1e-3)]])
    return create_score_dataframe(result.scores.astype(np.float64), bounds, list(labels))


def centred(event: Event, window_s: float, hop_s: float) -> Event:
    """A detection timed by its windows' centres: each window stands for the ``hop_s`` nearest its centre (the
    PSDS timeline's rule), instead of its whole ``window_s``. The events the sinks report run from their first
    window's start to their last window's end, up to ``window_s - hop_s`` longer than the sound."""
    start, end, label = event
    trim = max(window_s - hop_s, 0.0) / 2
    return (start + trim, max(end - trim, start + trim), label)


def present(event: Event, window_s: float, hop_s: float) -> Event:
    """A detection timed as a presence detector's: CLAP scores a window high when the sound is anywhere in it
    (it learnt from clips labelled for what they contain, not for where), so the sound began within the hop
    before its first window's end and ended within the hop after its last window's start; the middle of each
    of those hops is the estimate. A sound shorter than a window (fewer than ``window_s / hop_s`` windows) lies
    where all its windows overlap, between the same two points the other way round, and lasts a hop at least.
    An event from the stream's first window has no earlier window to bound it: it began between the start and
    one hop before that window's end, taken at the middle."""
    start, end, label = event
    onset = start + window_s - hop_s / 2 if start > 0 else (start + window_s - hop_s) / 2
    onset, offset = sorted((onset, end - window_s + hop_s / 2))
    if offset - onset < hop_s:
        middle = (onset + offset) / 2
        onset, offset = max(middle - hop_s / 2, 0.0), middle + hop_s / 2
    return (onset, offset, label)


TIMINGS = {"centre": centred, "presence": present}


def event_fscore(detections: dict[str, list[Event]], ground_truth: dict[str, list[Event]], labels: tuple[str, ...],
                 collar_s: float, offset_collar_rate: float = 0.0,
                 ) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, dict[str, int]]]:
    """``sed_eval``'s collar-based F1, precision, recall and counts: a detection matches a reference of its label
    whose onset is within ``collar_s`` and whose offset is within ``max(collar_s, offset_collar_rate x the
    reference's length)`` (DCASE 2016-2019: 0.2 s and 0.2). Returns ``(f, p, r, stats)`` dicts keyed by label,
    plus ``micro_average`` and ``macro_average`` (the mean over labels that have reference events)."""
    with warnings.catch_warnings():  # dcase_util imports pkg_resources, which warns about itself
        warnings.simplefilter("ignore")
        import sed_eval

    metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(labels), t_collar=collar_s, percentage_of_length=offset_collar_rate,
        evaluate_onset=True, evaluate_offset=True, event_matching_type="optimal")
    for name in sorted(set(detections) | set(ground_truth)):
        def rows(events: list[Event], name: str = name) -> list[dict]:
            return [{"filename": name, "onset": s, "offset": e, "event_label": x} for s, e, x in events]

        metrics.evaluate(reference_event_list=rows(ground_truth.get(name, [])),
                         estimated_event_list=rows(detections.get(name, [])))
    results = metrics.results()
    f: dict[str, float] = {}
    p: dict[str, float] = {}
    r: dict[str, float] = {}
    stats: dict[str, dict[str, int]] = {}
    for label in labels:
        counts = metrics.class_wise[label]
        measure = results["class_wise"][label]["f_measure"]
        f[label], p[label], r[label] = measure["f_measure"], measure["precision"], measure["recall"]
        stats[label] = {"tps": int(counts["Ntp"]), "fps": int(counts["Nsys"] - counts["Ntp"]),
                        "n_ref": int(counts["Nref"])}
    overall = results["overall"]["f_measure"]
    f["micro_average"], p["micro_average"], r["micro_average"] = (overall["f_measure"], overall["precision"],
                                                                  overall["recall"])
    referenced = [f[x] for x in labels if stats[x]["n_ref"]]
    f["macro_average"] = float(np.mean(referenced)) if referenced else float("nan")
    return f, p, r, stats


@dataclass
class Report:
    labels: tuple[str, ...]
    per_label: dict[str, dict[str, float]]
    micro: dict[str, float]
    macro_f1: float
    psds1: float
    psds2: float
    files: int
    collar_s: float
    offset_collar_rate: float
    merge_touching: bool
    ignored_labels: list[str] = field(default_factory=list)  # in the labels file, not in the config
    unreferenced_labels: list[str] = field(default_factory=list)  # in the config, no reference events
    timing: str = "reported"  # how detections were timed: "reported", or a key of TIMINGS


def evaluate(detector: Detector, audio_dir: Path, labels_tsv: Path, collar_s: float = 1.0,
             offset_collar_rate: float = 0.0, merge_touching: bool = False, scores_dir: Path | None = None,
             progress: bool = True, timing: str = "reported") -> Report:
    """``scores_dir``: also write each file's window scores (``sed_scores_eval``'s TSV format, one file per
    recording) and ``durations.tsv`` there, for running other PSDS tools on exactly what was scored.
    ``timing``: ``reported`` scores the events as the sinks report them; ``centre`` times them by their windows'
    centres (``centred``), as PSDS already does; ``presence`` as a presence detector's (``present``)."""
    from sed_scores_eval import intersection_based
    from tqdm import tqdm

    truth = read_strong_labels(labels_tsv, merge=merge_touching)
    labels = detector.bank.labels
    files = {p.relative_to(audio_dir).as_posix() if audio_dir.is_dir() else p.name: p for p in audio_files(audio_dir)}
    by_name = {p.name: p for p in files.values()}
    missing = [name for name in truth if name not in files and name not in by_name]
    if missing:
        raise LabelsError(f"{labels_tsv} names files not found under {audio_dir}: {', '.join(missing[:5])}"
                          + (" ..." if len(missing) > 5 else ""))
    ignored = sorted({label for events in truth.values() for _, _, label in events} - set(labels))
    # PSDS needs reference events for every class it scores: labels without any are left out of it.
    scored = tuple(x for x in labels if any(e[2] == x for events in truth.values() for e in events))
    if not scored:
        raise LabelsError(f"{labels_tsv} has no events for any configured label ({', '.join(labels)})")
    columns = [labels.index(x) for x in scored]
    detections, windows, ground_truth, durations = {}, {}, {}, {}
    retime = TIMINGS.get(timing)  # None: the events as reported
    window_s, hop_s = detector.config.windows.window_s, detector.config.windows.hop_s
    for name, path in tqdm(sorted(files.items()), desc="evaluating", unit="file", file=sys.stderr,
                           disable=not progress):
        result = score_file(detector, path)
        detections[name] = [retime(e, window_s, hop_s) for e in result.events] if retime else list(result.events)
        result.scores = result.scores[:, columns]
        windows[name] = window_timeline(result, scored)
        ground_truth[name] = [e for e in truth.get(name, truth.get(path.name, [])) if e[2] in labels]
        durations[name] = result.duration_s
    f, p, r, stats = event_fscore(detections, ground_truth, labels, collar_s, offset_collar_rate)
    psds_truth = {name: apart_for_psds([e for e in events if e[2] in scored]) for name, events in ground_truth.items()}
    psds = {}
    for n, params in PSDS_SCENARIOS.items():
        if len(scored) == 1:  # no other class to cross-trigger on (and sed_scores_eval 0.0.4 fails on an empty set)
            params = {**params, "cttc_threshold": None, "alpha_ct": 0.0}
        psds[n] = float(intersection_based.psds(windows, psds_truth, durations, **params)[0])
    if scores_dir is not None:
        write_scores(scores_dir, windows, durations)
    per_label = {label: {"precision": float(p[label]), "recall": float(r[label]), "f1": float(f[label]),
                         "tp": stats[label]["tps"], "fp": stats[label]["fps"], "n_ref": stats[label]["n_ref"]}
                 for label in labels}
    micro = {"precision": float(p["micro_average"]), "recall": float(r["micro_average"]),
             "f1": float(f["micro_average"])}
    return Report(labels, per_label, micro, float(f["macro_average"]), psds[1], psds[2], len(files), collar_s,
                  offset_collar_rate, merge_touching, ignored, [x for x in labels if x not in scored], timing)


def write_scores(folder: Path, windows: dict, durations: dict[str, float]) -> None:
    from sed_scores_eval.base_modules.io import write_sed_scores

    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in windows.items():
        target = folder / f"{name}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_sed_scores(frame, target)
    (folder / "durations.tsv").write_text("filename\tduration\n" + "".join(
        f"{name}\t{seconds}\n" for name, seconds in sorted(durations.items())))
