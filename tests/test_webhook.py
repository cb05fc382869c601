"""The webhook sink against a real HTTP receiver on loopback that fails on purpose."""

import hashlib
import hmac
import json

import pytest
from fakes import HttpReceiver
from helpers import event_record, run_cli, write_config, write_tone_scene

from streamdetect.config import parse_config
from streamdetect.sinks.base import SinkError, SinkSet
from streamdetect.sinks.webhook import WebhookOptions, WebhookSink


def rec(i, phase="start"):
    return event_record(phase, id=f"e{i}", label="dog", start_s=float(i), end_s=None, peak_score=0.5,
                        peak_time_s=float(i), stream="s", time="t")


def options(url, tmp_path, **kw):
    return WebhookOptions(url=url, spool_dir=str(tmp_path / "spool"), backoff_s=0.01, max_backoff_s=0.05, **kw)


def test_retries_until_the_receiver_recovers_and_signs_the_body(tmp_path, monkeypatch):
    receiver = HttpReceiver(fail_first=3)
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    sink = WebhookSink(options(receiver.url, tmp_path, retries=5, secret_env="HOOK_SECRET",
                               headers={"X-Station": "garden"}))
    for i in range(3):
        sink.emit(rec(i))
    sink.close()
    receiver.stop()
    assert [r["id"] for r in receiver.records()] == ["e0", "e1", "e2"]  # each exactly once, in order
    for body, headers in zip(receiver.bodies, receiver.headers, strict=True):
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["X-Streamdetect-Signature"] == expected and headers["X-Station"] == "garden"


def test_outage_spools_and_a_restart_resends_everything_exactly_once(tmp_path):
    receiver = HttpReceiver()
    url = receiver.url
    receiver.stop()  # the receiver is down
    sinks = SinkSet([("hook", WebhookSink(options(url, tmp_path, retries=1)))], threaded=True)
    for i in range(4):
        sinks.emit(rec(i))
    sinks.close()
    # kept for a later try, not lost: counted as spooled, not as failures; detection went on
    assert sinks.failures["hook"] == 0 and sinks.sinks[0][1].spooled == 4
    spooled = [json.loads(line) for line in (tmp_path / "spool").glob("webhook-*.jsonl").__next__().read_text()
               .splitlines()]
    assert [r["id"] for r in spooled] == ["e0", "e1", "e2", "e3"]

    # the daemon restarts while the receiver is back on the same port; the spool goes out first, in order
    back = HttpReceiver(port=int(url.rsplit(":", 1)[1].split("/")[0]))
    sink = WebhookSink(options(url, tmp_path))
    sink.emit(rec(4))
    sink.close()
    back.stop()
    assert [r["id"] for r in back.records()] == ["e0", "e1", "e2", "e3", "e4"]
    assert all(p.read_text() == "" for p in (tmp_path / "spool").glob("webhook-*.jsonl"))


def test_bad_settings_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    with pytest.raises(SinkError, match="environment variable NOPE_SECRET"):
        WebhookSink(options("http://127.0.0.1:9/x", tmp_path, secret_env="NOPE_SECRET"))
    with pytest.raises(Exception, match=r"sinks\[0\]\.url"):
        parse_config({"events": [{"label": "a", "prompts": ["x"], "threshold": 0.1}],
                      "sinks": [{"type": "webhook", "url": "ftp://example.org/x"}]})


def test_cli_run_posts_records_and_names_a_missing_secret(tiny_model, tmp_path, monkeypatch):
    receiver = HttpReceiver(fail_first=1)
    wav = write_tone_scene(tmp_path / "a.wav", seconds=4.0)
    events = [{"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0}]
    sink = {"type": "webhook", "url": receiver.url, "spool_dir": str(tmp_path / "sp"), "backoff_s": 0.01}
    cfg = write_config(tmp_path / "c.yaml", tiny_model, events, sinks=[sink])
    result = run_cli("run", "--config", str(cfg), "--input", str(wav))
    receiver.stop()
    assert result.returncode == 0, result.stderr
    assert [(r["label"], r["phase"]) for r in receiver.records()] == [("dog", "start"), ("dog", "end")]
    cfg = write_config(tmp_path / "c2.yaml", tiny_model, events, sinks=[{**sink, "secret_env": "UNSET_SECRET_X"}])
    result = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert result.returncode == 2 and "UNSET_SECRET_X" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("fail_first", [4, 7])
def test_cli_records_of_a_run_during_an_outage_arrive_once_in_order_after_a_restart(tiny_model, tmp_path, fail_first):
    """Run 1 finds the receiver down and spools everything; run 2 (another input) finds it up but failing its
    first requests. Every record of both runs arrives exactly once, in order, and the spool ends up empty.
    (fail_first=7: every request of run 2 fails until the last flush when the sink closes.)"""
    down = HttpReceiver()
    port = down.port
    down.stop()
    events = [{"label": label, "prompts": [prompt], "threshold": -1.0}
              for label, prompt in [("dog", "a dog barking"), ("rain", "rain on a roof"), ("glass", "glass breaking")]]
    spool = tmp_path / "spool"
    hook = {"type": "webhook", "url": down.url, "spool_dir": str(spool), "retries": 0, "backoff_s": 0.01}
    expected = []
    for run, seconds in [(1, 4.0), (2, 5.0)]:
        emitted = tmp_path / f"run{run}.jsonl"
        cfg = write_config(tmp_path / f"c{run}.yaml", tiny_model, events,
                           sinks=[hook, {"type": "jsonl", "path": str(emitted)}])
        wav = write_tone_scene(tmp_path / f"in{run}.wav", seconds=seconds, seed=run)
        receiver = HttpReceiver(fail_first=fail_first, port=port) if run == 2 else None
        try:
            result = run_cli("run", "--config", str(cfg), "--input", str(wav))
        finally:
            if receiver is not None:
                receiver.stop()
        assert result.returncode == 0, result.stderr
        expected += [(r["id"], r["phase"]) for r in map(json.loads, emitted.read_text().splitlines())]
        if run == 1:
            # the outage was reported, once; the spooled records are not failures (they arrive later)
            assert result.stderr.count("unreachable") == 1 and "sink failures" not in result.stderr
            spooled = [json.loads(line) for p in spool.glob("webhook-*.jsonl") for line in p.read_text().splitlines()]
            assert [(r["id"], r["phase"]) for r in spooled] == expected and len(expected) == 6
    assert receiver.requests == fail_first + len(expected)  # nothing was sent twice
    assert [(r["id"], r["phase"]) for r in receiver.records()] == expected and len(expected) == 12
    assert all(p.read_text() == "" for p in spool.glob("webhook-*.jsonl"))
