"""What listens or executes: the metrics endpoint stays on loopback unless told, the command sink never goes
through a shell, secrets come from the environment and never reach the log, spool files stay in spool_dir."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fakes import HttpReceiver
from helpers import run_cli, write_config
from test_webhook import rec

from streamdetect.config import parse_config
from streamdetect.daemon.metrics import Metrics, MetricsServer
from streamdetect.sinks.base import SinkError
from streamdetect.sinks.command import CommandOptions, CommandSink
from streamdetect.sinks.webhook import WebhookOptions, WebhookSink

EVENT = {"label": "tone", "prompts": ["a beep"], "threshold": -1.0}


def test_metrics_listen_on_loopback_by_default():
    config = parse_config({"events": [EVENT], "metrics": {"port": 9464}})
    assert config.metrics.host == "127.0.0.1"
    server = MetricsServer(Metrics(), port=0)  # the server's own default, too
    try:
        host, port = server.address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert json.loads(response.read())["ok"] is True
    finally:
        server.close()


def test_control_api_listens_on_loopback_by_default():
    from streamdetect.daemon.control import ControlServer
    from streamdetect.daemon.reload import ReloadGate

    config = parse_config({"events": [EVENT], "control": {"port": 9465}})
    assert config.control.host == "127.0.0.1"
    server = ControlServer(ReloadGate(lambda: config, lambda _c: None), "t0ken-t0ken", port=0)  # the server's own default
    try:
        assert server.address[0] == "127.0.0.1"
    finally:
        server.close()


def test_command_sink_passes_shell_syntax_literally(tmp_path):
    marker = tmp_path / "pwned"
    hostile = [f"$(touch {marker})", f"; touch {marker}", f"`touch {marker}`", "*", "a b", "$HOME", "|", "&&"]
    script = ("import json, sys; from pathlib import Path; "
              "Path(sys.argv[1]).write_text(json.dumps({'argv': sys.argv[2:], 'stdin': json.load(sys.stdin)}))")
    out = tmp_path / "seen.json"
    sink = CommandSink(CommandOptions(argv=[sys.executable, "-c", script, str(out), *hostile]))
    record = dataclasses.replace(rec(1), label=f"$(touch {marker}); `id`")
    sink.emit(record)
    seen = json.loads(out.read_text())
    assert seen["argv"] == hostile and seen["stdin"]["label"] == f"$(touch {marker}); `id`"
    assert not marker.exists()


def test_command_sink_missing_program_is_a_clear_error(tmp_path):
    sink = CommandSink(CommandOptions(argv=["no-such-program-here; ls"]))
    with pytest.raises(SinkError, match="command 'no-such-program-here; ls' not found"):
        sink.emit(rec(0))


def test_webhook_secret_and_url_password_never_reach_the_log(tiny_model, tmp_path):
    secret, password = "hunter2-very-secret-value", "url-pass-word-xyz"
    receiver = HttpReceiver()
    port = receiver.port
    receiver.stop()  # every delivery fails, so every failure path logs
    sf.write(tmp_path / "a.wav", np.random.default_rng(0).normal(0, 0.1, 4 * 48_000).astype(np.float32), 48_000)
    sinks = [{"type": "webhook", "url": f"http://user:{password}@127.0.0.1:{port}/hook", "retries": 1,
              "backoff_s": 0.01, "secret_env": "HOOK_SECRET", "spool_dir": str(tmp_path / "spool")}]
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [EVENT], sinks, runtime={"device": "cpu"})
    result = run_cli("run", "--config", str(cfg), "--input", str(tmp_path / "a.wav"), "--log-level", "DEBUG",
                     env={**os.environ, "HOOK_SECRET": secret})
    assert result.returncode == 0, result.stderr
    assert "unreachable" in result.stderr and "user:***@127.0.0.1" in result.stderr
    for text in (result.stderr, result.stdout):
        assert secret not in text and password not in text
    assert secret not in cfg.read_text()  # the config names the variable, not the value
    spooled = next((tmp_path / "spool").glob("webhook-*.jsonl")).read_text()
    assert secret not in spooled and password not in spooled


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/../../../../etc/passwd", "http://127.0.0.1/%2e%2e/%2e%2e/x", "https://a.example/x/../../y",
    "http://127.0.0.1:1/" + "a/" * 200, "http://[::1]:8080/hook?q=/../../z#/../w",
])
def test_spool_file_stays_inside_spool_dir_whatever_the_url(tmp_path, url):
    spool_dir = tmp_path / "spool"
    sink = WebhookSink(WebhookOptions(url=url, spool_dir=str(spool_dir), retries=0, timeout_s=0.2))
    try:
        assert sink.spool.resolve().parent == spool_dir.resolve()
        assert sink.spool.name.startswith("webhook-") and sink.spool.suffix == ".jsonl"
    finally:
        sink.close()
    # nothing written outside; inside, only the spool's lock file (held while the sink runs)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f".{sink.spool.stem}.lock"]
    assert [p for p in Path(tmp_path).iterdir()] == [spool_dir]
