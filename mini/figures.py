"""Every figure of docs/quality.md, measured on the mini CLAP: the numbers (docs/quality.json) and the plots
(docs/images/mini_*.png). Seeded: the same model gives the same figures.

    streamdetect export --model mini/clap --out models/mini-clap
    python -m mini.figures --model models/mini-clap --work /tmp/mini-figures
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from mini import features as mf
from mini import quality as mq
from mini import world

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
LABEL = "mini CLAP, synthetic world (mini/world.py), held-out seeds"
MAJOR = {"beep": "tonal", "rising_chirp": "tonal", "falling_chirp": "tonal", "siren": "tonal", "hum": "tonal",
         "trill": "tonal", "hiss": "noisy", "water": "noisy", "knocking": "impulsive", "clicks": "impulsive",
         "bark": "impulsive", "silence": "quiet"}


def scan_figure(model: Path, work: Path) -> dict:
    """A scene with four sounds in a row, scanned against those four prompts."""
    from streamdetect.analysis.scan import plot_scan, scan_file

    rng = np.random.default_rng(world.EVAL_SEED_BASE + 50)
    order = [("beep", 3.0), ("siren", 9.0), ("water", 15.0), ("bark", 21.0)]
    x = world.room_tone(rng, int(28 * world.SR), -60.0)
    for label, at in order:
        x = world.place(rng, x, world.event(rng, label, 3.0), int(at * world.SR), 20.0)
    wav = work / "scan_scene.wav"
    sf.write(wav, x.astype(np.float32), world.SR)
    events = [e for e in mq.mini_events() if e["label"] in dict(order)]
    result = scan_file(mq.detector(model, events, mq.mini_scoring()), wav, progress=False)
    plot_scan(result, IMAGES / "mini_scan.png", f"streamdetect scan: {LABEL}")
    return {"events": [(e.label, e.start_s, e.end_s) for e in result.events],
            "placed": [(label, at, at + 3.0) for label, at in order]}


def embedding_figure(model: Path, work: Path) -> dict:
    """mini/embedding_map.py on held-out clips, folders named by each class's prompt."""
    rng = np.random.default_rng(world.EVAL_SEED_BASE + 60)
    dataset = work / "map"
    for label in world.CLASSES:
        folder = dataset / MAJOR[label] / world.prompt(label)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(8):
            sf.write(folder / f"{label}_{i}.wav", world.make_clip(rng, (label,)).audio, world.SR)
    out = work / "map.json"
    subprocess.run([sys.executable, "-m", "mini.embedding_map", str(dataset), "--model", str(model),
                    "--prompt-template", "{}", "--out", str(IMAGES / "mini_embedding_map.png"), "--heatmap",
                    str(IMAGES / "mini_similarity_heatmap.png"), "--title", LABEL, "--json", str(out)], check=True, cwd=ROOT)
    data = json.loads(out.read_text())
    return {"top1": data["top1"], "silhouette": data["silhouette"]}


def features_figure(figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    neg, soft, fb = figures["negatives"], figures["softmax_background"], figures["feedback"]
    cal, qbe = figures["calibrate"], figures["query_by_example"]
    panels = [
        ("negatives vs a confuser", "false alarms on chirps", ["no negatives", "negatives"],
         [neg["before"]["false_alarms"], neg["after"]["false_alarms"]],
         [neg["before"]["recall"], neg["after"]["recall"]]),
        ("background prompts", "false alarms, scenes without the event", ["cosine", "softmax + bg"],
         [soft["cosine"]["false_alarms"], soft["softmax"]["false_alarms"]],
         [soft["cosine"]["recall"], soft["softmax"]["recall"]]),
        ("feedback refinement", "precision at the same recall", ["before", "after"],
         [fb["before"]["precision"], fb["after_same_recall"]["precision"]],
         [fb["before"]["recall"], fb["after_same_recall"]["recall"]]),
        ("calibrate (target 0.9)", "held-out precision", ["target", "held out"],
         [cal["target"], cal["held_out_precision"]], None),
        (f"query by example ({qbe['class']})", "search precision@5", ["text name", "audio example"],
         [max(qbe["text_p5"].values()), qbe["example_p5"]], None),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 4.2), constrained_layout=True)
    for ax, (title, ylabel, names, values, recall) in zip(axes, panels, strict=True):
        bars = ax.bar(names, values, color=["0.6", "tab:green"])
        ax.bar_label(bars, [f"{v:.3g}" for v in values])
        if recall is not None:
            for bar, r in zip(bars, recall, strict=True):
                ax.annotate(f"recall {r:.2f}", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom",
                            xytext=(0, 4), textcoords="offset points", fontsize=8, color="white")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)
    fig.suptitle(f"free-text features, before / after ({LABEL})", fontsize=11)
    fig.savefig(IMAGES / "mini_features.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    IMAGES.mkdir(parents=True, exist_ok=True)
    w, model, events = args.work, args.model, mq.mini_events()
    clips = mq.write_clips(w / "clips", 11, 10, [*world.CLASSES, world.HELD_OUT])
    scenes = mq.write_scenes(w / "scenes", 12, 6, mq.SOUNDING)
    many_scenes = mq.write_scenes(w / "scenes_many", 19, 20, mq.SOUNDING)
    quiet = mq.write_quiet(w / "quiet", 13, 6)
    calibration = mq.write_clips(w / "calibration", 14, 6, mq.SOUNDING)
    negatives = mq.write_quiet(w / "calibration_quiet", 15, 4)
    confusers = mf.confuser_scenes(w / "confusers", 16, 6)
    example = mq.write_clips(w / "example", 17, 1, [world.HELD_OUT])
    tagged = w / "tagged"
    tagged.mkdir(exist_ok=True)
    for c in world.CLASSES:
        if not (tagged / c).exists():
            (tagged / c).symlink_to(clips / c)
    det = mq.detector(model, events, mq.mini_scoring())
    index = mq.clip_index(model, clips)
    figures = {
        "tag": mq.tag_accuracy(model, tagged, [{"label": c, "prompts": [world.prompt(c)]} for c in world.CLASSES]),
        "search_p5": {e["label"]: mq.precision_at(index, mq.text_query(model, e["prompts"][0]), e["label"])
                      for e in events},
        "scan": mq.scene_agreement(det, scenes),
        "evaluate": mq.report_evaluate(det, many_scenes),
        "evaluate_6_scenes": mq.report_evaluate(det, scenes),
        "negatives": mf.negatives(model, confusers),
        "softmax_background": mf.softmax_background(model, mq.write_clips(w / "sirens_calibration", 20, 20, ["siren"]),
                                                    mq.write_clips(w / "sirens", 21, 20, ["siren"]),
                                                    mf.sweep_scenes(w / "sweeps", 18, 8)),
        "feedback": mf.feedback(model, w / "feedback", seeds=(42, 43)),
        "calibrate": mf.calibration(model, events, calibration, negatives, clips, quiet),
        "query_by_example": mf.query_by_example(model, clips, next((example / world.HELD_OUT).glob("*.wav"))),
        "scan_figure": scan_figure(model, w),
        "embedding_map": embedding_figure(model, w),
    }
    figures["search_p5_mean"] = float(np.mean(list(figures["search_p5"].values())))
    features_figure(figures)
    (ROOT / "docs" / "quality.json").write_text(json.dumps(figures, indent=1, default=float) + "\n")
    print(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
