import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from fakes import LiveSource
from helpers import (
    FakeEncoder,
    free_port,
    immediate_event,
    make_detector,
    run_cli,
    write_config,
    write_tone_scene,
)
from prometheus_client.parser import text_string_to_metric_families

from streamdetect.analysis.replay import Replay
from streamdetect.daemon.engine import BatchingEngine, run_sources
from streamdetect.daemon.metrics import SCORE_HISTOGRAMS, Metrics, MetricsServer

SR = 48_000


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_and_health_while_streams_run(tiny_model):
    metrics = Metrics(stale_after_s=0.5)
    det, _ = make_detector(tiny_model, [immediate_event("x", threshold=-1.0)], observer=metrics, listeners=[metrics],
                           encoder=FakeEncoder.for_model(tiny_model), runtime={"batch_size": 2})
    server = MetricsServer(metrics, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.address[1]}"
    quiet = np.zeros(6 * SR, np.float32)
    sources = [LiveSource(quiet, "yard", pace_s=0.1), LiveSource(quiet, "roof", pace_s=0.1)]
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
    assert "streamdetect_score_cosine_distance_bucket" in text
    assert "streamdetect_inference_latency_seconds_count 8.0" in text
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


def families(text):
    """A scrape as Prometheus' own parser reads it: {family name: (type, [(sample name, labels, value)])}."""
    return {f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)}


def promtool_check(text):
    """``promtool check metrics`` (Prometheus' linter) over a scrape; '' when it has nothing to say."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: run `bash scripts/setup.sh --dev` (Debian package prometheus)")
    result = subprocess.run([binary, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return (result.stdout + result.stderr).strip()


@pytest.mark.parametrize("mode", ["cosine", "softmax"])
def test_scrape_follows_prometheus_conventions(tiny_model, mode):
    """Counters for totals, a score histogram with ``_sum`` and buckets for the mode, process metrics, series at
    zero before anything happened, and the series of a label removed by a reload dropped."""
    metrics = Metrics(score_mode=mode)
    scoring = {"mode": mode, "background": ["silence"] if mode == "softmax" else []}
    det, _ = make_detector(tiny_model, [immediate_event("dog", threshold=1.0), immediate_event("gone", threshold=1.0)],
                           observer=metrics, listeners=[metrics], encoder=FakeEncoder.for_model(tiny_model),
                           scoring=scoring)
    metrics.watch_sinks(["mqtt#0"], lambda _n: 3, lambda _n: 0)
    det.expect_streams({"yard": None})
    server = MetricsServer(metrics, "127.0.0.1", 0)
    try:
        start = families(get(f"http://127.0.0.1:{server.address[1]}/metrics")[1])
        name = SCORE_HISTOGRAMS[mode][0]
        # before any window: the series exist at zero
        assert ("streamdetect_windows_total", {"stream": "yard"}, 0.0) in start["streamdetect_windows"][1]
        assert ("streamdetect_event_records_total", {"label": "gone", "phase": "end"}, 0.0) in \
            start["streamdetect_event_records"][1]
        assert start[name][0] == "histogram"
        assert (f"{name}_sum", {"label": "dog"}, 0.0) in start[name][1]
        # the sinks' totals are counters named ..._total, at their value from the start
        assert start["streamdetect_sink_failures"][0] == "counter"
        assert ("streamdetect_sink_failures_total", {"sink": "mqtt#0"}, 3.0) in start["streamdetect_sink_failures"][1]
        assert ("streamdetect_sink_dropped_total", {"sink": "mqtt#0"}, 0.0) in start["streamdetect_sink_dropped"][1]
        for process in ("process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds", "python_info"):
            assert process in start, process
        # buckets fit the mode's values: non-negative (so _sum is kept), up to 2 for a cosine distance, 1 for p
        bounds = [float(s[1]["le"]) for s in start[name][1] if s[0].endswith("_bucket") and s[1]["label"] == "dog"]
        assert bounds[0] >= 0 and bounds[-2] == (2.0 if mode == "cosine" else 1.0) and bounds[-1] == float("inf")

        stream = det.open_stream("yard", live=False)
        rng = np.random.default_rng(0)
        Replay(det, stream).run([(0.1 * rng.standard_normal(5 * SR)).astype(np.float32)])
        scraped = get(f"http://127.0.0.1:{server.address[1]}/metrics")[1]
        after = families(scraped)
        sums = {s[1]["label"]: s[2] for s in after[name][1] if s[0] == f"{name}_sum"}
        counts = {s[1]["label"]: s[2] for s in after[name][1] if s[0] == f"{name}_count"}
        assert counts["dog"] == 3 and 0 < sums["dog"] <= 3 * (2.0 if mode == "cosine" else 1.0)
        assert promtool_check(scraped) == ""  # Prometheus' linter finds nothing to say

        from helpers import make_config
        det.reload(make_config(tiny_model, [immediate_event("dog", threshold=1.0)], scoring=scoring))
        reloaded = get(f"http://127.0.0.1:{server.address[1]}/metrics")[1]
        assert 'label="gone"' not in reloaded and 'label="dog"' in reloaded
    finally:
        server.close()


def test_metrics_doc_lists_every_metric_of_a_real_scrape(tiny_model):
    """docs/operations/metrics.md names each metric family a daemon exposes, in both scoring modes."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs/operations/metrics.md").read_text()
    documented = set(re.findall(r"^\| `((?:streamdetect|process|python)_[a-z_]+)` \|", doc, re.M))  # the table
    scraped = set()
    for mode in ("cosine", "softmax"):
        metrics = Metrics(score_mode=mode)
        metrics.watch_sinks(["jsonl#0"], lambda _n: 0, lambda _n: 0)
        # prometheus_client writes an unlabelled histogram's creation time as its own `<name>_created` gauge
        scraped |= {f.name for f in text_string_to_metric_families(metrics.exposition().decode())
                    if not f.name.endswith("_created")}
    assert scraped - documented == set(), "undocumented metrics"
    assert {m for m in documented if m.startswith("streamdetect_")} - scraped == set(), "documented, not exposed"
