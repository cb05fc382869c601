import csv
import json

import numpy as np
import pytest
import soundfile as sf
from helpers import run_cli, write_config, write_tone_scene

from streamdetect.analysis.scan import Envelope, PooledMel
from streamdetect.embed.clip import clip_embedding, pieces
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import FrontendParams, ModelBundle

SR = 48_000
EVENTS = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 0.0},
          {"label": "rain", "prompts": ["rain on a roof"], "threshold": 0.0}]


def test_scan_writes_csv_of_every_window_and_a_three_panel_plot(tiny_model, tmp_path):
    from matplotlib.image import imread

    wav = write_tone_scene(tmp_path / "scene.wav", seconds=12.0, tone_at=(4, 8))
    cfg = write_config(tmp_path / "c.yaml", tiny_model, EVENTS)
    plot, table = tmp_path / "scan.png", tmp_path / "scan.csv"
    result = run_cli("scan", str(wav), "--config", str(cfg), "--plot", str(plot), "--csv", str(table))
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["start_s", "end_s", "dog", "rain"]
    assert [float(r[0]) for r in rows[1:]] == [float(k) for k in range(10)]
    scores = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.all(np.abs(scores) <= 1) and scores.std(axis=0).min() > 0  # real, varying similarities

    # the same windows through the run path give the same scores
    run = run_cli("run", "--config", str(write_config(tmp_path / "r.yaml", tiny_model, [
        {**EVENTS[0], "threshold": float(np.median(scores[:, 0])), "hysteresis": 0.0, "cooldown_s": 0.0}])),
        "--input", str(wav))
    peaks = [json.loads(line)["peak_score"] for line in run.stdout.splitlines() if '"end"' in line]
    assert peaks and all(any(abs(p - s) < 1e-5 for s in scores[:, 0]) for p in peaks)

    image = imread(plot)
    assert plot.stat().st_size > 30_000 and image.shape[0] > 600 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.1 and len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 500
    assert "scanning scene.wav" in result.stderr  # progress bar


def test_scan_prints_detected_events(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "s.wav", seconds=6.0)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{**EVENTS[0], "threshold": -1.0}])
    result = run_cli("scan", str(wav), "--config", str(cfg), "--csv", str(tmp_path / "x.csv"))
    assert result.returncode == 0 and result.stdout.startswith("dog: 0.0-6.0 s, peak")
    missing = run_cli("scan", str(wav), "--config", str(cfg))
    assert missing.returncode == 2 and "--plot" in missing.stderr


def test_pooled_mel_and_envelope_keep_extremes_with_bounded_size():
    params = FrontendParams()
    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(SR * 30)).astype(np.float32)
    signal[SR * 10] = 0.99
    mel = PooledMel(params, signal.size, max_columns=100)
    env = Envelope(signal.size, columns=100)
    for i in range(0, signal.size, 12_345):  # odd block sizes
        mel.push(signal[i : i + 12_345])
        env.push(signal[i : i + 12_345])
    pooled = mel.result()
    assert pooled.shape[0] == 64 and 50 <= pooled.shape[1] <= 100
    whole = PooledMel(params, signal.size, max_columns=10**9)
    whole.push(signal)
    full = whole.result()
    assert np.isclose(full.max(), pooled.max(), atol=1e-3)
    lo, hi = env.result()
    assert lo.size == hi.size == 100 and hi.max() == pytest.approx(0.99) and lo.min() == signal.min()


def test_long_clips_are_tagged_from_all_their_pieces(tiny_model, tmp_path):
    long = write_tone_scene(tmp_path / "long.wav", seconds=25.0, tone_at=(12, 18))
    chunks = list(pieces(long, SR, 10.0))
    assert [c.size for c in chunks] == [10 * SR, 10 * SR, 5 * SR]
    bundle = ModelBundle.load(tiny_model)
    frontend = LogMelFrontend(bundle.frontend_params)
    encoder = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp32"))
    pooled = clip_embedding(long, frontend, encoder)
    each = encoder(frontend(chunks))
    mean = each.mean(axis=0)
    np.testing.assert_allclose(pooled, mean / np.linalg.norm(mean), atol=1e-5)


def test_tag_cli_ranks_labels_per_file_and_skips_unreadable_ones(tiny_model, tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    write_tone_scene(folder / "a.wav", seconds=4.0)
    write_tone_scene(folder / "sub" / "b.flac", seconds=14.0)
    (folder / "broken.wav").write_text("not audio")
    sf.write(folder / "notes.txt", np.zeros(10), 8000, format="WAV")  # wrong suffix: ignored
    result = run_cli("tag", str(folder), "--labels", "dog", "rain", "siren", "--top", "2", "--json",
                     "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"].split("/")[-1] for line in lines] == ["a.wav", "b.flac"]
    for line in lines:
        tags = line["tags"]
        assert len(tags) == 2 and tags[0]["cosine"] >= tags[1]["cosine"]
        assert {t["label"] for t in tags} <= {"dog", "rain", "siren"}
        assert 0 < sum(t["probability"] for t in tags) <= 1.0 + 1e-6
    assert "skipped" in result.stderr and "broken.wav" in result.stderr
    table = run_cli("tag", str(folder / "a.wav"), "--config", str(write_config(tmp_path / "c.yaml", tiny_model,
                                                                                   EVENTS)))
    assert table.returncode == 0 and table.stdout.count("\t") == 1 and "dog" in table.stdout
