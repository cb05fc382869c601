"""The embedding log: every analysed window's embedding on disk, searchable by text or example and by time."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import numpy as np
from helpers import run_cli, run_cli_without_torch, window_result, write_config, write_tone_scene

from streamdetect.analysis.embedding_log import log_key, read_log, stretches
from streamdetect.daemon.embedding_log import EmbeddingLogWriter
from streamdetect.embed.clip import clip_embedding
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import ModelBundle


def search(log_dir, model, *args):
    result = run_cli("search", "--log", str(log_dir), "--model", str(model), "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_cli_run_logs_windows_and_search_finds_the_tone_stretch(tiny_model, tmp_path):
    scene = write_tone_scene(tmp_path / "scene.wav", seconds=16.0, tone_at=(6.0, 10.0))
    log_dir = tmp_path / "emb"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a dog"], "threshold": 1.0}],
                       sinks=[], embedding_log={"dir": str(log_dir), "max_days": 7})
    result = run_cli("run", "--config", str(cfg), "--input", str(scene))
    assert result.returncode == 0, result.stderr
    bundle = ModelBundle.load(tiny_model)
    logged = read_log(log_dir, log_key(bundle))
    assert logged.embeddings.dtype == np.float16 and logged.embeddings.shape == (14, bundle.embedding_dim)
    assert list(logged.starts_s) == [float(i) for i in range(14)] and set(logged.streams) == {"scene.wav"}
    assert abs(logged.wall[-1] - time.time()) < 600

    example = write_tone_scene(tmp_path / "tone.wav", seconds=3.0, tone_at=(0.0, 3.0), seed=5)
    hits = search(log_dir, tiny_model, "--like", str(example), "--top", "3")
    best = hits[0]
    assert best["stream"] == "scene.wav" and best["windows"] >= 2
    assert 4.0 <= best["start_s"] <= 7.0 and 9.0 <= best["end_s"] <= 12.0, hits  # the tone is at 6-10 s
    assert all(h["score"] <= best["score"] for h in hits)
    assert search(log_dir, tiny_model, "a chainsaw", "--top", "2")  # the text query path answers too

    none = run_cli("search", "--log", str(tmp_path / "nothing"), "--model", str(tiny_model), "a chainsaw")
    assert none.returncode == 2 and "no embedding log" in none.stderr


def test_since_and_until_select_by_wall_time(tiny_model, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    tone = write_tone_scene(tmp_path / "tone.wav", seconds=3.0, tone_at=(0.0, 3.0))
    noise = write_tone_scene(tmp_path / "noise.wav", seconds=3.0, tone_at=(9.0, 9.0), seed=2)
    frontend, encoder = LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle)
    tone_emb, noise_emb = (clip_embedding(p, frontend, encoder) for p in (tone, noise))
    log_dir = tmp_path / "emb"
    writer = EmbeddingLogWriter(log_dir, log_key(bundle), max_days=30)
    now = time.time()
    old = now - timedelta(days=10).total_seconds()
    writer.window(window_result("old-mic", 100.0, 103.0, old, tone_emb))  # the tone was heard 10 days ago ...
    writer.window(window_result("old-mic", 101.0, 104.0, old, tone_emb))
    writer.window(window_result("new-mic", 5.0, 8.0, now, noise_emb))  # ... recently only noise
    writer.close()
    assert writer.written == 3 and writer.dropped == 0

    hits = search(log_dir, tiny_model, "--like", str(tone))
    assert hits[0]["stream"] == "old-mic" and hits[0]["windows"] == 2 and hits[0]["start_s"] == 100.0
    assert hits[0]["end_s"] == 104.0 and hits[0]["score"] > 0.99
    recent = search(log_dir, tiny_model, "--like", str(tone), "--since", "7d")
    assert [h["stream"] for h in recent] == ["new-mic"]
    older = search(log_dir, tiny_model, "--like", str(tone), "--until", "7d")
    assert [h["stream"] for h in older] == ["old-mic"]
    bad = run_cli("search", "--log", str(log_dir), "--model", str(tiny_model), "x", "--since", "last week")
    assert bad.returncode == 2 and "7d" in bad.stderr


def test_writer_is_bounded_and_prunes_old_chunks(tmp_path):
    writer = EmbeddingLogWriter(tmp_path, "k" * 16, max_days=1, queue_windows=2, flush_s=3600)
    writer.queue.put(None)  # stop the writer first, so nothing drains the queue
    writer._thread.join(10)
    for i in range(5):
        writer.window(window_result("s", float(i), i + 3.0, time.time(), np.ones(4)))
    assert writer.dropped == 3 and writer.queue.qsize() == 2  # nothing blocks: the rest is counted
    folder = tmp_path / ("k" * 16) / "s"
    folder.mkdir(parents=True)
    stale = folder / "20200101T00-1.npz"
    np.savez(stale, stream=np.array("s"))
    while not writer.queue.empty():  # let the first writer end, releasing the log's lock
        writer.queue.get_nowait()
    writer.close()
    fresh = EmbeddingLogWriter(tmp_path, "k" * 16, max_days=1)
    fresh.close()
    assert not stale.exists()


def test_stretches_merge_adjacent_windows_of_one_stream_only():
    from streamdetect.analysis.embedding_log import LoggedWindows

    streams = np.array(["a"] * 6 + ["b"] * 2, dtype=object)
    starts = np.array([0, 1, 2, 3, 4, 5, 0, 1], float)
    logged = LoggedWindows(streams, starts, starts + 3, np.arange(8.0), np.zeros((8, 2), np.float16))
    scores = np.array([0.1, 0.8, 0.9, 0.88, 0.2, 0.85, 0.7, 0.5])
    found = list(stretches(logged, scores, top=5, drop=0.5))  # joins above 0.9 - 0.5 * (0.9 - 0.75)
    assert [(s.stream, s.start_s, s.end_s, s.windows) for s in found] == [
        ("a", 2.0, 6.0, 2), ("a", 5.0, 8.0, 1), ("a", 1.0, 4.0, 1), ("b", 0.0, 3.0, 1), ("b", 1.0, 4.0, 1)]


def test_run_with_the_new_features_never_imports_torch(tiny_model, tmp_path):
    import os
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    wav = write_tone_scene(tmp_path / "t.wav", seconds=4.0)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a dog"], "threshold": -1.0}],
                       sinks=[{"type": "sqlite", "path": str(tmp_path / "e.db")}],
                       embedding_log={"dir": str(tmp_path / "emb")}, control={"port": port})
    result = run_cli_without_torch("run", "--config", str(cfg), "--input", str(wav),
                                   env={**os.environ, "STREAMDETECT_CONTROL_TOKEN": "t0ken"})
    assert "control API on" in result.stderr and list((tmp_path / "emb").glob("*/*/*.npz"))


def test_a_stretch_keeps_the_best_windows_twin_that_scores_one_float32_ulp_lower():
    from streamdetect.analysis.embedding_log import LoggedWindows, stretches

    best = np.float32(0.8)
    twin = np.nextafter(best, np.float32(0))  # the same window logged twice, scored one ulp apart
    logged = LoggedWindows(np.array(["mic", "mic", "mic"], dtype=object), np.array([0.0, 1.0, 10.0]),
                           np.array([3.0, 4.0, 13.0]), np.array([100.0, 101.0, 110.0]),
                           np.zeros((3, 4), np.float16))
    found = list(stretches(logged, np.array([best, twin, best], np.float32), top=1))
    assert found[0].windows == 2 and found[0].start_s == 0.0 and found[0].end_s == 4.0
