"""One reload gate and one HTTP surface: the control routes, ``/metrics`` and ``/healthz`` as ASGI routes
(in-process, starlette's TestClient), the same answers from the stdlib fallback when starlette cannot be
imported, and the gate's results for each way a reload can end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack

import pytest
from starlette.testclient import TestClient

from streamdetect.config import Config, ConfigError, parse_config
from streamdetect.config.gate import Outcome
from streamdetect.daemon.control import ControlServer
from streamdetect.daemon.engine import ReloadTicket
from streamdetect.daemon.metrics import Metrics, MetricsServer
from streamdetect.daemon.reload import ReloadGate
from streamdetect.daemon.serving import HttpPorts
from streamdetect.web.routes_control import control_app
from streamdetect.web.routes_metrics import metrics_app

TOKEN = "surface-s3cret-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENT = {"label": "x", "prompts": ["a"], "threshold": 0.5}


class Inference:
    """Stands in for the inference thread: applies (or fails, or never gets to) each config handed to it."""

    def __init__(self, config: Config, error: str | None = None, hold: bool = False):
        self.config, self.error, self.hold = config, error, hold
        self.asked: list[Config] = []
        self.tickets: list[ReloadTicket] = []

    def request(self, config: Config) -> ReloadTicket:
        self.asked.append(config)
        ticket = ReloadTicket(error=self.error)
        self.tickets.append(ticket)
        if not self.hold:
            if self.error is None:
                self.config = config
            ticket.done.set()
        return ticket

    def gate(self, timeout_s: float = 5.0) -> ReloadGate:
        return ReloadGate(lambda: self.config, self.request, apply_timeout_s=timeout_s)


@pytest.fixture
def inference() -> Inference:
    return Inference(parse_config({"events": [EVENT]}))


def labels(payload: dict) -> list[str]:
    return [e["label"] for e in payload["events"]]


# -- the gate --------------------------------------------------------------------------------------------------

def test_the_gate_answers_each_outcome_with_one_result_type(inference):
    gate = inference.gate(timeout_s=0.3)
    new = parse_config({"events": [{**EVENT, "label": "y"}]})
    applied = gate.apply(new, "test")
    assert (applied.outcome, applied.status, applied.config) == (Outcome.APPLIED, 200, new)
    assert [e.label for e in gate.current().events] == ["y"]

    def bad(_running: Config) -> Config:
        raise ConfigError("somewhere", [("events[0].threshold", "too big")])

    rejected = gate.apply(bad, "test")
    assert (rejected.outcome, rejected.status) == (Outcome.REJECTED, 400)
    assert rejected.problem_list() == [{"key": "events[0].threshold", "message": "too big"}]
    assert len(inference.asked) == 1  # a rejected config never reaches the inference thread

    inference.error = "RuntimeError: broke"
    failed = gate.apply(new, "test")
    assert (failed.outcome, failed.status, failed.error) == (Outcome.FAILED, 500, "RuntimeError: broke")

    inference.error, inference.hold = None, True
    pending = gate.apply(new, "test")
    assert (pending.outcome, pending.status) == (Outcome.PENDING, 202)
    gate.close()
    stopped = gate.apply(new, "test")
    assert (stopped.outcome, stopped.status) == (Outcome.STOPPED, 503)
    assert len(inference.asked) == 3  # nothing is handed over once the gate is closed


def test_a_pending_reload_is_logged_once_the_inference_thread_applies_it(inference, caplog):
    inference.hold = True
    gate = inference.gate(timeout_s=0.2)
    with caplog.at_level(logging.INFO, logger="streamdetect.daemon.reload"):
        assert gate.apply(parse_config({"events": [{**EVENT, "label": "late"}]}), "test").outcome is Outcome.PENDING
        assert "config reload applied" not in caplog.text
        inference.tickets[-1].done.set()
        deadline = time.monotonic() + 10
        while "test: config reload applied: events late" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    gate.close()


def test_a_change_is_built_from_the_running_config(inference):
    gate = inference.gate()
    result = gate.apply(lambda running: parse_config({"events": [e.model_dump() for e in running.events] +
                                                      [{**EVENT, "label": "z"}]}), "test")
    assert result.outcome is Outcome.APPLIED
    assert [e.label for e in inference.config.events] == ["x", "z"]


# -- the control routes on the ASGI app --------------------------------------------------------------------------

def test_control_routes_keep_their_paths_auth_and_answers(inference):
    client = TestClient(control_app(inference.gate(), TOKEN), base_url="http://127.0.0.1")
    missing = client.get("/events")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer" and missing.content == b""
    assert client.get("/events", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert client.put("/events", json=[EVENT], headers={"Authorization": "Bearer nope"}).status_code == 401
    other = client.get("/nothing", headers=AUTH)
    assert other.status_code == 404 and "GET and PUT /events" in other.json()["error"]

    got = client.get("/events", headers=AUTH)
    assert got.status_code == 200 and labels(got.json()) == ["x"]

    put = client.put("/events", json=[{**EVENT, "label": "y"}], headers=AUTH)
    assert put.status_code == 200 and labels(put.json()) == ["y"]
    assert [e.label for e in inference.config.events] == ["y"]

    invalid = client.put("/events", json=[{**EVENT, "threshold": 5, "colour": "red"}], headers=AUTH)
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid events"
    assert {"events[0].threshold", "events[0].colour"} <= {p["key"] for p in invalid.json()["problems"]}
    assert [e.label for e in inference.config.events] == ["y"]


def test_control_routes_share_the_body_guard(inference):
    client = TestClient(control_app(inference.gate(), TOKEN), base_url="http://127.0.0.1")
    deep = client.put("/events", content=b"[" * 200_000 + b"]" * 200_000, headers=AUTH)
    assert deep.status_code == 400 and "nested more than" in deep.json()["error"]
    empty = client.put("/events", content=b"", headers=AUTH)
    assert empty.status_code == 400 and "send a JSON body" in empty.json()["error"]
    garbage = client.put("/events", content=b"{not json", headers=AUTH)
    assert garbage.status_code == 400 and "body is not JSON" in garbage.json()["error"]
    assert inference.asked == []


def test_control_routes_report_a_slow_or_failed_reload(inference):
    inference.hold = True
    client = TestClient(control_app(inference.gate(timeout_s=0.2), TOKEN), base_url="http://127.0.0.1")
    slow = client.put("/events", json=[{**EVENT, "label": "y"}], headers=AUTH)
    assert slow.status_code == 202 and "GET /events" in slow.json()["check"]
    inference.hold, inference.error = False, "RuntimeError: text encoder broke"
    failed = client.put("/events", json=[{**EVENT, "label": "y"}], headers=AUTH)
    assert failed.status_code == 500 and "text encoder broke" in failed.json()["error"]


# -- /metrics and /healthz on the ASGI app -----------------------------------------------------------------------

def test_metrics_and_healthz_routes():
    metrics = Metrics(stale_after_s=0.2)
    metrics.windows.labels("yard").inc(3)
    client = TestClient(metrics_app(metrics), base_url="http://127.0.0.1")
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=")
    assert 'streamdetect_windows_total{stream="yard"} 3.0' in scraped.text
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"ok": True, "status": "up", "streams": {}}
    metrics.expect("yard", live=True)
    time.sleep(0.3)  # the live stream delivered nothing for longer than stale_after_s
    stale = client.get("/healthz")
    assert stale.status_code == 503 and stale.json()["streams"]["yard"]["heard"] is False
    nothing = client.get("/events")
    assert nothing.status_code == 404 and nothing.text == "not found\n"


# -- the ports, served for real: the ASGI surface, and the stdlib fallback without starlette ---------------------

def fetch(url: str, method: str = "GET", body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def serve_and_ask(inference: Inference) -> tuple[type, type]:
    """Open a metrics port and a control port with ``HttpPorts`` and ask each the same questions."""
    with ExitStack() as closing:
        ports = HttpPorts(closing)
        metrics = Metrics()
        served_metrics = ports.metrics(metrics, "127.0.0.1", 0)
        served_control = ports.control(inference.gate(), TOKEN, "127.0.0.1", 0)
        m = f"http://127.0.0.1:{served_metrics.address[1]}"
        c = f"http://127.0.0.1:{served_control.address[1]}/events"
        status, text = fetch(m + "/metrics", token=None)
        assert status == 200 and b"streamdetect_backlog_windows" in text
        status, text = fetch(m + "/healthz", token=None)
        assert status == 200 and json.loads(text)["ok"] is True
        assert fetch(m + "/events", token=None)[0] == 404  # each port answers its own routes only
        assert fetch(c, token=None)[0] == 401
        assert fetch(c.replace("/events", "/metrics"))[0] == 404
        status, text = fetch(c, "PUT", json.dumps([{**EVENT, "label": "y"}]).encode())
        assert status == 200 and labels(json.loads(text)) == ["y"]
        status, text = fetch(c)
        assert status == 200 and labels(json.loads(text)) == ["y"]
        kinds = type(served_metrics), type(served_control)
    with pytest.raises(OSError):  # closed with the stack
        fetch(c)
    return kinds


def test_ports_are_routes_of_the_asgi_surface_when_starlette_is_installed(inference):
    kinds = serve_and_ask(inference)
    assert MetricsServer not in kinds and ControlServer not in kinds


def test_the_stdlib_fallback_serves_the_same_routes_without_starlette(inference, monkeypatch):
    for name in ("starlette", "uvicorn"):
        monkeypatch.setitem(sys.modules, name, None)  # `import starlette` raises ImportError
    for name in [n for n in sys.modules if n.startswith("streamdetect.web.") and n.split(".")[-1] in
                 ("server", "routes_control", "routes_metrics", "auth", "app")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError):
        import streamdetect.web.server  # noqa: F401
    assert serve_and_ask(inference) == (MetricsServer, ControlServer)


def test_the_dashboard_applies_through_the_same_gate(inference, caplog):
    """The settings page and the playground call ``apply_config``: the gate's result, the gate's statuses."""
    import asyncio

    from streamdetect.config import WebConfig
    from streamdetect.web.common import apply_config
    from streamdetect.web.context import WebContext

    gate = inference.gate(timeout_s=0.2)
    ctx = WebContext(WebConfig(), gate.current, lambda: None, gate, None, None, lambda _t: None)
    new = parse_config({"events": [{**EVENT, "label": "from-settings"}]})
    with caplog.at_level(logging.INFO, logger="streamdetect.daemon.reload"):
        assert asyncio.run(apply_config(ctx, new)) == (200, "applied")
    assert "dashboard: config reload applied: events from-settings" in caplog.text
    assert [e.label for e in inference.config.events] == ["from-settings"]
    inference.hold = True
    status, message = asyncio.run(apply_config(ctx, new))
    assert status == 202 and message.startswith("pending")
    inference.hold, inference.error = False, "RuntimeError: broke"
    assert asyncio.run(apply_config(ctx, new)) == (500, "reload failed, the previous config keeps running: "
                                                        "RuntimeError: broke")


def test_the_asgi_surface_closes_connections_that_send_no_request(inference):
    """uvicorn alone never closes a socket that sends nothing: the surface closes it after its idle timeout, like
    the stdlib servers did, while a request that did arrive is answered."""
    import socket

    from streamdetect.web.server import HttpSurface, Listener

    surface = HttpSurface(idle_timeout_s=0.5)
    try:
        served = surface.serve(Listener("control API", "control.port", "127.0.0.1", 0,
                                        control_app(inference.gate(), TOKEN)))
        address = served.address[:2]
        silent = [socket.create_connection(address, timeout=10) for _ in range(50)]
        trickling = socket.create_connection(address, timeout=10)
        trickling.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        try:
            for conn in [*silent, trickling]:
                assert conn.recv(1) == b""  # closed by the server (a timeout here raises instead)
        finally:
            for conn in [*silent, trickling]:
                conn.close()
        status, text = fetch(f"http://127.0.0.1:{address[1]}/events")
        assert status == 200 and labels(json.loads(text)) == ["x"]
    finally:
        surface.close()


def test_malformed_requests_and_an_aborted_body_log_one_line_in_all_and_no_traceback(inference, caplog):
    """Any peer could write a uvicorn warning per malformed request, and a client that hung up mid-body left a
    ``ClientDisconnect`` traceback ("Exception in ASGI application")."""
    import socket

    from streamdetect.web.server import HttpSurface, Listener

    caplog.set_level(logging.INFO)
    seen: list[logging.LogRecord] = []
    keep = logging.Handler(logging.DEBUG)
    keep.emit = seen.append  # type: ignore[method-assign]
    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's own handlers: it does not propagate to the root
    surface = HttpSurface(idle_timeout_s=5)
    try:
        served = surface.serve(Listener("control API", "control.port", "127.0.0.1", 0,
                                        control_app(inference.gate(), TOKEN)))
        uvicorn_log.addHandler(keep)
        address = served.address[:2]
        for _ in range(20):
            with socket.create_connection(address, timeout=10) as conn:
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                assert conn.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection(address, timeout=10) as conn:  # 10 of the 1000 bytes it announces
            conn.sendall(b"PUT /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                         + b"\r\nContent-Length: 1000\r\n\r\n{\"events\":")
            deadline = time.monotonic() + 10
            while not served.server.server_state.tasks:  # the request reached the app, which waits for the rest
                assert time.monotonic() < deadline
                time.sleep(0.01)
        while served.server.server_state.tasks:  # and ended, after the hang-up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, _ = fetch(f"http://127.0.0.1:{address[1]}/events")
    finally:
        uvicorn_log.removeHandler(keep)
        surface.close()
    assert status == 200 and inference.asked == []
    warnings = [r for r in [*seen, *caplog.records] if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and not warnings[0].exc_info, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage() == "a peer sent what HTTP cannot carry: uvicorn answered 400 (Invalid HTTP " \
                                       "request received.)"
