"""The webhook sink against receivers that hang, trickle, answer 2 GB, refuse (4xx) or redirect (3xx), and a
spool of 2,000 records at start-up; real daemons on loopback stopped with SIGTERM at the moments that matter."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakes import HttpReceiver
from helpers import CliRun, write_config
from test_webhook import options, rec

from streamdetect.daemon.metrics import Metrics
from streamdetect.sinks.base import SinkError, SinkSet
from streamdetect.sinks.webhook import WebhookSink

LIVE_TONE = {"type": "ffmpeg", "name": "tone", "url": "sine=frequency=1000:sample_rate=48000",
             "input_args": ["-re", "-f", "lavfi"], "live": True}


def always_on(n: int) -> list[dict]:
    """``n`` events that start at the first window and stay on: n start records at once, n ends at shutdown."""
    return [{"label": f"e{i}", "prompts": [f"sound {i}"], "threshold": -1.0} for i in range(n)]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_until(condition, timeout_s: float, what: str, run: CliRun | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (f":\n{run.log}" if run else "")
        if run is not None:
            assert run.proc.poll() is None, run.log
        time.sleep(0.05)


def test_a_trickling_answer_cannot_hold_a_request_past_its_total_deadline(tmp_path):
    """One byte every 0.5 s never trips a 1 s per-read timeout; the total deadline ends the request."""
    receiver = HttpReceiver("trickle", delay_s=0.5)
    sink = WebhookSink(options(receiver.url, tmp_path, retries=0, timeout_s=1.0))
    try:
        sink.emit(rec(0))  # spooled for a later try: not a failure
        assert sink._down is not None and sink._down.startswith("no complete answer within 1 s")
        sent = receiver.sent_bytes
    finally:
        sink.close()  # tries the spool again, with back-off, for a bounded time
        receiver.stop()
    assert sent <= 4  # of a 38-byte answer: the client hung up after about a second
    assert [json.loads(line)["id"] for line in sink.spool.read_text().splitlines()] == ["e0"]


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_sigterm_with_a_hanging_or_trickling_receiver_keeps_every_record_in_the_spool(tiny_model, tmp_path, mode):
    receiver = HttpReceiver(mode, delay_s=0.5)
    out, spool_dir = tmp_path / "out.jsonl", tmp_path / "spool"
    hook = {"type": "webhook", "url": receiver.url, "spool_dir": str(spool_dir), "timeout_s": 2.0, "retries": 1,
            "backoff_s": 0.2}
    cfg = write_config(tmp_path / "c.yaml", tiny_model, always_on(16), runtime={"device": "cpu"},
                       sinks=[hook, {"type": "jsonl", "path": str(out)}], sources=[LIVE_TONE])
    run = CliRun("run", "--config", str(cfg))
    try:
        wait_until(lambda: len(lines(out)) >= 16 and receiver.requests >= 1, 120, "16 start records", run)
        status = run.stop(timeout_s=120)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        receiver.stop()
    assert status == 0, run.log
    emitted = [(r["id"], r["phase"]) for r in lines(out)]
    spooled = [(r["id"], r["phase"]) for r in lines(next(spool_dir.glob("webhook-*.jsonl")))]
    assert len(emitted) == 32  # 16 starts, and the 16 ends written at shutdown
    assert sorted(spooled) == sorted(emitted), run.log  # none acknowledged, so every one waits in the spool, once
    assert "lost" not in run.log and "Traceback" not in run.log


HUGE_ANSWER_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from test_webhook import rec
    from streamdetect.sinks.webhook import WebhookOptions, WebhookSink

    def hwm_mb():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024

    sink = WebhookSink(WebhookOptions(url=sys.argv[1], spool_dir=sys.argv[4], retries=0, timeout_s=30))
    sink.emit(rec(0))  # warm-up: imports, the event loop, the first connection
    before = hwm_mb()
    for i in range(1, 4):
        sink.emit(rec(i))
    sink.close()
    print("RESULT", json.dumps({"before": before, "after": hwm_mb(), "delivered": sink.delivered}))
""")


def test_a_2_gb_answer_is_read_only_up_to_its_bound(tmp_path):
    receiver = HttpReceiver("huge", huge_bytes=300 << 20)
    tests = str(Path(__file__).parent)
    try:
        result = subprocess.run([sys.executable, "-c", HUGE_ANSWER_SCRIPT, receiver.url, tests,
                                 str(Path(tests).parent), str(tmp_path / "spool")],
                                capture_output=True, text=True, timeout=120)
    finally:
        receiver.stop()
    assert result.returncode == 0, result.stderr
    out = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["delivered"] == 4  # a 200 is a delivery, however long the body it declares
    assert out["after"] - out["before"] < 32, out  # reading the 300 MB sent (of 2 GB declared) would add them
    assert receiver.sent_bytes < 4 * (300 << 20)  # each answer was cut short by the client


@pytest.mark.parametrize("status", [404, 401])
def test_a_4xx_is_a_counted_permanent_failure_kept_in_the_dead_letter_file(tmp_path, caplog, status):
    receiver = HttpReceiver(status)
    caplog.set_level(logging.ERROR)
    hook = WebhookSink(options(receiver.url, tmp_path, retries=3))
    sinks = SinkSet([("hook", hook)], threaded=True)
    metrics = Metrics()
    metrics.watch_sinks(["hook"], sinks.failures.__getitem__, lambda _name: 0)
    try:
        for i in range(8):
            sinks.emit(rec(i))
        sinks.close()
    finally:
        receiver.stop()
    assert receiver.requests == 8  # refused for good: never retried
    assert sinks.failures["hook"] == 8
    assert 'streamdetect_sink_failures_total{sink="hook"} 8.0' in metrics.exposition().decode()
    logged = [r.getMessage() for r in caplog.records if "sink hook failed" in r.getMessage()]
    assert len(logged) == 1 and f"HTTP {status}" in logged[0] and "dead" not in logged[0].split("kept in")[0]
    assert [json.loads(line)["id"] for line in hook.dead_letter.read_text().splitlines()] == [f"e{i}" for i in range(8)]
    assert not hook.spool.is_file() or hook.spool.read_text() == ""  # nothing waits for a retry that cannot help


def test_a_redirect_is_reported_as_one_and_its_records_are_not_stuck(tmp_path):
    receiver = HttpReceiver(301, location="http://127.0.0.1:1/new?token=abc123secret")
    sink = WebhookSink(options(receiver.url, tmp_path))
    try:
        sink.spool.write_text(json.dumps(rec(0).to_dict()) + "\n")  # left by an earlier run
        with pytest.raises(SinkError) as caught:
            sink.emit(rec(1))
    finally:
        sink.close()
        receiver.stop()
    message = str(caught.value)
    assert "redirect to http://127.0.0.1:1/new?token=***" in message and "unreachable" not in message
    assert "abc123secret" not in message and "HTTP 301" in message
    assert [json.loads(line)["id"] for line in sink.dead_letter.read_text().splitlines()] == ["e0", "e1"]
    assert sink.spool.read_text() == ""  # not retried for ever


def test_the_spool_is_sent_by_the_worker_after_start_up_and_sigterm_mid_flush_sends_nothing_twice(
        tiny_model, tmp_path):
    receiver = HttpReceiver("ok", delay_s=0.03)
    spool_dir, out = tmp_path / "spool", tmp_path / "out.jsonl"
    probe = WebhookSink(options(receiver.url, tmp_path))  # only to learn the spool's name
    probe.close()
    originals = [f"e{i}" for i in range(2000)]
    probe.spool.write_text("".join(json.dumps(rec(i).to_dict()) + "\n" for i in range(2000)))
    hook = {"type": "webhook", "url": receiver.url, "spool_dir": str(spool_dir)}
    cfg = write_config(tmp_path / "c.yaml", tiny_model, always_on(2), runtime={"device": "cpu"},
                       sinks=[hook, {"type": "jsonl", "path": str(out)}], sources=[LIVE_TONE])
    run = CliRun("run", "--config", str(cfg))
    try:
        wait_until(lambda: len(lines(out)) >= 2, 120, "detection to start", run)
        assert receiver.requests < 2000  # detection started while the spool was still going out
        wait_until(lambda: receiver.requests >= 100, 60, "100 spooled records re-sent", run)
        status = run.stop(timeout_s=60)  # SIGTERM in the middle of the flush
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        receiver.stop()
    assert status == 0, run.log
    delivered = [r["id"] for r in receiver.records()]
    left = [r["id"] for r in lines(probe.spool)]
    sent_originals = [i for i in delivered if i in set(originals)]
    left_originals = [i for i in left if i in set(originals)]
    assert 100 <= len(sent_originals) < 2000, run.log
    assert sent_originals + left_originals == originals  # in order; none sent twice, none lost
    new = [(r["id"], r["phase"]) for r in lines(out)]
    assert sorted(new) == sorted((r["id"], r["phase"]) for r in receiver.records() + lines(probe.spool)
                                 if r["id"] not in set(originals))
