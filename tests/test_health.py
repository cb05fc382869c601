"""/healthz tells the truth about streams: one that never connected is stale, and with the default settings a
stall shows as 503 before the source gives up and reconnects."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
from helpers import CliRun, FakeEncoder, free_port, immediate_event, make_detector, write_config

from streamdetect.config import MetricsConfig
from streamdetect.daemon.engine import BatchingEngine, run_sources
from streamdetect.daemon.metrics import Metrics, MetricsServer
from streamdetect.sources.base import AudioSource
from streamdetect.sources.ffmpeg import FfmpegOptions

SR = 48_000


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_camera_down_since_start_up_makes_healthz_fail(tiny_model, tmp_path):
    port = free_port()
    config = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a"], "threshold": 0.5}],
                          sinks=[{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}], runtime={"device": "cpu"},
                          metrics={"port": port, "stale_after_s": 1.0},
                          sources=[{"type": "ffmpeg", "name": "cam", "url": f"http://127.0.0.1:{free_port()}/a.wav",
                                    "reconnect_min_s": 0.5, "reconnect_max_s": 1.0}])
    daemon = CliRun("run", "--config", str(config))
    try:
        daemon.wait_for("metrics on http://", 120)
        deadline = time.monotonic() + 60
        while True:
            status, report = healthz(port)
            if status == 503:
                break
            assert time.monotonic() < deadline, report
            time.sleep(0.2)
        assert report["streams"]["cam"]["heard"] is False and report["streams"]["cam"]["ok"] is False, report
    finally:
        daemon.stop()


class StallingSource(AudioSource):
    """A live source that delivers 2 s of audio, then nothing for ``stall_s`` (as a camera that hangs until
    the ffmpeg source's stall timeout kills and reconnects it), then 1 s more."""

    live = True

    def __init__(self, stall_s: float, stalled: threading.Event):
        super().__init__(AudioSource.Options(), SR, "cam")
        self.stall_s, self.stalled = stall_s, stalled

    def blocks(self, stop):
        quiet = np.zeros(SR // 4, np.float32)
        for _ in range(8):
            time.sleep(0.25)
            yield quiet
        self.stalled.set()
        stop.wait(self.stall_s)
        self.stalled.clear()
        for _ in range(4):
            yield quiet


def test_with_the_defaults_a_stall_is_visible_before_the_reconnect(tiny_model):
    stale_after_s, stall_timeout_s = MetricsConfig().stale_after_s, FfmpegOptions(url="x").stall_timeout_s
    metrics = Metrics(stale_after_s)
    detector, _ = make_detector(tiny_model, [immediate_event("x", threshold=1.0)], observer=metrics,
                                encoder=FakeEncoder.for_model(tiny_model))
    server = MetricsServer(metrics, "127.0.0.1", 0)
    stalled, stop = threading.Event(), threading.Event()
    source = StallingSource(stall_timeout_s, stalled)
    runner = threading.Thread(target=run_sources, args=(detector, [source], stop,
                                                        BatchingEngine(detector, observer=metrics)), daemon=True)
    runner.start()
    seen = []
    try:
        assert stalled.wait(60)
        while stalled.is_set():  # only while the stall lasts, i.e. before the source would reconnect
            seen.append(healthz(server.address[1])[0])
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(60)
        server.close()
    assert 503 in seen, f"/healthz answered {set(seen)} for the whole {stall_timeout_s} s stall"
    assert seen[0] == 200  # healthy while the last audio was recent
