import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
from helpers import (
    FakeEncoder,
    free_port,
    immediate_event,
    make_detector,
    run_cli,
    write_config,
    write_tone_scene,
)
from test_engine import LiveArray

from streamdetect.daemon.engine import BatchingEngine, run_sources
from streamdetect.daemon.metrics import Metrics, MetricsServer

SR = 48_000


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_and_health_while_streams_run(tiny_model):
    metrics = Metrics(stale_after_s=0.5)
    det, _ = make_detector(tiny_model, [immediate_event("x", threshold=-1.0)], observer=metrics,
                           encoder=FakeEncoder.for_model(tiny_model), runtime={"batch_size": 2})
    server = MetricsServer(metrics, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.address[1]}"
    quiet = np.zeros(6 * SR, np.float32)
    sources = [LiveArray(quiet, "yard", delay_s=0.1), LiveArray(quiet, "roof", delay_s=0.1)]
    runner = threading.Thread(target=run_sources, args=(det, sources, threading.Event(), BatchingEngine(det, observer=metrics)))
    runner.start()
    time.sleep(0.6)
    status, body = get(base + "/healthz")
    health = json.loads(body)
    assert status == 200 and health["ok"] and set(health["streams"]) == {"yard", "roof"}
    runner.join(60)
    status, text = get(base + "/metrics")
    assert status == 200
    assert 'streamdetect_windows_total{stream="yard"} 4.0' in text
    assert 'streamdetect_event_records_total{label="x",phase="start"} 2.0' in text
    assert 'streamdetect_event_records_total{label="x",phase="end"} 2.0' in text
    assert "streamdetect_score_bucket" in text and "streamdetect_inference_latency_seconds_count 8.0" in text
    time.sleep(0.6)  # the live streams stopped delivering audio: health must say so
    status, body = get(base + "/healthz")
    assert status == 503 and not json.loads(body)["streams"]["yard"]["ok"]
    assert get(base + "/nope")[0] == 404
    server.close()


def test_cli_serves_metrics_on_loopback_only_when_asked(tiny_model, tmp_path):
    port = free_port()
    wav = write_tone_scene(tmp_path / "a.wav", seconds=3.0)
    events = [{"label": "x", "prompts": ["y"], "threshold": 0.1}]
    cfg = write_config(tmp_path / "c.yaml", tiny_model, events, metrics={"port": port},
                       sinks=[{"type": "jsonl", "path": str(tmp_path / "o")}])
    result = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert result.returncode == 0 and f"metrics on http://127.0.0.1:{port}/metrics" in result.stderr
    off = run_cli("run", "--config", str(write_config(tmp_path / "d.yaml", tiny_model, events, sinks=[
        {"type": "jsonl", "path": str(tmp_path / "o")}])), "--input", str(wav))
    assert off.returncode == 0 and "metrics on" not in off.stderr
