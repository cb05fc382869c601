"""Detection quality of the committed mini CLAP, through the real export and detector, on held-out recordings.

The mini model (mini/clap/, trained by mini/train.py on the generated world of
mini/world.py) is the one model here whose scores mean something, in that synthetic world only. Every
recording below comes from evaluation seeds the training never drew. The floors sit below the figures measured
when the checkpoint was committed (docs/quality.md) by a margin, so they fail on a real regression of the
pipeline (front end, export, scoring, event logic), not on a rounding change.

The committed checkpoint (1,600 steps, seed 20) and configs/mini.yaml reach issue 20's targets asserted here;
see docs/quality.md for every figure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import built_once
from mini import features as mf
from mini import quality as mq
from mini import world

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def write_held_out(folder: Path) -> None:
    """Every recording the checks use; each set from its own evaluation seed."""
    mq.write_clips(folder / "clips", 1, 8, [*world.CLASSES, world.HELD_OUT])
    mq.write_scenes(folder / "scenes", 2, 5, mq.SOUNDING)
    mq.write_quiet(folder / "quiet", 3, 6)
    mq.write_clips(folder / "calibration", 4, 5, mq.SOUNDING)
    mq.write_quiet(folder / "calibration_quiet", 5, 4)
    mf.confuser_scenes(folder / "confusers", 6, 5)
    mq.write_clips(folder / "example", 7, 1, [world.HELD_OUT])
    mq.write_scenes(folder / "scenes_many", 13, 20, mq.SOUNDING)
    mf.sweep_scenes(folder / "sweeps", 8, 8)
    mq.write_clips(folder / "sirens_calibration", 9, 20, ["siren"])
    mq.write_clips(folder / "sirens", 10, 20, ["siren"])


@pytest.fixture(scope="session")  # session: each test is a unit of work of its own under --dist loadgroup
def held_out(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "mini-held-out", write_held_out)


@pytest.fixture(scope="session")
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
    assert result["top1"] >= 0.9, result  # issue 20's target; measured 0.927 here, 0.942 on the figures' seeds


def test_search_precision_at_5_per_class_name(mini_model, held_out, events):
    index = mq.clip_index(mini_model, held_out / "clips")
    p5 = {e["label"]: mq.precision_at(index, mq.text_query(mini_model, e["prompts"][0]), e["label"]) for e in events}
    assert np.mean(list(p5.values())) >= 0.85, p5  # measured 0.945 here, 0.98 on the figures' seeds


def test_scan_each_prompt_rises_where_its_sound_plays(mini_model, held_out, events):
    det = mq.detector(mini_model, events, mq.mini_scoring())
    result = mq.scene_agreement(det, held_out / "scenes")
    assert result["events"] >= 10
    assert result["own_curve_highest"] >= 0.8, result  # measured 0.95 here, 0.92 on the figures' (chance: 1/11)
    assert result["median_rise"] > 0.4, result  # measured 0.69, 0.63


def test_classes_cluster_in_the_embedding_space(mini_model, held_out):
    assert mq.silhouette(mini_model, held_out / "calibration") >= 0.5  # measured 0.77 here, 0.74 on the figures' seeds


def test_feedback_refinement_raises_precision_at_the_same_recall(mini_model, tmp_path):
    """Oracle verdicts on train scenes refine every mini event; on test scenes precision rises at the thresholds
    picked before (same recall), and more where the refined events' thresholds are swept to the recall they had
    (measured 0.37 -> 0.46 and 0.57, recall 1.0 throughout, AMD EPYC Zen 3)."""
    report = mf.feedback(mini_model, tmp_path / "fbp", seeds=(40, 41))
    before, fixed, same = report["before"], report["after_fixed_thresholds"], report["after_same_recall"]
    assert report["feedback"]["rejected"] >= 1 and report["feedback"]["confirmed"] >= 1, report
    assert fixed["recall"] >= before["recall"] and fixed["precision"] >= before["precision"] + 0.05, json.dumps(report)
    assert same["recall"] >= before["recall"] and same["precision"] >= before["precision"] + 0.1, json.dumps(report)


def test_negatives_cut_the_false_alarms_of_a_confuser(mini_model, held_out):
    """A vague siren prompt ("a sweeping tone") fires on chirps too; the chirps as negatives cut those false
    alarms and keep every siren (measured 8 -> 3 here, 14 -> 12 on the figures' seeds, recall 1.0 throughout)."""
    result = mf.negatives(mini_model, held_out / "confusers")
    before, after = result["before"], result["after"]
    assert after["false_alarms"] <= before["false_alarms"] - 3, result
    assert after["recall"] >= before["recall"], result


def test_an_audio_example_finds_a_sound_no_caption_ever_named(mini_model, held_out):
    """bell was never captioned nor trained on: its name finds none (P@5 0.0); one recording of it finds
    bells (measured 0.4 here, 0.6 on the figures' seeds)."""
    result = mf.query_by_example(mini_model, held_out / "clips", next((held_out / "example" / world.HELD_OUT)
                                                                      .glob("*.wav")))
    assert result["example_p5"] >= max(result["text_p5"].values()) + 0.4, result


def test_evaluate_on_simple_scenes_with_presence_timing(mini_model, held_out, events):
    """Issue 20's target, event F1 0.8, on the largest held-out set (20 scenes, 80 events; measured 0.86, the
    same set as docs/quality.md's figure), with configs/mini.yaml's event logic (3 windows to start, hysteresis
    0.05) tuned on other seeds. On the 5 scenes the other checks use it is 0.97."""
    det = mq.detector(mini_model, events, mq.mini_scoring())
    result = mq.report_evaluate(det, held_out / "scenes_many")
    assert result["timing"] == "presence" and result["event_f1"] >= 0.8, result


def test_softmax_with_background_prompts_cuts_false_alarms_on_scenes_without_the_event(mini_model, held_out):
    """Scenes of chirps and no siren, a vague siren prompt: cosine fires on the chirps; softmax with background
    prompts that name them (and the room tone) does much less, at the same share of calibration sirens kept
    (measured 35 -> 5 false alarms, recall 0.63 -> 0.88 on the figures' seeds)."""
    result = mf.softmax_background(mini_model, held_out / "sirens_calibration", held_out / "sirens",
                                   held_out / "sweeps")
    cosine, softmax = result["cosine"], result["softmax"]
    assert softmax["false_alarms"] <= cosine["false_alarms"] / 2 and cosine["false_alarms"] >= 6, result
    assert softmax["recall"] >= cosine["recall"] - 0.15, result


def test_calibrate_meets_its_target_precision_on_held_out_audio(mini_model, held_out, events):
    negatives = held_out / "calibration_negatives"
    if not negatives.exists():
        shutil.copytree(held_out / "calibration_quiet", negatives)
    result = mf.calibration(mini_model, events, held_out / "calibration", negatives, held_out / "clips",
                            held_out / "quiet", target=0.9)
    assert result["calibrated"] == result["of"], result  # measured 11 of 11
    assert result["held_out_precision"] >= 0.9, result  # measured 0.98 here, 0.94 on the figures' seeds
    assert result["held_out_recall"] >= 0.8, result  # measured 0.94, 0.99


def test_training_is_deterministic_for_a_seed(tmp_path):
    from safetensors.numpy import load_file

    from mini import train as train_mini_clap

    args = ["--steps", "1", "--text-steps", "1", "--pool", "4", "--batch", "4", "--seed", "3"]
    for name in ("a", "b"):
        assert train_mini_clap.main(["--out", str(tmp_path / name), *args]) == 0
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    record = json.loads((tmp_path / "a" / "training.json").read_text())
    assert record["seed"] == 3 and "mini.train" in record["command"]
