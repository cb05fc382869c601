import json

import numpy as np
import soundfile as sf
import yaml
from helpers import run_cli, write_config, write_tone_scene

SR = 48_000


def _data(tmp_path):
    pos = tmp_path / "positives" / "dog"
    pos.mkdir(parents=True)
    for i in range(4):  # a 3 kHz tone in noise raises the tiny model's "a dog barking" score
        write_tone_scene(pos / f"p{i}.wav", seconds=6.0, tone_at=(1.5, 5.0), seed=10 + i)
    neg = tmp_path / "negatives"
    neg.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        sf.write(neg / f"n{i}.wav", (0.05 * rng.standard_normal(20 * SR)).astype(np.float32), SR)
    return tmp_path / "positives", neg


def test_calibrated_threshold_separates_positives_from_negatives(tiny_model, tmp_path):
    positives, negatives = _data(tmp_path)
    cfg = write_config(tmp_path / "home.yaml", tiny_model, [
        {"label": "dog", "prompts": ["a dog barking"], "threshold": 0.9},
        {"label": "bell", "prompts": ["a bell"], "threshold": 0.5}])
    result = run_cli("calibrate", "--config", str(cfg), "--positives", str(positives), "--negatives",
                     str(negatives), "--target-precision", "1.0")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "home.calibrated.yaml"
    assert out.is_file() and "wrote" in result.stdout
    new = yaml.safe_load(out.read_text())
    assert new["events"][1]["threshold"] == 0.5  # no positives for bell: kept, and said so
    assert "kept the old threshold for bell" in result.stderr
    threshold = new["events"][0]["threshold"]
    assert threshold != 0.9
    dog_line = next(line for line in result.stdout.splitlines() if line.startswith("dog"))
    assert dog_line.split()[3:5] == ["1.000", "1.000"]  # precision, recall on the calibration data

    # the new config really detects every positive and stays silent on the negatives (one run, every file a
    # source named after it)
    jsonl = tmp_path / "events.jsonl"
    new["sinks"] = [{"type": "jsonl", "path": str(jsonl)}]
    new["sources"] = [{"type": "file", "name": wav.name, "path": str(wav)}
                      for wav in sorted((positives / "dog").iterdir()) + sorted(negatives.iterdir())]
    out.write_text(yaml.safe_dump(new))
    run = run_cli("run", "--config", str(out))
    assert run.returncode == 0, run.stderr
    assert all(f"{wav}: " in run.stderr for wav in ("p0.wav", "p3.wav", "n0.wav", "n2.wav"))  # all were heard
    starts = [json.loads(line) for line in jsonl.read_text().splitlines() if '"start"' in line]
    assert sorted({r["stream"] for r in starts if r["label"] == "dog"}) == [f"p{i}.wav" for i in range(4)]

    again = run_cli("calibrate", "--config", str(cfg), "--positives", str(positives), "--negatives",
                    str(negatives), "--target-precision", "1.0")
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites without --in-place
    in_place = run_cli("calibrate", "--config", str(cfg), "--positives", str(positives), "--negatives",
                       str(negatives), "--max-false-alarms-per-hour", "0", "--in-place")
    assert in_place.returncode == 0, in_place.stderr
    assert yaml.safe_load(cfg.read_text())["events"][0]["threshold"] != 0.9
    assert cfg.read_text().startswith("# calibrated by streamdetect")
