"""Detection quality of the committed mini CLAP, through the real export and detector, on held-out recordings.

The mini model (tools/mini_clap/, trained by tools/train_mini_clap.py on the generated world of
tools/mini_world.py) is the one model here whose scores mean something, in that synthetic world only. Every
recording below comes from evaluation seeds the training never drew. The floors sit below the figures measured
when the checkpoint was committed (docs/quality.md) by a margin, so they fail on a real regression of the
pipeline (front end, export, scoring, event logic), not on a rounding change.

The committed checkpoint is undertrained (900 steps on a CPU shared by many jobs): it does NOT reach issue 20's
targets (tag top-1 0.9, event F1 0.8), and softmax-with-background, query by example and evaluate's event F1
showed no gain or failed on it (see docs/quality.md). Those are not asserted here; what is asserted holds on it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import built_once

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import feedback_precision  # noqa: E402
import mini_features as mf  # noqa: E402
import mini_quality as mq  # noqa: E402
import mini_world as world  # noqa: E402


def write_held_out(folder: Path) -> None:
    """Every recording the checks use; each set from its own evaluation seed."""
    mq.write_clips(folder / "clips", 1, 8, [*world.CLASSES, world.HELD_OUT])
    mq.write_scenes(folder / "scenes", 2, 5, mq.SOUNDING)
    mq.write_quiet(folder / "quiet", 3, 6)
    mq.write_clips(folder / "calibration", 4, 5, mq.SOUNDING)
    mq.write_quiet(folder / "calibration_quiet", 5, 4)
    mf.confuser_scenes(folder / "confusers", 6, 5)
    mq.write_clips(folder / "example", 7, 1, [world.HELD_OUT])


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "mini-held-out", write_held_out)


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return mq.mini_events()


def test_tag_top1_over_all_classes(mini_model, held_out):
    classes = [{"label": c, "prompts": [world.prompt(c)]} for c in world.CLASSES]
    clips = held_out / "tagged"
    if not clips.exists():
        clips.mkdir()
        for c in world.CLASSES:
            (clips / c).symlink_to(held_out / "clips" / c)
    result = mq.tag_accuracy(mini_model, clips, classes)
    assert result["clips"] == 8 * len(world.CLASSES)
    assert result["top1"] >= 0.5, result  # measured 0.66; issue 20 asks 0.9 (not met)


def test_search_precision_at_5_per_class_name(mini_model, held_out, events):
    index = mq.clip_index(mini_model, held_out / "clips")
    p5 = {e["label"]: mq.precision_at(index, mq.text_query(mini_model, e["prompts"][0]), e["label"]) for e in events}
    assert np.mean(list(p5.values())) >= 0.6, p5  # measured 0.75-0.78


def test_scan_each_prompt_rises_where_its_sound_plays(mini_model, held_out, events):
    det = mq.detector(mini_model, events, mq.mini_scoring())
    result = mq.scene_agreement(det, held_out / "scenes")
    assert result["events"] >= 10
    assert result["own_curve_highest"] >= 0.5, result  # measured 0.62-0.65 (chance: 1/11)
    assert result["median_rise"] > 0.1, result


def test_classes_cluster_in_the_embedding_space(mini_model, held_out):
    assert mq.silhouette(mini_model, held_out / "calibration") >= 0.1  # measured 0.19-0.21


def test_feedback_refinement_raises_precision_at_the_same_recall(mini_model, tmp_path):
    report = feedback_precision.experiment(mini_model, tmp_path / "fbp", n=8, quantile=0.9,
                                           params=feedback_precision.RefineParams())
    before, after = report["before"], report["after_fixed_thresholds"]
    assert report["feedback"]["rejected"] >= 1, report
    # at the thresholds picked before refining: measured precision 0.33 -> 0.58-0.76 with recall up, not down
    assert after["precision"] >= before["precision"] + 0.1, json.dumps(report)
    assert after["recall"] >= before["recall"], json.dumps(report)


def test_calibrate_meets_its_target_precision_on_held_out_audio(mini_model, held_out, events):
    negatives = held_out / "calibration_negatives"
    if not negatives.exists():
        shutil.copytree(held_out / "calibration_quiet", negatives)
    result = mf.calibration(mini_model, events, held_out / "calibration", negatives, held_out / "clips",
                            held_out / "quiet", target=0.9)
    assert result["calibrated"] >= result["of"] - 2, result  # measured 10 of 11
    assert result["held_out_precision"] >= 0.9, result  # measured 0.97-1.0
    assert result["held_out_recall"] >= 0.5, result


def test_training_is_deterministic_for_a_seed(tmp_path):
    import train_mini_clap
    from safetensors.numpy import load_file

    args = ["--steps", "1", "--text-steps", "1", "--pool", "4", "--batch", "4", "--seed", "3"]
    for name in ("a", "b"):
        assert train_mini_clap.main(["--out", str(tmp_path / name), *args]) == 0
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    record = json.loads((tmp_path / "a" / "training.json").read_text())
    assert record["seed"] == 3 and "train_mini_clap.py" in record["command"]
