"""Precision before and after feedback refinement on generated scenes (mini/scenes.py --synthetic).

Train scenes are run through the detector into a sqlite store; every detected event is marked confirmed when
it overlaps a reference event of its label and rejected otherwise (an oracle standing in for a user), the
events are refined with ``streamdetect.prompts.refine`` and held-out test scenes are scored before and after. A
detection counts as correct when it overlaps a reference event of the same label.

Thresholds: the ``--quantile`` of each event's window scores on the train scenes, picked once before refining
("fixed") and picked again after refining ("re-picked", the same alarm budget). With the random-weight test
model the numbers say only that the code path works, not how well a real CLAP model would do.

    python -m mini.feedback --model models/clap --out /tmp/fbp
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mini import scenes as make_scenes
from streamdetect.analysis.evaluate import read_strong_labels
from streamdetect.analysis.replay import score_file
from streamdetect.config import parse_config
from streamdetect.daemon.build import build_detector
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import AudioEncoder, RuntimeOptions
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.detector import Detector
from streamdetect.prompts.assemble import prompt_bank_for
from streamdetect.prompts.refine import (
    RefinementStore,
    RefineParams,
    feedback_embeddings,
    mark_feedback,
    prompt_key,
    refinements_dir,
    rocchio,
)
from streamdetect.sinks.base import SinkSet
from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink

EVENTS = [{"label": "tone", "prompts": ["a steady beep tone"]},
          {"label": "chirp", "prompts": ["a rising whistle chirp"]},
          {"label": "clicks", "prompts": ["a train of clicks"]}]


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class MemoEncoder:
    """The audio encoder, each batch of windows run once: refining changes the prompt vectors, never the audio
    embeddings, so the experiment's fourteen passes over the same scenes need the encoder for two (the same
    files are cut into the same batches each time, so the results are those of running it every time)."""

    def __init__(self, encoder: AudioEncoder):
        self.encoder = encoder
        self.feature_shape, self.embedding_dim = encoder.feature_shape, encoder.embedding_dim
        self.file, self.precision, self.on_gpu = encoder.file, encoder.precision, encoder.on_gpu
        self.memo: dict[bytes, np.ndarray] = {}

    def __call__(self, features: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(features).tobytes(), digest_size=16).digest()
        key += repr(features.shape).encode()
        if key not in self.memo:
            self.memo[key] = self.encoder(features)
        return self.memo[key].copy()

    def describe(self) -> str:
        return self.encoder.describe()


def memo_encoder(model: Path) -> MemoEncoder:
    return MemoEncoder(open_audio_encoder(ModelBundle.load(model), RuntimeOptions(device="cpu")))


def detector(model: Path, thresholds: dict[str, float], events: list[dict], sinks: SinkSet | None = None,
             encoder: AudioEncoder | None = None) -> Detector:
    config = parse_config({"model": str(model), "runtime": {"device": "cpu"},
                           "events": [{**e, "threshold": thresholds.get(e["label"], 1.0), "cooldown_s": 0.0}
                                      for e in events]})
    return build_detector(config, ModelBundle.load(model), sinks or SinkSet([]), encoder=encoder)


def quantile_thresholds(model: Path, scenes: Path, q: float, events: list[dict],
                        encoder: AudioEncoder | None = None) -> dict[str, float]:
    det = detector(model, {}, events, encoder=encoder)
    scores = np.concatenate([score_file(det, p).scores for p in sorted(scenes.glob("*.wav"))])
    return {label: float(np.quantile(scores[:, i], q)) for i, label in enumerate(det.bank.labels)}


def measure(model: Path, thresholds: dict[str, float], scenes: Path, events: list[dict],
            encoder: AudioEncoder | None = None) -> dict:
    det, truth = detector(model, thresholds, events, encoder=encoder), read_strong_labels(scenes / "labels.tsv")
    tp = fp = hit = n_ref = 0
    for path in sorted(scenes.glob("*.wav")):
        refs = truth.get(path.name, [])
        found = score_file(det, path).events
        for start, end, label in found:
            ok = any(overlaps((start, end), (on, off)) and lab == label for on, off, lab in refs)
            tp, fp = tp + ok, fp + (not ok)
        n_ref += len(refs)
        hit += sum(any(overlaps((on, off), (s, e)) and lab == lx for s, e, lx in found) for on, off, lab in refs)
    return {"detections": tp + fp, "precision": round(tp / max(tp + fp, 1), 3), "recall": round(hit / max(n_ref, 1), 3)}


def synthetic_scenes(folder: Path, seed: int, n: int) -> Path:
    make_scenes.main(["--synthetic", "--out", str(folder), "--n", str(n), "--duration", "20", "--seed", str(seed)])
    return folder


def experiment(model_dir: Path, out: Path, n: int, quantile: float, params: RefineParams,
               events: list[dict] = EVENTS, write: Callable[[Path, int, int], Path] = synthetic_scenes,
               seeds: tuple[int, int] = (1, 2)) -> dict:
    """Precision and recall on the test scenes before and after refining from oracle feedback on the train
    scenes; ``out`` is replaced (it holds a copy of the model, since refinements are written into it).
    ``write(folder, seed, n)`` makes a split's scenes and their labels.tsv, from ``seeds`` (train, test)."""
    if out.exists():
        shutil.rmtree(out)
    model = Path(shutil.copytree(model_dir, out / "model"))
    train, test = (write(out / split, seed, n) for split, seed in zip(("train", "test"), seeds, strict=True))
    encoder = memo_encoder(model)
    thresholds = quantile_thresholds(model, train, quantile, events, encoder)
    before = measure(model, thresholds, test, events, encoder)

    db = out / "events.db"
    sink = SqliteSink(SqliteOptions(path=str(db)))
    det = detector(model, thresholds, events, SinkSet([("db", sink)]), encoder)
    truth = read_strong_labels(train / "labels.tsv")
    marked = {"confirmed": 0, "rejected": 0}
    for path in sorted(train.glob("*.wav")):
        records = [r for r in score_file_records(det, path) if r.phase == "end"]
        for r in records:
            ok = any(overlaps((r.start_s, r.end_s), (on, off)) and lab == r.label
                     for on, off, lab in truth.get(path.name, []))
            verdict = "confirmed" if ok else "rejected"
            mark_feedback(db, r.id, verdict)
            marked[verdict] += 1
    sink.close()
    bundle = ModelBundle.load(model)
    base = prompt_bank_for(bundle, det.config.events, None, refined=False)
    store = RefinementStore(refinements_dir(bundle))
    for event, vector in zip(det.config.events, base.events, strict=True):
        fb = feedback_embeddings(db, event.label)
        if fb.confirmed.size or fb.rejected.size:
            store.save(event.label, rocchio(vector, fb.confirmed, fb.rejected, params),
                       {"prompt_key": prompt_key(event.prompts, bundle.text_key)})
    after_fixed = measure(model, thresholds, test, events, encoder)
    after_repicked = measure(model, quantile_thresholds(model, train, quantile, events, encoder), test, events,
                             encoder)
    report = {"feedback": marked, "before": before, "after_fixed_thresholds": after_fixed,
              "after_repicked_thresholds": after_repicked,
              "after_same_recall": same_recall(model, train, test, before["recall"], quantile, events, after_fixed,
                                                   encoder),
              "params": params.__dict__, "scenes_per_split": n, "quantile": quantile}
    return report


SWEEP = (0.9, 0.925, 0.95, 0.975)


def same_recall(model: Path, train: Path, test: Path, recall: float, quantile: float, events: list[dict],
                fixed: dict, encoder: AudioEncoder | None = None) -> dict:
    """Precision after refining at the recall it had before: the refined events at the thresholds picked before
    (``fixed``) and at thresholds re-picked from train-scene quantiles (``SWEEP``, and the one used before); the
    most precise point that still finds at least as many test events as before. Refinement that only moves the
    score scale shows up here as no gain."""
    points = [{**fixed, "quantile": "before"}]
    points += [{**measure(model, quantile_thresholds(model, train, q, events, encoder), test, events, encoder),
                "quantile": q} for q in sorted({*SWEEP, quantile})]
    kept = [pt for pt in points if pt["recall"] >= recall]
    return max(kept, key=lambda pt: pt["precision"]) if kept else {"recall": None, "points": points}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="exported model (copied: refinements go there)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=12, help="scenes per split")
    parser.add_argument("--quantile", type=float, default=0.9)
    parser.add_argument("--alpha", type=float, default=RefineParams.alpha)
    parser.add_argument("--beta", type=float, default=RefineParams.beta)
    parser.add_argument("--max-angle", type=float, default=RefineParams.max_angle_deg)
    args = parser.parse_args(argv)
    report = experiment(args.model, args.out, args.n, args.quantile,
                        RefineParams(args.alpha, args.beta, args.max_angle))
    print(json.dumps(report, indent=1))
    return 0


def score_file_records(det: Detector, path: Path):
    from streamdetect.analysis.replay import analyse_file

    return analyse_file(det, path)[1]


if __name__ == "__main__":
    raise SystemExit(main())
