"""The control API under hostile input: deep JSON, values that used to escape validation, held sockets, and
labels that try to write log lines of their own."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import run_cli, write_config, write_tone_scene

from streamdetect.config import parse_config
from streamdetect.daemon.control import MAX_CONNECTIONS, ControlServer, json_depth_exceeds
from streamdetect.daemon.engine import ReloadTicket
from streamdetect.daemon.metrics import Metrics, MetricsServer
from streamdetect.daemon.reload import ReloadGate
from streamdetect.util.logs import escape_control

TOKEN = "another-s3cret-for-tests"


@pytest.fixture
def server():
    config = parse_config({"events": [{"label": "x", "prompts": ["a"], "threshold": 0.5}]})
    applied = []

    def reload(new):
        applied.append(new)
        ticket = ReloadTicket()
        ticket.done.set()
        return ticket

    srv = ControlServer(ReloadGate(lambda: config, reload), TOKEN, "127.0.0.1", 0, idle_timeout_s=0.5)
    try:
        yield srv, applied
    finally:
        srv.close()


def put(port: int, body: bytes):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=body, method="PUT",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_200k_deep_json_is_a_400_reply(server):
    srv, applied = server
    status, reply = put(srv.address[1], b"[" * 200_000 + b"]" * 200_000)
    assert status == 400 and "nested more than" in reply["error"], reply
    assert applied == []


def test_depth_check_ignores_brackets_in_strings_and_counts_real_nesting():
    assert not json_depth_exceeds(json.dumps({"events": [{"label": "[[[[[[", "prompts": ["{{{{{{\\\"[["]}]}).encode(), 4)
    assert json_depth_exceeds(b'{"a": [[[[1]]]]}', 4)
    assert not json_depth_exceeds(b'{"a": [[[1]]]}', 4)


@pytest.mark.parametrize("event, key", [
    ({"label": "a", "prompts": ["x"], "threshold": 0.2, "examples": ["~nosuchuser/a.wav"]}, "events[0].examples"),
    ({"label": "a", "prompts": ["x"], "threshold": 1e400}, "events[0].threshold"),
])
def test_values_that_used_to_drop_the_connection_get_a_400_with_the_key(server, event, key):
    srv, applied = server
    body = json.dumps({"events": [event]}).replace("Infinity", "1e400").encode()
    status, reply = put(srv.address[1], body)
    assert status == 400, reply
    assert key in [p["key"] for p in reply["problems"]], reply
    assert applied == []


def _handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def held_sockets_are_bounded_and_closed(address: tuple) -> None:
    """Twice the bound of connections that send nothing: at most ``MAX_CONNECTIONS`` handler threads, and each
    held socket closed by the server once its idle timeout passes."""
    # twice the bound: enough to show the excess is refused. (Each connection past the listen backlog waits for a
    # 1 s SYN retry, so 400 took a minute without showing more.)
    held = [socket.create_connection(address[:2], timeout=30) for _ in range(2 * MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        assert _handler_threads() <= MAX_CONNECTIONS
        deadline = time.monotonic() + 30
        while _handler_threads() > 0:
            assert time.monotonic() < deadline, f"{_handler_threads()} handler threads still alive"
            time.sleep(0.05)
        for conn in held[:MAX_CONNECTIONS]:
            assert conn.recv(1) == b""  # closed by the server, not by us
    finally:
        for conn in held:
            conn.close()


def test_held_sockets_are_bounded_and_closed_after_the_idle_timeout(server):
    srv, applied = server
    held_sockets_are_bounded_and_closed(srv.address)
    status, _ = put(srv.address[1], json.dumps({"events": [{"label": "y", "prompts": ["b"], "threshold": 0.3}]})
                    .encode())
    assert status == 200 and [e.label for e in applied[0].events] == ["y"]


def test_the_metrics_port_without_the_web_extra_bounds_and_closes_held_sockets_too():
    """Its stdlib server held 200 slow sockets open for as long as their clients liked."""
    srv = MetricsServer(Metrics(), "127.0.0.1", 0, idle_timeout_s=0.5)
    try:
        held_sockets_are_bounded_and_closed(srv.address)
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.address[1]}/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        srv.close()


def test_escape_control_writes_every_control_character_as_an_escape():
    assert escape_control("a\nb\r\x1b[31mc\x00\u2028é") == "a\\nb\\r\\x1b[31mc\\x00\\u2028é"


def test_a_label_with_a_newline_cannot_forge_a_log_line(tiny_model, tmp_path):
    forged = "2026-01-01 00:00:00,000 ERROR streamdetect: forged"
    config = write_config(tmp_path / "c.yaml", tiny_model, [{"label": f"dog\n{forged}", "prompts": ["a dog"],
                                                              "threshold": 0.5}], sinks=[{"type": "stdout"}],
                          runtime={"device": "cpu"})
    result = run_cli("run", "--config", str(config), "--input", str(write_tone_scene(tmp_path / "s.wav", 4.0)))
    assert result.returncode == 0, result.stderr
    assert "dog\\n2026-01-01" in result.stderr, result.stderr  # the label is shown, escaped
    assert not any(line.startswith(forged) for line in result.stderr.splitlines()), result.stderr
