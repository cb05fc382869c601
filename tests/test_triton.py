"""The audio encoder on a real Triton Inference Server (the nvidia-pytriton wheel's tritonserver, on the CPU,
serving the exported ONNX file through onnxruntime in its Python backend with the dynamic batcher).

Marked ``triton``: they need ``.venv-triton`` from ``scripts/setup.sh --dev``; without it they fail, never skip.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from fakes import TcpProxy
from helpers import (
    file_windows,
    free_port,
    immediate_event,
    make_detector,
    run_cli,
    write_config,
    write_tone_scene,
)
from triton_server import TritonServer, other_export, python_repo
from triton_station import Station, windows_in

from streamdetect.config import ConfigError, TritonConfig
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.triton import TritonAudioEncoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import ModelBundle, ModelError

pytestmark = pytest.mark.triton
MODEL = "streamdetect_audio"


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("triton")
    repo = python_repo(tiny_model, work / "repo", max_batch=16, preferred="4,8", delay_us=50000)
    triton = TritonServer(repo, work).start()
    yield triton
    triton.stop()


@pytest.fixture(scope="module")
def other_model(tiny_model, tmp_path_factory):
    return other_export(tiny_model, tmp_path_factory.mktemp("other") / "model")


def remote(tiny_model, url: str, **section) -> TritonAudioEncoder:
    options = RuntimeOptions(device="triton", triton=TritonConfig(url=url, **section))
    encoder = open_audio_encoder(ModelBundle.load(tiny_model), options)
    assert isinstance(encoder, TritonAudioEncoder)
    return encoder


def test_embeddings_through_the_server_match_the_local_encoder_on_every_window(tiny_model, server, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    windows = file_windows(write_tone_scene(tmp_path / "scene.wav", seconds=10.0))
    features = LogMelFrontend(bundle.frontend_params)([w.samples for w in windows])
    local = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp32"))(features)
    encoder = remote(tiny_model, server.url)
    through_server = encoder(features)
    cosine = (local * through_server).sum(axis=1) / (np.linalg.norm(local, axis=1)
                                                     * np.linalg.norm(through_server, axis=1))
    assert len(windows) >= 8 and cosine.min() >= 0.9999, cosine
    assert encoder.file == "audio_encoder.onnx" and encoder.precision == "fp32" and encoder.state == "up"


def test_a_detector_on_the_server_reports_the_events_of_the_local_one(tiny_model, server, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=12.0)
    events = [immediate_event("x", threshold=0.0)]
    local, _ = make_detector(tiny_model, events, runtime={"precision": "fp32"})
    windows = file_windows(wav)
    scores = local.scores(windows).event[:, 0]
    events[0]["threshold"] = float(np.median(scores) + 1e-4)
    runs = {}
    for name, runtime in {"local": {"precision": "fp32"},
                          "triton": {"device": "triton", "triton": {"url": server.url}}}.items():
        detector, sink = make_detector(tiny_model, events, runtime=runtime)
        stream = detector.open_stream("s", live=False)
        detector.analyse([(stream, w) for w in windows])
        detector.end_stream(stream)
        runs[name] = [(r.phase, r.start_s, r.end_s, round(r.peak_score, 4)) for r in sink.records]
    assert runs["local"] and runs["triton"] == runs["local"]


def test_concurrent_stations_are_batched_by_the_server(tiny_model, server):
    """Six stations send one window each at the same time: Triton's dynamic batcher runs them together, so its
    own statistics count fewer executions than inferences."""
    stations = [remote(tiny_model, server.url) for _ in range(6)]
    features = np.random.default_rng(1).normal(-40, 20, (1, 1, 1001, 64)).astype(np.float32)
    before = server.statistics(MODEL)
    barrier = threading.Barrier(len(stations))
    results: list[np.ndarray] = []

    def station(encoder):
        for _ in range(3):
            barrier.wait()
            results.append(encoder(features))

    threads = [threading.Thread(target=station, args=(s,)) for s in stations]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = server.statistics(MODEL)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert len(results) == 18 and inferences == 18
    assert executions < inferences, (executions, inferences)
    assert all(np.allclose(r, results[0], atol=1e-5) for r in results)


def test_an_engine_batch_goes_in_one_request(tiny_model, server):
    encoder = remote(tiny_model, server.url)
    before = server.statistics(MODEL)
    encoder(np.zeros((5, 1, 1001, 64), np.float32))
    after = server.statistics(MODEL)
    assert after["inference_count"] - before["inference_count"] == 5
    assert after["execution_count"] - before["execution_count"] == 1


def test_a_server_with_another_model_is_refused_at_start_and_says_so(tiny_model, other_model, tmp_path):
    repo = python_repo(other_model, tmp_path / "repo")
    triton = TritonServer(repo, tmp_path).start()
    try:
        with pytest.raises(ModelError, match="different audio encoder"):
            remote(tiny_model, triton.url)
        config = write_config(tmp_path / "station.yaml", tiny_model, [immediate_event("x")],
                              runtime={"device": "triton", "triton": {"url": triton.url}})
        done = run_cli("run", "--config", str(config), "--input", str(write_tone_scene(tmp_path / "a.wav", 5.0)))
    finally:
        triton.stop()
    assert done.returncode == 2 and "different audio encoder" in done.stderr and "Traceback" not in done.stderr


def test_a_bearer_token_from_the_environment_opens_a_server_that_requires_it(tiny_model, tmp_path, monkeypatch):
    repo = python_repo(tiny_model, tmp_path / "repo")
    triton = TritonServer(repo, tmp_path, token="s3cret-token").start()
    try:
        monkeypatch.setenv("STATION_TOKEN", "s3cret-token")
        encoder = remote(tiny_model, triton.url, token_env="STATION_TOKEN")
        assert encoder.state == "up" and encoder(np.zeros((2, 1, 1001, 64), np.float32)).shape == (2, 32)
        monkeypatch.setenv("STATION_TOKEN", "wrong")
        refused = remote(tiny_model, triton.url, token_env="STATION_TOKEN", retries=0)
        assert refused.state == "away"
        refused.close()  # ends its probe thread
        monkeypatch.delenv("STATION_TOKEN")
        with pytest.raises(ConfigError, match="STATION_TOKEN is not set"):
            remote(tiny_model, triton.url, token_env="STATION_TOKEN")
    finally:
        triton.stop()


class Seen:
    """A ``RemoteEncoderObserver`` that keeps each error's kind with the thread it was met in."""

    def __init__(self):
        self.errors: list[tuple[str, str]] = []
        self.fallback = 0

    def remote_call(self, seconds: float, windows: int, sent_bytes: int, received_bytes: int) -> None:
        pass

    def remote_error(self, kind: str) -> None:
        self.errors.append((kind, threading.current_thread().name))

    def remote_state(self, state: str, detail: str) -> None:
        pass

    def fallback_windows(self, count: int) -> None:
        self.fallback += count


def until(condition, what: str, timeout_s: float = 20.0, step=lambda: time.sleep(0.02)) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        step()


def test_a_trickling_server_is_away_within_one_deadline_and_probed_outside_the_inference_thread(tiny_model,
                                                                                                 server):
    """One byte every 0.3 s never trips a per-read timeout. ``timeout_s`` bounds the whole request: the first
    call hands its windows to the local encoder after one deadline (no retries of a timeout), and the probes of
    the away server run in their own thread, so every later call is local and prompt until the server is back."""
    bundle = ModelBundle.load(tiny_model)
    proxy = TcpProxy(server.http_port, delay_s=0.3)
    local = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp32"))
    section = TritonConfig(url=proxy.url, timeout_s=0.8, retries=2, retry_min_s=0.1, retry_max_s=0.2,
                           fallback="local")
    seen = Seen()
    encoder = TritonAudioEncoder(bundle, RuntimeOptions(device="triton", triton=section), local, seen)
    features = np.zeros((2, *encoder.feature_shape), np.float32)
    calls: list[float] = []

    def call() -> None:
        t0 = time.monotonic()
        encoder(features)
        calls.append(time.monotonic() - t0)

    try:
        assert encoder.state == "up"
        proxy.set("trickle")
        call()
        first = calls.pop()
        assert encoder.state == "fallback" and seen.errors == [("timeout", threading.current_thread().name)]
        until(lambda: len(seen.errors) >= 2, "a probe of the trickling server", step=call)
        proxy.set("pass")
        until(lambda: encoder.state == "up", "the probe to find the server back")
    finally:
        encoder.close()
        proxy.stop()
    assert first < 0.8 + 0.4, first  # one deadline; three attempts would take 2.4 s
    assert calls and max(calls) < 0.4, calls  # the local encoder's time, never a probe's deadline
    assert {thread for _, thread in seen.errors[1:]} == {"triton-probe"}
    assert {kind for kind, _ in seen.errors} == {"timeout"} and seen.fallback == 2 * (len(calls) + 1)


def test_a_stalled_server_without_fallback_keeps_more_live_windows_than_the_per_stream_bound(tiny_model, server):
    """Without a fallback, live windows wait up to ``queue_windows`` (here 60), past the engine's own bound of
    32 per live stream, and /healthz says the station is down; all of them are analysed once the server is back."""
    proxy = TcpProxy(server.http_port, mode="stall")
    station = Station(tiny_model, proxy.url, metrics_port=free_port(), timeout_s=0.5, retries=0,
                      retry_min_s=0.1, retry_max_s=0.2, queue_windows=60)
    try:
        assert station.health()["remote_encoder"]["state"] == "away"
        station.source.feed(38)
        station.wait(lambda: station.stats.backlog >= 36, what="the windows to queue")
        health = httpx.get(f"http://127.0.0.1:{station.service.config.metrics.port}/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "down"
        assert station.metric("streamdetect_remote_encoder_degraded") == 1 and station.stats.dropped_windows == 0
        proxy.set("pass")
        _, stats = station.finish()
    finally:
        station.close()
        proxy.stop()
    assert stats.dropped_windows == 0 and stats.windows >= 36
    assert station.metric("streamdetect_remote_encoder_degraded") == 0


def test_a_trickling_server_with_fallback_is_degraded_and_loses_no_window(tiny_model, server):
    """What the station shows for the first test's outage: /healthz 200 but "degraded", the degraded gauge at 1,
    every window analysed (by the server, then the local encoder) and none late by more than a deadline or so."""
    proxy = TcpProxy(server.http_port, delay_s=0.3)
    station = Station(tiny_model, proxy.url, timeout_s=0.8, retries=2, retry_min_s=0.2, retry_max_s=0.4,
                      fallback="local")
    try:
        station.source.feed(4)
        station.wait(lambda: station.stats.windows >= 2, what="remote windows")
        proxy.set("trickle")
        station.source.feed(6)
        station.wait(lambda: station.stats.windows >= 6, what="windows on the local fallback")
        health = station.health()
        degraded = station.metric("streamdetect_remote_encoder_degraded")
        _, stats = station.finish()
    finally:
        station.close()
        proxy.stop()
    assert health["ok"] and health["status"] == "degraded" and health["remote_encoder"]["state"] == "fallback"
    assert degraded == 1 and stats.dropped_windows == 0 and stats.windows == windows_in(station.source.fed_s)
    assert stats.latency_ms(100) < 3000, stats.latency_ms(100)
