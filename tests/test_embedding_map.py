import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR = 48_000


def _tone(path, freq, seconds=2.0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "embedding_map.py"), *args], capture_output=True,
                          text=True, timeout=600)


def _check_pngs(*paths):
    from matplotlib.image import imread

    for path in paths:
        image = imread(path)
        assert path.stat().st_size > 20_000 and image.shape[0] > 500
        assert image[..., :3].std() > 0.05  # not a blank canvas


def test_folder_per_class_with_major_categories(tiny_model, tmp_path):
    data = tmp_path / "data"
    for major, label, freq in (("music", "low", 300), ("music", "high", 3000), ("machine", "hum", 100)):
        (data / major / label).mkdir(parents=True)
        for i in range(3):
            _tone(data / major / label / f"{label}{i}.wav", freq * (1 + 0.05 * i))
    out, heat, js = tmp_path / "map.png", tmp_path / "heat.png", tmp_path / "map.json"
    result = _run(str(data), "--model", str(tiny_model), "--out", str(out), "--heatmap", str(heat), "--json", str(js))
    assert result.returncode == 0, result.stderr
    report = json.loads(js.read_text())
    assert set(report["per_class"]) == {"low", "high", "hum"}
    assert all(0.0 <= v <= 1.0 for v in report["per_class"].values())
    wrong = sum(n for _, _, n in report["confusions"])
    assert report["top1"] == (9 - wrong) / 9  # accuracy and confusions agree
    assert "zero-shot top-1 accuracy" in result.stdout
    _check_pngs(out, heat)


def test_esc50_layout(tiny_model, tmp_path):
    data = tmp_path / "esc"
    (data / "audio").mkdir(parents=True)
    (data / "meta").mkdir()
    rows = []
    for target, category, freq in ((0, "dog", 500), (11, "rain", 2000), (41, "chainsaw", 120)):
        for i in range(2):
            name = f"1-{target}-{i}.wav"
            _tone(data / "audio" / name, freq + 10 * i)
            rows.append({"filename": name, "fold": 1, "target": target, "category": category})
    with open(data / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["filename", "fold", "target", "category"])
        writer.writeheader()
        writer.writerows(rows)
    js = tmp_path / "m.json"
    result = _run(str(data), "--model", str(tiny_model), "--out", str(tmp_path / "m.png"), "--heatmap",
                  str(tmp_path / "h.png"), "--json", str(js), "--prompt-template", "This is a sound of {}.")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(js.read_text())["per_class"]) == {"dog", "rain", "chainsaw"}
    _check_pngs(tmp_path / "m.png", tmp_path / "h.png")
