import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mini import scenes as make_scenes

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mini.scenes", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_synthetic_scenes_are_reproducible_and_labelled(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        result = _run("--synthetic", "--out", str(out), "--n", "3", "--duration", "8", "--seed", seed)
        assert result.returncode == 0, result.stderr
    assert _digest(a) == _digest(b) and _digest(a) != _digest(c)
    rows = [line.split("\t") for line in (a / "labels.tsv").read_text().splitlines()]
    assert rows[0] == ["filename", "onset", "offset", "event_label"] and len(rows) > 3
    for name, onset, offset, label in rows[1:]:
        audio, sr = sf.read(a / name)
        assert sr == 48_000 and audio.size == 8 * sr
        assert 0 <= float(onset) < float(offset) <= 8.0 and label in {"tone", "chirp", "clicks"}


def test_event_is_mixed_at_the_requested_snr():
    rng = np.random.default_rng(0)
    background = (0.05 * rng.standard_normal(48_000 * 4)).astype(np.float32)
    clip = np.sin(2 * np.pi * 1000 * np.arange(48_000) / 48_000).astype(np.float32)
    scene, placed = make_scenes.make_scene(rng, background, {"tone": [("t", clip)]}, 1, (6.0, 6.0))
    (event,) = placed
    start = int(event.onset * 48_000)
    added = scene[start : start + clip.size].astype(np.float64) - background[start : start + clip.size]
    snr = 10 * np.log10(np.mean(added**2) / np.mean(background[start : start + clip.size].astype(np.float64) ** 2))
    assert snr == pytest.approx(6.0, abs=0.05) and event.offset - event.onset == pytest.approx(1.0)


def test_folder_per_class_input(tmp_path):
    for label in ("dog", "bell"):
        (tmp_path / "events" / label).mkdir(parents=True)
        t = np.arange(22_050) / 22_050
        sf.write(tmp_path / "events" / label / "x.wav", np.sin(2 * np.pi * 500 * t), 22_050)
    (tmp_path / "bg").mkdir()
    sf.write(tmp_path / "bg" / "n.flac", 0.01 * np.random.default_rng(1).standard_normal(16_000 * 3), 16_000)
    result = _run("--events", str(tmp_path / "events"), "--backgrounds", str(tmp_path / "bg"), "--out",
                  str(tmp_path / "out"), "--n", "2", "--duration", "5")
    assert result.returncode == 0, result.stderr
    labels = {line.split("\t")[3] for line in (tmp_path / "out" / "labels.tsv").read_text().splitlines()[1:]}
    assert labels <= {"dog", "bell"} and labels
    assert _run("--out", str(tmp_path / "o2")).returncode == 2
