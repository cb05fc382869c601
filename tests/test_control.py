"""The control API: GET/PUT /events on loopback with a bearer token, applied through the reload path.

In-process tests drive a real Detector + BatchingEngine with a paced live source; the CLI test runs
``streamdetect run`` on a PulseAudio null-sink microphone (fixture from test_microphone) and talks to its port.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from fakes import LiveSource
from helpers import CliRun, event_spec, free_port, make_detector, write_config, write_tone_scene

from streamdetect.config import parse_config
from streamdetect.daemon.control import ControlError, ControlServer, control_token
from streamdetect.daemon.engine import BatchingEngine, ReloadTicket, run_sources
from streamdetect.daemon.reload import ReloadGate

SR = 48_000
TOKEN = "s3cret-token-for-tests"


def request(port, method="GET", body=None, token=TOKEN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        payload = e.read()
        return e.code, json.loads(payload) if payload else None


@pytest.fixture
def running(tiny_model):
    detector, sink = make_detector(tiny_model, [event_spec("x", threshold=1.0)], runtime={"batch_size": 2})
    engine = BatchingEngine(detector)
    server = ControlServer(ReloadGate(lambda: detector.config, engine.request_reload), TOKEN, "127.0.0.1", 0)
    stop = threading.Event()
    paced = LiveSource(name="paced", block_s=0.25, pace_s=0.0625, noise=0.05)  # quiet noise at 4x real time
    thread = threading.Thread(target=run_sources, args=(detector, [paced], stop, engine), daemon=True)
    thread.start()
    try:
        yield detector, sink, server.address[1]
    finally:
        stop.set()
        thread.join(60)
        server.close()
    assert not thread.is_alive()


def test_token_is_required_and_compared_exactly(running):
    _detector, _sink, port = running
    assert request(port, token=None)[0] == 401
    assert request(port, token=TOKEN + "x")[0] == 401
    assert request(port, token="")[0] == 401
    assert request(port, "PUT", [{"label": "y", "prompts": ["rain"], "threshold": 0.1}], token="nope")[0] == 401
    status, body = request(port)
    assert status == 200
    assert [e["label"] for e in body["events"]] == ["x"] and body["events"][0]["threshold"] == 1.0


def test_put_validates_with_key_paths_and_keeps_the_running_events(running):
    detector, _sink, port = running
    status, body = request(port, "PUT", [{"label": "x", "prompts": ["a dog"], "threshold": 5, "colour": "red"}])
    assert status == 400
    keys = {p["key"] for p in body["problems"]}
    assert {"events[0].threshold", "events[0].colour"} <= keys, body
    status, body = request(port, "PUT", [{"label": "x", "prompts": ["a"], "threshold": 0.1},
                                         {"label": "x", "prompts": ["b"], "threshold": 0.1}])
    assert status == 400 and "appears twice" in json.dumps(body)
    assert request(port, "PUT", {"events": "nope"})[0] == 400
    assert detector.bank.labels == ("x",)


def test_put_applies_new_events_on_the_inference_thread(running):
    detector, sink, port = running
    new = [{"label": "x", "prompts": ["a dog barking"], "threshold": 0.9},
           {"label": "anything", "prompts": ["static hiss"], "threshold": -1.0, "cooldown_s": 0.0}]
    status, body = request(port, "PUT", new)
    assert status == 200, body
    assert [e["label"] for e in body["events"]] == ["x", "anything"]
    assert detector.bank.labels == ("x", "anything")  # the reply came after the engine applied it
    assert detector.config.events[0].threshold == 0.9
    deadline = time.monotonic() + 60  # a threshold of -1 fires on the next analysed window
    while time.monotonic() < deadline and not any(r.label == "anything" for r in sink.records):
        time.sleep(0.05)
    assert any(r.label == "anything" and r.phase == "start" for r in sink.records)
    status, body = request(port)
    assert [e["label"] for e in body["events"]] == ["x", "anything"]
    assert request(port, "PUT", [{"label": "x", "prompts": ["a dog barking"], "threshold": 1.0}])[0] == 200
    assert detector.bank.labels == ("x",)  # removed again; its open event was closed
    assert [r.phase for r in sink.records if r.label == "anything"][-1] == "end"


def test_missing_token_is_a_clear_error():
    with pytest.raises(ControlError, match="MY_TOKEN"):
        control_token("MY_TOKEN", {})
    assert control_token("MY_TOKEN", {"MY_TOKEN": "abc"}) == "abc"


def test_cli_without_token_in_environment_refuses_to_start(tiny_model, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a"], "threshold": 0.5}],
                       control={"port": free_port(), "token_env": "SD_TEST_TOKEN_UNSET"})
    env = {k: v for k, v in __import__("os").environ.items() if k != "SD_TEST_TOKEN_UNSET"}
    wav = write_tone_scene(tmp_path / "a.wav", seconds=3.0)  # a valid input: the token is what is missing
    result = subprocess.run([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input",
                             str(wav)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "SD_TEST_TOKEN_UNSET" in result.stderr and "control.port" in result.stderr


def test_cli_control_port_answers_on_a_live_run(tiny_model, tmp_path, pulse):
    port = free_port()
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a dog"], "threshold": 1.0}],
                       sinks=[{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}], runtime={"device": "cpu"},
                       control={"port": port})
    env = {**pulse, "STREAMDETECT_CONTROL_TOKEN": TOKEN}
    run = CliRun("run", "--config", str(cfg), "--device", "default", env=env)
    try:
        run.wait_for("control API on", 60)
        assert request(port, token=None)[0] == 401
        status, body = request(port)
        assert status == 200 and [e["label"] for e in body["events"]] == ["x"]
        status, body = request(port, "PUT", [{"label": "y", "prompts": ["rain"], "threshold": 0.5}])
        assert status == 200 and [e["label"] for e in body["events"]] == ["y"], body
        assert [e["label"] for e in request(port)[1]["events"]] == ["y"]
        run.proc.send_signal(signal.SIGHUP)  # back to the file's events: PUT changes are in memory only
        deadline = time.monotonic() + 60
        while [e["label"] for e in request(port)[1]["events"]] != ["x"]:
            assert time.monotonic() < deadline, run.log
            time.sleep(0.1)
    finally:
        status = run.stop()
    stderr = run.log
    assert status == 0, stderr
    assert TOKEN not in stderr


def test_slow_or_failed_reload_is_reported(tiny_model):
    config = parse_config({"model": str(tiny_model), "events": [{"label": "x", "prompts": ["a"], "threshold": 0.5}]})
    failed = ReloadTicket(error="RuntimeError: text encoder broke")
    failed.done.set()
    for ticket, status in ((ReloadTicket(), 202), (failed, 500)):
        server = ControlServer(ReloadGate(lambda: config, lambda _c, t=ticket: t, apply_timeout_s=0.2), TOKEN,
                               "127.0.0.1", 0)
        try:
            code, body = request(server.address[1], "PUT", [{"label": "y", "prompts": ["b"], "threshold": 0.5}])
        finally:
            server.close()
        assert code == status, body
        assert ("GET /events" in body["check"]) if status == 202 else ("text encoder broke" in body["error"])


def test_a_malformed_content_length_is_a_400_not_a_crash(tiny_model):
    config = parse_config({"model": str(tiny_model), "events": [{"label": "x", "prompts": ["a"], "threshold": 0.5}]})
    server = ControlServer(ReloadGate(lambda: config, lambda _c: None), TOKEN, "127.0.0.1", 0)
    try:
        with socket.create_connection(server.address[:2], timeout=10) as conn:
            conn.sendall(f"PUT /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                         "Content-Length: abc\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
    finally:
        server.close()
    assert reply.startswith(b"HTTP/1.0 400") and b"send a JSON body" in reply
