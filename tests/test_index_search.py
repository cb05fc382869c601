import json

import soundfile as sf
from helpers import run_cli, write_tone_scene

from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.text import TextEncoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import ModelBundle


def _folder(tmp_path):
    folder = tmp_path / "library"
    (folder / "2026").mkdir(parents=True)
    write_tone_scene(folder / "probe.wav", seconds=3.0, tone_at=(0, 3))
    for i in range(2):
        write_tone_scene(folder / "2026" / f"noise{i}.flac", seconds=7.0, tone_at=(100, 100), seed=i)
    return folder


def _summary(result):
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_index_is_incremental_by_content(tiny_model, tmp_path):
    folder = _folder(tmp_path)
    model = ["--model", str(tiny_model)]
    assert "3 added, 0 changed, 0 unchanged, 0 removed, 0 failed" in _summary(run_cli("index", str(folder), *model))
    assert "0 added, 0 changed, 3 unchanged" in _summary(run_cli("index", str(folder), *model))
    write_tone_scene(folder / "2026" / "noise0.flac", seconds=7.0, tone_at=(1, 2), seed=9)  # new content
    (folder / "2026" / "noise1.flac").unlink()
    (folder / "broken.wav").write_text("not audio")
    result = run_cli("index", str(folder), *model)
    assert "2 files indexed" in _summary(result)
    assert "0 added, 1 changed, 1 unchanged, 1 removed, 1 failed" in _summary(result)
    assert "skipped broken.wav" in result.stderr
    assert list((folder / ".streamdetect").glob("index-*.npz"))


def test_search_ranks_files_by_their_best_window(tiny_model, tmp_path):
    folder = _folder(tmp_path)
    assert run_cli("index", str(folder), "--model", str(tiny_model)).returncode == 0
    result = run_cli("search", "a dog barking", "--dir", str(folder), "--model", str(tiny_model), "--json")
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    # the reported best window and score are what the model gives for that window (index stores float16)
    bundle = ModelBundle.load(tiny_model)
    text = TextEncoder(bundle, RuntimeOptions(device="cpu"))(["a dog barking"])[0]
    encoder, frontend = open_audio_encoder(bundle, RuntimeOptions()), LogMelFrontend(bundle.frontend_params)
    for hit in hits:
        audio, sr = sf.read(folder / hit["path"], dtype="float32")
        window = audio[int(hit["start_s"] * sr) : int(hit["end_s"] * sr)]
        direct = float(encoder(frontend([window]))[0] @ text)
        assert abs(direct - hit["score"]) < 5e-3

    like = run_cli("search", "--like", str(folder / "probe.wav"), "--dir", str(folder), "--model", str(tiny_model),
                   "--json", "--top", "1")
    (best,) = [json.loads(line) for line in like.stdout.splitlines()]
    assert best["path"] == "probe.wav" and best["score"] > 0.999


def test_search_without_index_or_query_explains(tiny_model, tmp_path):
    folder = _folder(tmp_path)
    result = run_cli("search", "rain", "--dir", str(folder), "--model", str(tiny_model))
    assert result.returncode == 2 and f"streamdetect index {folder}" in result.stderr
    both = run_cli("search", "--dir", str(folder), "--model", str(tiny_model))
    assert both.returncode == 2 and "--like" in both.stderr
