"""Before/after evidence for the free-text features, on the mini CLAP and held-out data of ``mini/world.py``.

Each experiment runs the real detector twice, once without the feature and once with it, on recordings from
evaluation seeds: negative prompts against a confuser, softmax with background prompts against cosine on
recordings without the event, ``calibrate`` against its target on held-out audio, and query by example for the
class no caption ever named; feedback refinement runs ``mini/feedback.py`` here. Used by the quality
tests and by ``mini/figures.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mini import feedback as refinement
from mini import quality as mq
from mini import world
from streamdetect.analysis.evaluate import read_strong_labels
from streamdetect.analysis.replay import score_file

BACKGROUND = ["a rising chirp", "a falling chirp", "quiet room tone"]  # what a sweep scene sounds like


def confuser_scenes(folder: Path, seed: int, n: int) -> Path:
    """Scenes of sirens among rising and falling chirps, the sweeps a vague siren prompt also matches."""
    return mq.write_scenes(folder, seed, n, ["siren", "rising_chirp", "falling_chirp"])


def negatives(model: Path, scenes: Path, prompt: str = "a sweeping tone", threshold: float | None = None) -> dict:
    """False alarms of a siren event on chirps, without and with the chirps as negative prompts."""
    truth = read_strong_labels(scenes / "labels.tsv")
    files = sorted(scenes.glob("*.wav"))
    if threshold is None:  # the median of the prompt's best score over the sirens: a middling, untuned setting
        det = mq.detector(model, [{"label": "siren", "prompts": [prompt], "threshold": 1.0}])
        best = []
        for path in files:
            result = score_file(det, path)
            centres = (result.starts_s + result.ends_s) / 2
            best += [float(result.scores[(centres >= a) & (centres <= b), 0].max(initial=-1.0))
                     for a, b, lab in truth.get(path.name, []) if lab == "siren"]
        threshold = round(float(np.median(best)) - 0.1, 4)
    out = {"prompt": prompt, "threshold": threshold}
    for name, negs in (("before", []), ("after", ["a rising chirp", "a falling chirp"])):
        det = mq.detector(model, [{"label": "siren", "prompts": [prompt], "threshold": threshold,
                                   "negatives": negs}])
        out[name] = mq.count_detections(det, files, truth).as_dict()
    return out


def per_clip_best(model: Path, events: list[dict], clips: Path, scoring: dict | None) -> dict[str, list[float]]:
    """Each event's best window score over each of its own clips."""
    det = mq.detector(model, [{**e, "threshold": 1.0} for e in events], scoring)
    best: dict[str, list[float]] = {e["label"]: [] for e in events}
    for label in best:
        column = det.bank.labels.index(label)
        best[label] = [float(score_file(det, p).scores[:, column].max()) for p in sorted((clips / label).glob("*.wav"))]
    return best


def sweep_scenes(folder: Path, seed: int, n: int) -> Path:
    """Scenes without a siren: rising and falling chirps only, the sweeps a vague siren prompt also matches."""
    return mq.write_scenes(folder, seed, n, ["rising_chirp", "falling_chirp"], n_events=6)


def softmax_background(model: Path, calibration_clips: Path, clips: Path, scenes: Path,
                       prompt: str = "a sweeping tone", recall_quantile: float = 0.2) -> dict:
    """False alarms of a siren event on scenes without sirens (``sweep_scenes``), cosine against softmax with
    background prompts that name what the place sounds like (its chirps, its room tone). Each scoring gets the
    threshold that keeps the same share of the siren calibration clips (their ``recall_quantile`` of best
    scores); recall is counted on other siren clips."""
    events = [{"label": "siren", "prompts": [prompt], "threshold": 1.0}]
    out = {"prompt": prompt, "background": BACKGROUND, "recall_quantile": recall_quantile}
    scene_files = sorted(scenes.glob("*.wav"))
    clip_files, clip_labels = mq.clip_truth(clips)
    for name, scoring in (("cosine", {"mode": "cosine"}), ("softmax", {"mode": "softmax", "background": BACKGROUND})):
        best = per_clip_best(model, events, calibration_clips, scoring)
        tuned = [{**e, "threshold": round(float(np.quantile(best[e["label"]], recall_quantile)), 4)} for e in events]
        det = mq.detector(model, tuned, scoring)
        found = mq.count_detections(det, [p for p in clip_files if p.parent.name in best], clip_labels)
        alarms = mq.count_detections(det, scene_files, {})
        out[name] = {"threshold": tuned[0]["threshold"], "recall": round(found.recall, 4), "false_alarms": alarms.fp,
                     "false_alarms_per_hour": round(alarms.false_alarms_per_hour, 1), "hours": round(alarms.hours, 4)}
    return out


def feedback(model: Path, out: Path, seeds: tuple[int, int], n: int = 8) -> dict:
    """``mini/feedback.py`` in this world: the mini events' prompts (thresholds at the 0.9 quantile of
    the train scenes' window scores), oracle verdicts on the train scenes' events, precision and recall on the
    test scenes before and after refining."""
    events = [{"label": e["label"], "prompts": e["prompts"]} for e in mq.mini_events()]
    return refinement.experiment(model, out, n, 0.9, refinement.RefineParams(), events=events,
                                         write=lambda folder, seed, k: mq.write_scenes(folder, seed, k, mq.SOUNDING),
                                         seeds=seeds)


def calibration(model: Path, events: list[dict], positives: Path, negatives: Path, clips: Path, quiet: Path,
                target: float = 0.9) -> dict:
    """``calibrate --target-precision`` on one set of recordings, its precision measured on another: per event,
    clips of the event found against alarms on event-free audio, as calibrate itself counts."""
    tuned = mq.calibrated(model, mq.window_level(events), positives, negatives, target)
    det = mq.detector(model, tuned)
    clip_files, clip_labels = mq.clip_truth(clips)
    own = [p for p in clip_files if p.parent.name in det.bank.labels]
    found = mq.count_detections(det, own, clip_labels)
    alarms = mq.count_detections(det, sorted(quiet.glob("*.wav")), {})
    found_clips = found.found
    precision = found_clips / max(found_clips + alarms.fp, 1)
    return {"target": target, "calibrated": len(tuned), "of": len(events), "held_out_precision": round(precision, 4),
            "held_out_recall": round(found.recall, 4), "false_alarms": alarms.fp,
            "thresholds": {e["label"]: e["threshold"] for e in tuned}}


def query_by_example(model: Path, clips: Path, example: Path, name: str = world.HELD_OUT) -> dict:
    """``search`` for the never-captioned class: its name as text, then an example recording of it."""
    index = mq.clip_index(model, clips)
    texts = {t: mq.precision_at(index, mq.text_query(model, t), name) for t in (f"a {name}", f"a ringing {name}")}
    return {"class": name, "text_p5": texts, "example_p5": mq.precision_at(index, mq.example_query(model, example),
                                                                            name)}
