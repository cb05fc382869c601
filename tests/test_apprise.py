"""The apprise sink against a real HTTP receiver on loopback (Apprise's json:// service posts title, message
and base64 attachments as JSON): templates, the spectrogram attachment written by the clips sink, per-label
rate limits, quiet hours, secrets from the environment, retries and counted failures."""

import base64
import threading
import time

import numpy as np
import pytest
from fakes import HttpReceiver
from helpers import event_record, free_port

from streamdetect.config import ConfigError, parse_config
from streamdetect.schedule import Site
from streamdetect.sinks.apprise import AppriseOptions, AppriseSink
from streamdetect.sinks.base import SinkContext, SinkError, SinkSet, build_sinks
from streamdetect.sinks.clips import ClipsOptions, ClipsSink


@pytest.fixture
def receiver():
    r = HttpReceiver()
    yield r
    r.stop()


def record(phase="end", label="bird", time="2026-06-01T04:00:00.000+00:00", id="a1b2c3d4e5f6", **kw):
    return event_record(phase, id=id, label=label, time=time, peak_score=0.4321, **kw)


def test_delivery_with_templates_and_the_spectrogram_attachment(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_PATH", "secret-topic")
    clips_dir = tmp_path / "clips"
    clips = ClipsSink(ClipsOptions(dir=str(clips_dir), pre_roll_s=1.0, post_roll_s=1.0, spectrogram=True))
    notify = AppriseSink(AppriseOptions(
        urls=[f"json://127.0.0.1:{receiver.port}/${{HOOK_PATH}}"], title="{label} on {stream}",
        body="{label} peak {peak_score:.2f} for {duration_s:.0f} s", attach_spectrogram=True,
        clips_dir=str(clips_dir), attach_wait_s=20))
    sinks = SinkSet([("clips", clips), ("apprise", notify)], threaded=True, drain_timeout_s=60)
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(8000 * 8)).astype(np.float32)
    for i in range(0, audio.size, 800):
        sinks.audio("garden", i, audio[i : i + 800], 8000)
    sinks.emit(record(start_s=2.0, end_s=5.0))
    sinks.close()
    assert sinks.failures == {"clips": 0, "apprise": 0}
    [(path, body)] = receiver.posts
    assert path == "/secret-topic"  # the secret came from the environment, not the YAML
    assert body["title"] == "bird on garden" and body["message"] == "bird peak 0.43 for 3 s"
    [image] = sorted(clips_dir.rglob("*.png"))
    [attachment] = body["attachments"]
    assert attachment["mimetype"] == "image/png" and attachment["filename"] == image.name
    assert base64.b64decode(attachment["base64"]) == image.read_bytes()


def test_rate_limit_per_label_and_quiet_hours(receiver):
    sink = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{receiver.port}/x"], min_interval_s=600,
                                      quiet_hours=["22:00-07:00"]), Site("Europe/Berlin"))
    sink.emit(record(time="2026-06-01T08:00:00.000+00:00"))  # 10:00 in Berlin: sent
    sink.emit(record(time="2026-06-01T08:05:00.000+00:00", id="b2"))  # same label 5 min later: left out
    sink.emit(record(time="2026-06-01T08:05:00.000+00:00", id="c3", label="dog"))  # another label: sent
    sink.emit(record(time="2026-06-01T08:11:00.000+00:00", id="d4"))  # 11 min later: sent
    sink.emit(record(time="2026-06-01T21:30:00.000+00:00", id="e5"))  # 23:30 in Berlin: quiet
    sink.emit(record(phase="start", time="2026-06-01T12:00:00.000+00:00", id="f6"))  # phase end only
    assert [b["title"] for _, b in receiver.posts] == ["bird heard on garden", "dog heard on garden",
                                                      "bird heard on garden"]
    assert sink.suppressed == {"rate_limit": 1, "quiet_hours": 1} and sink.sent == 3


def test_failures_are_retried_then_counted():
    port = free_port()  # nothing listens there
    sink = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{port}/x"], retries=2, backoff_s=0.01,
                                      max_backoff_s=0.02))
    sinks = SinkSet([("apprise", sink)])
    sinks.emit(record())
    assert sinks.failures == {"apprise": 1}
    with pytest.raises(SinkError, match="after 3 attempts"):
        sink.emit(record(id="z9", time="2026-06-02T04:00:00.000+00:00"))


def test_a_receiver_that_comes_back_gets_the_retry():
    receiver = HttpReceiver(500)
    try:
        sink = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{receiver.port}/x"], retries=5,
                                          backoff_s=0.05, max_backoff_s=0.05))
        done = threading.Thread(target=sink.emit, args=(record(),))
        done.start()
        while len(receiver.posts) < 2:
            threading.Event().wait(0.01)
        receiver.mode = "ok"
        done.join(10)
        assert sink.sent == 1 and 2 <= len(receiver.posts) <= 6
    finally:
        receiver.stop()


def test_missing_secret_and_bad_templates_are_clear_errors(monkeypatch):
    monkeypatch.delenv("NTFY_TOKEN", raising=False)
    with pytest.raises(SinkError, match="NTFY_TOKEN"):
        AppriseSink(AppriseOptions(urls=["ntfys://${NTFY_TOKEN}@ntfy.sh/garden"]))
    events = [{"label": "bird", "prompts": ["birdsong"], "threshold": 0.2}]
    with pytest.raises(ConfigError, match=r"sinks\[0\].title: .*unknown field \{lable\}"):
        parse_config({"events": events, "sinks": [{"type": "apprise", "urls": ["json://127.0.0.1/x"],
                                                   "title": "{lable}"}]})
    with pytest.raises(ConfigError, match="cannot be formatted"):
        parse_config({"events": events, "sinks": [{"type": "apprise", "urls": ["json://127.0.0.1/x"],
                                                   "body": "{peak_score:d}"}]})
    with pytest.raises(ConfigError, match="site.latitude"):
        parse_config({"events": events, "sinks": [{"type": "apprise", "urls": ["json://127.0.0.1/x"],
                                                   "quiet_hours": ["sunset..sunrise"]}]})
    with pytest.raises(SinkError, match=r"urls\[0\]"):
        AppriseSink(AppriseOptions(urls=["nosuchservice://x"]))


def test_built_from_the_registry_with_the_site(receiver):
    config = parse_config({"events": [{"label": "bird", "prompts": ["birdsong"], "threshold": 0.2}],
                           "site": {"timezone": "Europe/Berlin"},
                           "sinks": [{"type": "apprise", "urls": [f"json://127.0.0.1:{receiver.port}/x"],
                                      "quiet_hours": ["00:00-12:00"]}]})
    sinks = build_sinks(config.sinks, context=SinkContext(config.site.site()))
    sinks.emit(record(time="2026-06-01T09:00:00.000+00:00"))  # 11:00 in Berlin: quiet (09:00 UTC is not)
    sinks.close()
    [(_, sink)] = sinks.sinks
    assert isinstance(sink, AppriseSink) and sink.suppressed["quiet_hours"] == 1 and receiver.posts == []


def test_a_spooled_notification_is_sent_when_the_service_answers_again(tmp_path):
    receiver = HttpReceiver(500)
    try:
        options = AppriseOptions(urls=[f"json://127.0.0.1:{receiver.port}/x"], retries=0, backoff_s=0.01,
                                 max_backoff_s=0.01, spool_dir=str(tmp_path / "spool"))
        sink = AppriseSink(options)
        sink.emit(record())  # kept for a later try: not a failure
        assert sink.spooled == 1
        with pytest.raises(SinkError, match="spool"):  # one daemon per spool, as for the webhook
            AppriseSink(options)
        threading.Event().wait(0.05)
        sink.idle()  # still refused: it stays
        assert sink.sent == 0 and len(receiver.posts) == 2
        receiver.mode = "ok"
        threading.Event().wait(0.05)
        sink.idle()
        assert sink.sent == 1 and receiver.posts[-1][1]["title"] == "bird heard on garden"
        sink.idle()
        assert len(receiver.posts) == 3  # sent once, and gone from the spool
        sink.close()
    finally:
        receiver.stop()


def test_a_notification_later_than_max_late_s_is_dropped_and_counted(tmp_path):
    receiver = HttpReceiver(500)
    try:
        sink = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{receiver.port}/x"], retries=0,
                                          backoff_s=0.01, max_backoff_s=0.01, spool_dir=str(tmp_path),
                                          max_late_s=0.05))
        sink.emit(record())
        receiver.mode = "ok"
        threading.Event().wait(0.1)
        sink.idle()
        assert (sink.sent, sink.late_dropped, len(receiver.posts)) == (0, 1, 1)
        sink.close()
    finally:
        receiver.stop()


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_a_stalled_or_trickling_service_is_an_outage_within_the_deadline(tmp_path, mode):
    """Apprise's timeouts are per read: without a whole-call deadline a trickle holds the sink's worker."""
    stalled = HttpReceiver(mode, delay_s=0.2)  # trickle: 38 bytes of answer, 7.6 s in all
    port = stalled.port
    sink = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{port}/x"], timeout_s=0.3, retries=1,
                                      backoff_s=0.01, max_backoff_s=0.01, spool_dir=str(tmp_path)))
    back = None
    try:
        started = time.monotonic()
        sink.emit(record())  # two attempts: the first runs out of time, the second fails at once (one in flight)
        # ended by the 0.3 s deadline, not by the answer (7.6 s of trickle, or never); room for a busy machine
        assert time.monotonic() - started < 5
        assert (sink.spooled, sink.sent, stalled.requests) == (1, 0, 1)
        stalled.stop()  # hangs up on the stuck call, which then ends
        back = HttpReceiver(port=port)
        deadline = time.monotonic() + 20.0
        while sink.sent == 0 and time.monotonic() < deadline:
            sink.idle()
            threading.Event().wait(0.02)
        for _ in range(3):
            sink.idle()
        assert sink.sent == 1 and len(back.bodies) == 1 and stalled.bodies == []  # delivered once
        assert back.posts[0][1]["title"] == "bird heard on garden"
    finally:
        sink.close()
        stalled.stop()
        if back is not None:
            back.stop()
