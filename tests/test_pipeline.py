import json
import os
import subprocess
import sys
import threading
from datetime import datetime

import numpy as np
import pytest
from helpers import (
    FakeEncoder,
    file_windows,
    free_port,
    make_detector,
    run_cli,
    run_cli_without_torch,
    split_threshold,
    write_config,
    write_tone_scene,
)

from streamdetect.analysis.replay import Replay, run_source
from streamdetect.config import parse_config
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.text import TextEncoder
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.scoring import score
from streamdetect.prompts.bank import PromptBank
from streamdetect.prompts.cache import PromptCache
from streamdetect.sources.file import FileOptions, FileSource

EVENTS = [
    {"label": "birdsong", "prompts": ["birdsong in the forest", "a bird chirping"], "threshold": 0.0},
    {"label": "dog", "prompts": ["a dog barking"], "threshold": 0.0},
    {"label": "alarm", "prompts": ["smoke alarm beeping"], "threshold": 0.0},
]


def window_scores(model, wav, events=EVENTS):
    """Scores of every window of a file, computed directly from the library's stages."""
    detector, _ = make_detector(model, events)
    windows = file_windows(wav)
    return windows, detector.scores(windows).event


def expected_events(windows, scores, threshold):
    """Runs of windows at or above threshold, for min_windows=1, no hysteresis, no cooldown."""
    out, active, last_end = [], None, float("-inf")
    for w, s in zip(windows, scores, strict=True):
        if s >= threshold and active is None:
            active = [max(w.start_s, last_end), w.end_s]
        elif s >= threshold:
            active[1] = w.end_s
        elif active is not None:
            out.append(tuple(active))
            last_end, active = active[1], None
    if active is not None:
        out.append(tuple(active))
    return out


def test_cli_run_on_a_file_writes_the_expected_jsonl(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=14.0, sample_rate=44_100, channels=2)
    windows, scores = window_scores(tiny_model, wav)
    bird = scores[:, 0]
    ordered = np.unique(bird)
    threshold = float((ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2)  # between two scores
    events = [{**EVENTS[0], "threshold": threshold, "hysteresis": 0.0, "cooldown_s": 0.0},
              {**EVENTS[1], "threshold": 1.0}, {**EVENTS[2], "threshold": 1.0}]
    out = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, events,  # the encoder window_scores used
                       sinks=[{"type": "jsonl", "path": str(out)}, {"type": "stdout"}], runtime={"device": "cpu"})
    result = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = expected_events(windows, bird, threshold)
    assert expected, "the scene should produce at least one event"
    starts = [r for r in records if r["phase"] == "start"]
    ends = [r for r in records if r["phase"] == "end"]
    assert [x for r in ends for x in (r["start_s"], r["end_s"])] == pytest.approx([x for e in expected for x in e])
    assert [r["start_s"] for r in starts] == pytest.approx([e[0] for e in expected])
    for start, end in zip(starts, ends, strict=True):
        assert start["id"] == end["id"] and start["label"] == "birdsong" and start["stream"] == "scene.wav"
        assert end["peak_score"] >= threshold and end["start_s"] <= end["peak_time_s"] <= end["end_s"]
        assert len(end["top"]) == 3 and {t["label"] for t in end["top"]} == {"birdsong", "dog", "alarm"}
        datetime.fromisoformat(end["time"])
    assert result.stdout.count("birdsong START") == len(expected)  # the stdout sink saw the same records
    assert "14.0 s of audio, 12 windows" in result.stderr


def test_short_recording_is_analysed_once(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "short.wav", seconds=1.0, tone_at=(0.2, 0.6))
    detector, sink = make_detector(tiny_model, [{**EVENTS[0], "threshold": -1.0}])
    summary = run_source(detector, FileSource(FileOptions(path=str(wav)), 48_000), threading.Event())
    assert summary.windows == 1
    assert [(r.phase, r.start_s, r.end_s) for r in sink.records] == [("start", 0.0, None), ("end", 0.0, 1.0)]


def test_two_detectors_and_interleaved_streams_do_not_share_state(tiny_model, tmp_path):
    wav_a = write_tone_scene(tmp_path / "a.wav", seconds=9.0, tone_at=(2, 5), seed=1)
    wav_b = write_tone_scene(tmp_path / "b.wav", seconds=9.0, tone_at=(5, 8), seed=2)
    _, scores_a = window_scores(tiny_model, wav_a)
    threshold = split_threshold(scores_a[:, 0])
    events = [{**EVENTS[0], "threshold": threshold, "hysteresis": 0.0, "cooldown_s": 0.0}]

    def alone(wav):
        det, sink = make_detector(tiny_model, events)
        run_source(det, FileSource(FileOptions(path=str(wav)), 48_000), threading.Event())
        return [(r.phase, r.start_s, r.end_s) for r in sink.records]

    det, sink = make_detector(tiny_model, events, runtime={"device": "cpu", "batch_size": 3})
    streams = {w: Replay(det, det.open_stream(w.name, live=False)) for w in (wav_a, wav_b)}
    gens = {w: FileSource(FileOptions(path=str(w), block_s=0.7), 48_000).blocks(threading.Event()) for w in streams}
    for blocks in zip(*gens.values(), strict=True):  # interleave the two files block by block
        for w, block in zip(gens, blocks, strict=True):
            streams[w].push(block)
    for w in streams:
        streams[w].finish()
    for w in streams:
        got = [(r.phase, r.start_s, r.end_s) for r in sink.records if r.stream == w.name]
        assert got == alone(w)


def test_scoring_vetoes_event_when_a_negative_outscores_it():
    bank = PromptBank(labels=("bird", "dog"), events=np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32),
                      negatives=np.array([[0.6, 0.8, 0], [0, 0, 1.0]], np.float32),
                      negative_owner=np.array([0, 1]), negative_texts=("wind", "rain"))
    window = np.array([[0.5, 0.7, 0.5]], np.float32)
    s = score(window / np.linalg.norm(window), bank)
    # bird 0.5 < wind 0.86 -> vetoed; dog 0.7 > rain 0.5 -> kept
    assert s.vetoed_by == [["wind", None]]
    assert [t.label for t in s.top(0)] == ["dog", "bird"]


def test_prompt_embeddings_are_cached_per_model(tiny_model, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    calls = []

    def embedder():
        encoder = TextEncoder(bundle, RuntimeOptions(device="cpu"))
        calls.append(1)
        return encoder

    events = parse_config({"events": EVENTS}).events
    cache = PromptCache(tmp_path / "cache", bundle.text_key)
    first = PromptBank.build(events, cache, embedder)
    second = PromptBank.build(events, cache, embedder)
    assert calls == [1]  # the second build never opened the text encoder
    np.testing.assert_array_equal(first.events, second.events)
    other = PromptCache(tmp_path / "cache", "f" * 64)  # another model: nothing cached for it
    assert other.get("a dog barking") is None and cache.get("a dog barking") is not None
    ensemble = TextEncoder(bundle, RuntimeOptions(device="cpu"))(EVENTS[0]["prompts"])
    mean = ensemble.mean(axis=0)
    np.testing.assert_allclose(first.events[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_run_path_never_imports_torch(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "t.wav", seconds=4.0)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, EVENTS, sinks=[{"type": "jsonl", "path": str(tmp_path / "o")}])
    run_cli_without_torch("run", "--config", str(cfg), "--input", str(wav))


def test_missing_model_directory_prints_the_export_command(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "models" / "clap", EVENTS)
    result = run_cli("run", "--config", str(cfg), "--input", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    assert f"streamdetect export --model laion/clap-htsat-unfused --out {tmp_path / 'models' / 'clap'}" in result.stderr
    assert "cfg.yaml: model" in result.stderr


def test_invalid_config_stops_before_anything_starts(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("events:\n  - label: a\n    prompts: [x]\n    threshold: 1.7\n")
    result = run_cli("run", "--config", str(cfg), "--input", "whatever.wav")
    assert result.returncode == 2
    assert "bad.yaml: events[0].threshold: expected less than or equal to 1 (found 1.7)" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_cleanly_and_closes_open_events(tiny_model, tmp_path):
    import signal
    import time

    wav = write_tone_scene(tmp_path / "long.wav", seconds=900.0, sample_rate=16_000)
    out = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [{**EVENTS[0], "threshold": -1.0}],
                       sinks=[{"type": "jsonl", "path": str(out)}], runtime={"device": "cpu", "batch_size": 1})
    proc = subprocess.Popen([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input", str(wav)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["phase"] for r in records] == ["start", "end"]
    assert 0 < records[1]["end_s"] < 900.0  # stopped early, yet the open event was closed


def test_default_sink_is_jsonl_on_stdout(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "one.wav", seconds=2.0)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [{**EVENTS[1], "threshold": -1.0}])
    result = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["label"], r["phase"], r["start_s"], r["end_s"]) for r in records] == [
        ("dog", "start", 0.0, None), ("dog", "end", 0.0, 2.0)]


def test_energy_gate_skips_quiet_windows_without_the_encoder(tiny_model, tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    audio = (1e-4 * rng.standard_normal(48_000 * 12)).astype(np.float32)  # about -80 dBFS
    audio[48_000 * 5 : 48_000 * 7] = 0.1 * rng.standard_normal(48_000 * 2)  # about -20 dBFS for 2 s
    wav = tmp_path / "quiet.wav"
    sf.write(wav, audio, 48_000, subtype="FLOAT")
    encoder = FakeEncoder.for_model(tiny_model)  # counts the windows it is given
    det, sink = make_detector(tiny_model, [{**EVENTS[0], "threshold": -0.99, "hysteresis": 0.0, "cooldown_s": 0.0}],
                              encoder=encoder, gate={"min_dbfs": -50.0})
    calls = encoder.batch_sizes
    summary = run_source(det, FileSource(FileOptions(path=str(wav)), 48_000), threading.Event())
    # windows starting at 3..6 s overlap the loud part (5-7 s); the other 6 of 10 are gated
    assert summary.windows == 10 and summary.gated_windows == 6 and sum(calls) == 4
    assert [(r.phase, r.start_s, r.end_s) for r in sink.records] == [("start", 3.0, None), ("end", 3.0, 9.0)]


def test_log_json_writes_one_object_per_line(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "a.wav", seconds=3.0)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, EVENTS, sinks=[{"type": "jsonl", "path": str(tmp_path / "o")}])
    result = run_cli("run", "--config", str(cfg), "--input", str(wav), "--log-json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any("3.0 s of audio" in x["message"] for x in lines)


def windows_scored(port: int) -> float:
    """The detector's own count of scored windows, read from its Prometheus endpoint."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("streamdetect_windows_total{"))


def test_sighup_reloads_events_and_rejects_an_invalid_config(tiny_model, tmp_path):
    import signal
    import time

    import yaml

    wav = write_tone_scene(tmp_path / "long.wav", seconds=1200.0, sample_rate=16_000)
    out = tmp_path / "events.jsonl"
    never = {**EVENTS[0], "threshold": 1.0}
    port = free_port()
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [never], sinks=[{"type": "jsonl", "path": str(out)}],
                       runtime={"device": "cpu", "batch_size": 1}, metrics={"port": port})
    proc = subprocess.Popen([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input", str(wav)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()

    def wait_for(predicate, what):
        deadline = time.monotonic() + 60
        while not predicate():
            assert proc.poll() is None and time.monotonic() < deadline, f"{what}\n" + "".join(log)
            time.sleep(0.05)

    try:
        wait_for(lambda: any("metrics on" in line for line in log), "never started")
        # "started" is not "scoring": on a loaded machine the reload could land before the first window, and the
        # new event would then start at 0 s. Reload only once the counter shows scored windows.
        wait_for(lambda: windows_scored(port) >= 2, "no window was scored")
        data = yaml.safe_load(cfg.read_text())
        data["events"].append({**EVENTS[1], "threshold": -1.0})  # a new event that fires at once
        cfg.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: out.exists() and '"dog"' in out.read_text(), "the new event never fired")
        cfg.write_text("events:\n  - label: broken\n    threshold: 7\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("reload rejected" in line for line in log), "invalid config not reported")
        assert proc.poll() is None  # still running on the previous config
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(10)
    assert proc.returncode == 0, "".join(log)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["label"], r["phase"]) for r in records] == [("dog", "start"), ("dog", "end")]
    assert records[0]["start_s"] > 0  # the new event started mid-stream, at the reload
    assert any("events[0].threshold" in line for line in log)


def test_blas_runs_on_one_thread_unless_the_user_says_otherwise():
    """An idle OpenBLAS pool would spin on the cores the encoder needs; a user's own setting wins."""
    code = ("import numpy, threadpoolctl; from streamdetect.embed.encoder.device import limit_blas_threads; limit_blas_threads(); "
            "print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}))")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert ours.stdout.strip() == "[1]", ours.stdout + ours.stderr
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**env, "OPENBLAS_NUM_THREADS": "2"})
    # OpenBLAS never starts more threads than the CPUs it may run on (one, under `taskset -c 0`)
    assert theirs.stdout.strip() == f"[{min(2, len(os.sched_getaffinity(0)))}]", theirs.stdout + theirs.stderr


def test_front_end_threads_from_config_give_the_same_scores_and_events(tiny_model, tmp_path):
    from streamdetect.analysis.replay import score_file

    wav = write_tone_scene(tmp_path / "scene.wav", seconds=10.0)
    one, _ = make_detector(tiny_model, EVENTS, runtime={"device": "cpu", "batch_size": 8})
    three, _ = make_detector(tiny_model, EVENTS, runtime={"device": "cpu", "batch_size": 8, "frontend_threads": 3})
    assert (one.scorer.frontend.threads, three.scorer.frontend.threads) == (1, 3)
    used, own = [], three.scorer.frontend._own
    three.scorer.frontend._own = lambda: used.append(threading.current_thread().name) or own()
    a, b = score_file(one, wav), score_file(three, wav)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.events == b.events
    assert used and all(name.startswith("frontend") for name in used)  # the windows went through the pool
