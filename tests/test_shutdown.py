"""Daemon shutdown through the CLI: SIGTERM while records still wait behind a slow sink loses none of them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import soundfile as sf
from helpers import write_config

from streamdetect.config import parse_config
from streamdetect.daemon.build import build_detector
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.windows import Windower
from streamdetect.sinks.base import SinkSet

SR = 16_000
PERIOD_S = 60  # the scene repeats every minute: a multiple of the hop, so every minute's windows are identical


def periodic_scene(seconds: int) -> np.ndarray:
    """Noise with a 2 s 3 kHz tone every 6 s: windows alternate between two clearly different kinds."""
    rng = np.random.default_rng(0)
    t = np.arange(PERIOD_S * SR) / SR
    x = 0.05 * rng.standard_normal(t.size)
    on = (t % 6.0) < 2.0
    x[on] += 0.5 * np.sin(2 * np.pi * 3000 * t[on])
    return np.tile(x.astype(np.float32), seconds // PERIOD_S)


def runs_above(scores: np.ndarray, threshold: float) -> int:
    above = scores >= threshold
    return int(above[0]) + int(np.sum(above[1:] & ~above[:-1]))


def busiest_threshold(model, events) -> float:
    """The threshold (between two of the tiny model's actual scores) that starts and ends the most events."""
    config = parse_config({"model": str(model), "events": events, "runtime": {"device": "cpu"}})
    detector = build_detector(config, ModelBundle.load(model), SinkSet([]))
    windower = Windower(3.0, 1.0, 48_000)
    import soxr

    windows = list(windower.push(soxr.resample(periodic_scene(PERIOD_S), SR, 48_000)))
    scores = detector.scores(windows).event[:, 0]
    ordered = np.unique(scores)
    candidates = (ordered[1:] + ordered[:-1]) / 2
    best = max(candidates, key=lambda c: runs_above(scores, c))
    assert runs_above(scores, best) >= 4, "the tiny model no longer separates the tone from the noise"
    return float(best)


def test_sigterm_with_records_queued_behind_a_slow_sink_delivers_every_one(tiny_model, tmp_path):
    events = [{"label": "tone", "prompts": ["a dog barking"], "threshold": 0.0, "hysteresis": 0.0,
               "cooldown_s": 0.0}]
    events[0]["threshold"] = busiest_threshold(tiny_model, events)
    wav = tmp_path / "long.wav"
    sf.write(wav, periodic_scene(900), SR, subtype="PCM_16")
    fast, slow = tmp_path / "fast.jsonl", tmp_path / "slow.jsonl"
    append_slowly = ("import sys, time; record = sys.stdin.read(); time.sleep(0.3); "
                     f"open({str(slow)!r}, 'a').write(record.strip() + '\\n')")
    sinks = [{"type": "jsonl", "path": str(fast)},
             {"type": "command", "argv": [sys.executable, "-c", append_slowly], "timeout_s": 30}]
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, events, sinks=sinks, runtime={"device": "cpu"})
    proc = subprocess.Popen([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input", str(wav)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()

    def count(path):
        return len(path.read_text().splitlines()) if path.exists() else 0

    try:
        deadline = time.monotonic() + 90
        while count(fast) < 12:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
            time.sleep(0.02)
        queued_at_stop = count(fast) - count(slow)  # emitted, not yet through the slow sink
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
    stderr = "".join(log)
    assert proc.returncode == 0, stderr
    assert queued_at_stop >= 5, (queued_at_stop, stderr)
    assert "SIGTERM received" in stderr and "not delivered" not in stderr
    emitted = [json.loads(line) for line in fast.read_text().splitlines()]
    delivered = [json.loads(line) for line in slow.read_text().splitlines()]
    assert [(r["id"], r["phase"]) for r in delivered] == [(r["id"], r["phase"]) for r in emitted]
    starts = [r["id"] for r in emitted if r["phase"] == "start"]
    ends = [r["id"] for r in emitted if r["phase"] == "end"]
    assert starts == ends and len(set(starts)) == len(starts)  # every event that started was ended, once
    assert emitted[-1]["end_s"] < 900.0  # the stop came mid-file, not at its end
