"""Each fault against a real tritonserver, with a station running live: the server down at start, killed mid-run,
restarted, stalled past ``timeout_s``, answering errors, serving another model. Windows are never lost silently:
each one is analysed (remotely or by the local fallback) or counted as dropped. Marked ``triton`` (see
test_triton.py)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from helpers import free_port
from triton_server import TritonServer, other_export, python_repo
from triton_station import Station, windows_in

pytestmark = pytest.mark.triton
MODEL = "streamdetect_audio"
LOGGER = "streamdetect.embed.encoder.triton"


@pytest.fixture(scope="module")
def repos(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("repos")
    other = other_export(tiny_model, work / "other-model")
    return {"ours": python_repo(tiny_model, work / "ours"), "other": python_repo(other, work / "other")}


@pytest.fixture
def server(repos, tmp_path):
    triton = TritonServer(repos["ours"], tmp_path, explicit=True)
    yield triton
    triton.stop()


def outage_lines(caplog) -> tuple[int, int]:
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return sum("is away" in line for line in lines), sum("is back" in line for line in lines)


def test_down_at_start_the_windows_wait_and_run_once_it_comes(tiny_model, server, caplog):
    caplog.set_level(logging.INFO)
    station = Station(tiny_model, server.url, metrics_port=free_port())
    try:
        station.source.feed(6)
        station.wait(lambda: station.metric("streamdetect_remote_encoder_errors_total", kind="connect") > 0,
                     what="connection errors")
        assert station.stats.windows == 0 and station.health()["remote_encoder"]["state"] == "away"
        health = httpx.get(f"http://127.0.0.1:{station.service.config.metrics.port}/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["remote_encoder"]["state"] == "away"
        server.start()
        station.wait(lambda: station.stats.windows >= windows_in(6) - 1, what="the waiting windows")
        assert station.health()["remote_encoder"]["state"] == "up" and station.health()["ok"]
        _, stats = station.finish()
    finally:
        station.close()
    assert stats.windows == windows_in(6) and stats.dropped_windows == 0
    assert station.metric("streamdetect_remote_encoder_windows_total") == windows_in(6)
    assert station.metric("streamdetect_remote_encoder_up") == 1
    assert outage_lines(caplog) == (1, 1)


def test_killed_mid_run_the_local_encoder_takes_over_and_hands_back_on_restart(tiny_model, server, caplog):
    caplog.set_level(logging.INFO)
    server.start()
    station = Station(tiny_model, server.url, fallback="local")
    try:
        station.source.feed(5)
        station.wait(lambda: station.stats.windows >= 3, what="remote windows")
        remote_before = station.metric("streamdetect_remote_encoder_windows_total")
        server.kill()
        station.source.feed(4)
        station.wait(lambda: station.metric("streamdetect_remote_encoder_fallback_windows_total") >= 3,
                     what="windows on the local fallback")
        health = station.health()
        assert health["ok"] and health["remote_encoder"]["state"] == "fallback"
        assert station.metric("streamdetect_remote_encoder_up") == 0
        server.start()  # the same ports: a restart
        station.wait(lambda: station.health()["remote_encoder"]["state"] == "up", what="the server's return",
                     feeding=True)
        station.source.feed(4)
        _, stats = station.finish()
    finally:
        station.close()
    remote_windows = station.metric("streamdetect_remote_encoder_windows_total")
    local_windows = station.metric("streamdetect_remote_encoder_fallback_windows_total")
    total = windows_in(station.source.fed_s)
    assert remote_windows > remote_before and remote_windows + local_windows == total
    assert stats.windows == total and stats.dropped_windows == 0
    assert station.metric("streamdetect_remote_encoder_outages_total") == 1
    assert outage_lines(caplog) == (1, 1)


def test_a_stalled_server_times_out_and_the_bounded_queue_counts_what_it_drops(tiny_model, server):
    server.start()
    station = Station(tiny_model, server.url, timeout_s=1.0, retries=0, queue_windows=3)
    try:
        station.source.feed(4)
        station.wait(lambda: station.stats.windows >= 2, what="remote windows")
        done = station.stats.windows
        server.stall()
        station.source.feed(10)
        station.wait(lambda: station.metric("streamdetect_remote_encoder_errors_total", kind="timeout") >= 1,
                     what="a request past timeout_s")
        station.wait(lambda: station.stats.dropped_windows >= 6, what="dropped windows")
        assert station.stats.windows == done and station.metric("streamdetect_dropped_windows_total",
                                                                stream="mic") == station.stats.dropped_windows
        server.resume()
        _, stats = station.finish()
    finally:
        server.resume()
        station.close()
    assert stats.dropped_windows > 0 and stats.windows + stats.dropped_windows == windows_in(14)


def test_errors_from_the_server_hold_the_windows_until_it_answers_again(tiny_model, server):
    server.start()
    station = Station(tiny_model, server.url)
    try:
        station.source.feed(4)
        station.wait(lambda: station.stats.windows >= 2, what="remote windows")
        server.unload(MODEL)  # Triton now answers 400 "unknown model" to every request
        station.source.feed(4)
        station.wait(lambda: station.metric("streamdetect_remote_encoder_errors_total", kind="http") >= 2,
                     what="HTTP errors")
        # counted at each try; the server is away once the last of them failed
        station.wait(lambda: station.health()["remote_encoder"]["state"] == "away", what="the server away")
        waiting = station.stats.windows
        assert not station.health()["ok"]
        server.load(MODEL)
        station.wait(lambda: station.stats.windows > waiting, what="windows after the model is back")
        _, stats = station.finish()
    finally:
        station.close()
    assert stats.windows == windows_in(8) and stats.dropped_windows == 0


def test_a_restart_with_another_model_is_refused_until_ours_is_back(tiny_model, server, repos, caplog):
    caplog.set_level(logging.INFO)
    server.start()
    station = Station(tiny_model, server.url, fallback="local")
    try:
        station.source.feed(4)
        station.wait(lambda: station.stats.windows >= 2, what="remote windows")
        server.stop()
        server.start(repos["other"])
        station.source.feed(4)
        station.wait(lambda: station.metric("streamdetect_remote_encoder_errors_total", kind="wrong_model") >= 1,
                     what="the other model refused")
        station.wait(lambda: station.metric("streamdetect_remote_encoder_fallback_windows_total") >= 2,
                     what="windows on the local fallback")
        assert "different audio encoder" in json.dumps(station.health())
        server.stop()
        server.start(repos["ours"])
        station.wait(lambda: station.health()["remote_encoder"]["state"] == "up", what="our model back",
                     feeding=True)
        _, stats = station.finish()
    finally:
        station.close()
    assert stats.windows == windows_in(station.source.fed_s) and stats.dropped_windows == 0
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert outage_lines(caplog) == (1, 1)
    assert sum("different audio encoder" in line for line in lines) == 1


def test_windows_left_when_a_station_stops_without_its_server_are_counted(tiny_model):
    station = Station(tiny_model, f"http://127.0.0.1:{free_port()}", retry_min_s=0.1, retry_max_s=0.2)
    try:
        station.source.feed(5)
        station.wait(lambda: station.stats.encoder_waits >= 1, what="the engine waiting for the server")
        _, stats = station.finish()
    finally:
        station.close()
    assert stats.windows == 0 and stats.dropped_windows == windows_in(5)
    assert station.metric("streamdetect_dropped_windows_total", stream="mic") == windows_in(5)
