import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a UMAP fit (numba compiles its kernels first)
SR = 48_000

# mini/embedding_map.py's main() for each dataset, in one interpreter: the UMAP fit's numba kernels are compiled
# at the first fit (about 12 s on 2 cores), so one process serves both layouts.
MAP_EACH = """
import contextlib, io, json, sys
from mini import embedding_map

results = {}
for name, argv in json.loads(sys.argv[1]).items():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = embedding_map.main(argv)
    results[name] = {"rc": rc, "stdout": out.getvalue()}
print("RESULTS " + json.dumps(results))
"""


def _tone(path, freq, seconds=2.0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


def _check_pngs(*paths):
    from matplotlib.image import imread

    for path in paths:
        image = imread(path)
        assert path.stat().st_size > 20_000 and image.shape[0] > 500
        assert image[..., :3].std() > 0.05  # not a blank canvas


def _folders(tmp):
    """DIR/<major category>/<class>/<audio>: three classes of three tones each."""
    data = tmp / "data"
    for major, label, freq in (("music", "low", 300), ("music", "high", 3000), ("machine", "hum", 100)):
        (data / major / label).mkdir(parents=True)
        for i in range(3):
            _tone(data / major / label / f"{label}{i}.wav", freq * (1 + 0.05 * i))
    return data


def _esc50(tmp):
    """ESC-50's layout: audio/ and meta/esc50.csv naming each file's fold, target and category."""
    data = tmp / "esc"
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
    return data


@pytest.fixture(scope="module")
def maps(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("maps")
    files = {"folders": (tmp / "map.png", tmp / "heat.png", tmp / "map.json"),
             "esc50": (tmp / "m.png", tmp / "h.png", tmp / "m.json")}
    jobs = {"folders": [str(_folders(tmp)), "--model", str(tiny_model)],
            "esc50": [str(_esc50(tmp)), "--model", str(tiny_model), "--prompt-template", "This is a sound of {}."]}
    for name, (out, heat, js) in files.items():
        jobs[name] += ["--out", str(out), "--heatmap", str(heat), "--json", str(js)]
    result = subprocess.run([sys.executable, "-c", MAP_EACH, json.dumps(jobs)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))[8:])
    return {name: (results[name], *files[name]) for name in jobs}


def test_folder_per_class_with_major_categories(maps):
    result, out, heat, js = maps["folders"]
    assert result["rc"] == 0
    report = json.loads(js.read_text())
    assert set(report["per_class"]) == {"low", "high", "hum"}
    assert all(0.0 <= v <= 1.0 for v in report["per_class"].values())
    wrong = sum(n for _, _, n in report["confusions"])
    assert report["top1"] == (9 - wrong) / 9  # accuracy and confusions agree
    assert "zero-shot top-1 accuracy" in result["stdout"]
    _check_pngs(out, heat)


def test_esc50_layout(maps):
    result, out, heat, js = maps["esc50"]
    assert result["rc"] == 0
    assert set(json.loads(js.read_text())["per_class"]) == {"dog", "rain", "chainsaw"}
    _check_pngs(out, heat)
