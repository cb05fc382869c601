"""The daily report from the event store (figures checked against the records written), the summary sent
through sinks at a local time (fixed clock), and the spectrogram images next to clips (axes, fixed colour
scale, retention of clip and image as one)."""

import io
import json
import sys
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from helpers import event_record, run_cli, written_clips

from streamdetect.config import ConfigError, parse_config
from streamdetect.daemon.summary import SummaryScheduler
from streamdetect.report import day_summary, default_day, hourly_chart_png
from streamdetect.sinks.base import FailureLog, Sink, SinkError
from streamdetect.sinks.clips import ClipsOptions, ClipsSink, scan_clips
from streamdetect.sinks.jsonl import JsonlOptions, JsonlSink
from streamdetect.sinks.spectrogram import spectrogram_png
from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink
from streamdetect.store import connect, set_feedback

BERLIN = ZoneInfo("Europe/Berlin")
PNG = b"\x89PNG\r\n\x1a\n"


def berlin(*args):
    return datetime(*args, tzinfo=BERLIN).astimezone(timezone.utc).isoformat(timespec="milliseconds")


# (id, label, local fired time, peak score): 2026-06-01 in Berlin runs from 05-31 22:00 to 06-01 22:00 UTC
EVENTS = [
    ("a0000001", "bird", berlin(2026, 5, 31, 23, 59), 0.9),  # the day before: not counted
    ("a0000002", "bird", berlin(2026, 6, 1, 0, 5), 0.3),  # 00:05 local (22:05 UTC the day before)
    ("a0000003", "bird", berlin(2026, 6, 1, 5, 10), 0.7),
    ("a0000004", "bird", berlin(2026, 6, 1, 5, 40), 0.5),
    ("a0000005", "bird", berlin(2026, 6, 1, 21, 30), 0.8),  # rejected below
    ("a0000006", "dog", berlin(2026, 6, 1, 12, 0), 0.4),
    ("a0000007", "dog", berlin(2026, 6, 1, 23, 59, 59), 0.6),
    ("a0000008", "bird", berlin(2026, 6, 2, 0, 0), 0.95),  # the next day: not counted
]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "events.db"
    sink = SqliteSink(SqliteOptions(path=str(path)))
    for event_id, label, fired, score in EVENTS:
        end = (datetime.fromisoformat(fired) + timedelta(seconds=4)).isoformat(timespec="milliseconds")
        sink.emit(event_record("start", id=event_id, label=label, time=fired, peak_score=score - 0.1))
        sink.emit(event_record("end", id=event_id, label=label, time=end, peak_score=score,
                               private=event_id == "a0000006"))
    sink.close()
    db = connect(path)
    set_feedback(db, "a0000005", "rejected", "2026-06-02T08:00:00Z")
    db.close()
    return path


def test_report_figures_match_the_store(store, tmp_path):
    clips = {"a0000003": tmp_path / "bird" / "x_a0000003.flac"}
    summary = day_summary(store, date(2026, 6, 1), "Europe/Berlin", clips)
    by_label = {e.label: e for e in summary.labels}
    bird, dog = by_label["bird"], by_label["dog"]
    assert (bird.count, dog.count, summary.events, summary.rejected, summary.private) == (3, 2, 5, 1, 1)
    assert bird.first == "2026-06-01T00:05:00+02:00" and bird.last == "2026-06-01T05:40:00+02:00"
    assert dog.first == "2026-06-01T12:00:00+02:00" and dog.last == "2026-06-01T23:59:59+02:00"
    assert (bird.best_event, bird.best_score, bird.best_clip) == ("a0000003", 0.7, str(clips["a0000003"]))
    assert (dog.best_event, dog.best_clip) == ("a0000007", None)
    assert bird.hourly[0] == 1 and bird.hourly[5] == 2 and sum(bird.hourly) == 3 and bird.hourly[21] == 0
    assert summary.hourly == [a + b for a, b in zip(bird.hourly, dog.hourly, strict=True)]
    # the same store read in UTC gives other days
    utc = day_summary(store, date(2026, 6, 1), "UTC")
    assert [(e.label, e.count, e.best_event) for e in utc.labels] == [("bird", 3, "a0000008"), ("dog", 2, "a0000007")]
    assert hourly_chart_png(summary).startswith(PNG)


def test_default_day_is_yesterday_in_the_site_zone():
    late = datetime(2026, 6, 1, 23, 30, tzinfo=timezone.utc)  # already 06-02 in Berlin
    assert default_day(late, "Europe/Berlin") == date(2026, 6, 1)
    assert default_day(late, "UTC") == date(2026, 5, 31)


def test_cli_report_text_json_and_chart(store, tmp_path):
    chart = tmp_path / "chart.png"
    result = run_cli("report", "--db", str(store), "--day", "2026-06-01", "--timezone", "Europe/Berlin",
                     "--chart", str(chart), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {e["label"]: e["count"] for e in data["labels"]} == {"bird": 3, "dog": 2}
    assert data["chart"] == str(chart) and chart.read_bytes().startswith(PNG)
    text = run_cli("report", "--db", str(store), "--day", "2026-06-01", "--timezone", "Europe/Berlin",
                   "--no-chart", cwd=tmp_path)
    assert text.returncode == 0 and "bird: 3, first 00:05:00, last 05:40:00" in text.stdout
    bad = run_cli("report", "--db", str(tmp_path / "none.db"), "--day", "2026-06-01", cwd=tmp_path)
    assert bad.returncode == 2 and "no event database" in bad.stderr and "Traceback" not in bad.stderr


class Summaries(Sink):
    sends_summaries = True

    def __init__(self):
        super().__init__(Sink.Options())
        self.got = []

    def emit(self, record):
        pass

    def summary(self, summary, chart):
        self.got.append((summary, chart))


def test_the_summary_goes_out_once_at_the_local_time(store, tmp_path):
    config = parse_config({"events": [{"label": "bird", "prompts": ["birdsong"], "threshold": 0.2}],
                           "site": {"timezone": "Europe/Berlin"},
                           "summary": {"at": "21:00", "day": "yesterday", "store": str(store)},
                           "sinks": [{"type": "stdout"}]})
    now = [datetime(2026, 6, 2, 18, 59, tzinfo=timezone.utc)]  # 20:59 in Berlin
    sink, jsonl = Summaries(), JsonlSink(JsonlOptions(path=str(tmp_path / "out.jsonl")))
    scheduler = SummaryScheduler(config, [("s", sink), ("j", jsonl)], FailureLog({"s": 0, "j": 0}),
                                 clock=lambda: now[0], chart_dir=tmp_path / "charts")
    assert scheduler.tick() is None and sink.got == []
    now[0] += timedelta(minutes=1, seconds=5)
    sent = scheduler.tick()
    assert sent is not None and sent.day == "2026-06-01" and sent.events == 5
    assert scheduler.tick() is None and len(sink.got) == 1  # once a day
    [(summary, chart)] = sink.got
    assert chart == tmp_path / "charts" / "summary-2026-06-01.png" and chart.read_bytes().startswith(PNG)
    jsonl.close()
    line = json.loads((tmp_path / "out.jsonl").read_text())
    assert line["summary"]["events"] == 5 and line["summary"]["chart"] == str(chart)
    assert scheduler.next_due == datetime(2026, 6, 3, 19, 0, tzinfo=timezone.utc)


def test_summary_config_needs_a_store_and_a_sender():
    events = [{"label": "bird", "prompts": ["birdsong"], "threshold": 0.2}]
    with pytest.raises(ConfigError, match="summary.store"):
        parse_config({"events": events, "summary": {"at": "21:00"}, "sinks": [{"type": "stdout"}]})
    with pytest.raises(ConfigError, match="cannot send a summary|can send"):
        parse_config({"events": events, "summary": {"at": "21:00"},
                      "sinks": [{"type": "sqlite", "path": "x.db"}]})
    with pytest.raises(ConfigError, match="'phone' is not a sink name"):
        parse_config({"events": events, "summary": {"at": "21:00", "sinks": ["phone"]},
                      "sinks": [{"type": "sqlite", "path": "x.db"}]})


# -- spectrograms ------------------------------------------------------------------------------------------


def tone(seconds, level, sr=16_000, hz=2000.0):
    t = np.arange(int(seconds * sr)) / sr
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_spectrogram_colour_scale_is_fixed_across_clips():
    from matplotlib.image import imread

    sr = 16_000
    loud = np.round(tone(4, 0.5) * 32767).astype(np.int16)
    quiet = np.round(tone(4, 0.005) * 32767).astype(np.int16)
    images = [imread(io.BytesIO(spectrogram_png(x, sr, [], "t"))) for x in (loud, quiet)]
    # stretched to each clip's own range both would look alike; on one scale the quiet tone is darker
    assert images[0].shape == images[1].shape and images[0][..., :3].mean() > images[1][..., :3].mean()


def test_clip_and_image_are_written_and_deleted_together(tmp_path):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), pre_roll_s=0.5, post_roll_s=0.5, spectrogram=True,
                                  keep_best=False))
    audio = tone(6, 0.3, sr=8000)
    for i in range(0, audio.size, 800):
        sink.audio("garden", i, audio[i : i + 800], 8000)
    sink.stream_ended("garden")
    sink.emit(event_record("end", id="abcdef123456", label="bird", start_s=1.0, end_s=3.0, stream="garden"))
    [clip] = written_clips(sink)
    image = clip.with_suffix(".png")
    assert image.read_bytes().startswith(PNG)
    [found] = scan_clips(tmp_path)
    assert found.size == clip.stat().st_size + image.stat().st_size  # the size limit counts both
    orphan = tmp_path / "bird" / "2020-01-01T00-00-00Z_garden_0.1000_deadbeef.png"
    orphan.write_bytes(PNG)  # an image whose clip is gone
    scan_clips(tmp_path)
    assert not orphan.exists()
    sink.close()  # one clips sink per folder: the retention pass below is another one
    old = datetime.now(timezone.utc) + timedelta(days=30)
    retention = ClipsSink(ClipsOptions(dir=str(tmp_path), max_age_days=1, keep_best=False))
    deleted = retention.apply_retention(now=old)
    retention.close()
    assert deleted == [clip] and not clip.exists() and not image.exists()


def test_spectrogram_without_matplotlib_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SinkError, match=r"streamdetect\[plot\]") as info:
        ClipsSink(ClipsOptions(dir=str(tmp_path), spectrogram=True))
    assert "\n" not in str(info.value)


def test_the_daemon_sends_the_summary_through_its_sinks(store, tiny_model, tmp_path):
    import time

    from streamdetect.daemon.service import DetectorService
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.sinks.base import SinkSet

    config = parse_config({"model": str(tiny_model), "events": [{"label": "bird", "prompts": ["birdsong"],
                                                                   "threshold": 0.2}],
                           "site": {"timezone": "Europe/Berlin"}, "runtime": {"device": "cpu"},
                           "summary": {"at": "06:00", "day": "yesterday", "store": str(store)},
                           "sinks": [{"type": "stdout"}, {"type": "sqlite", "path": str(tmp_path / "x.db")}]})
    sink, other = Summaries(), Summaries()
    clock = [datetime(2026, 6, 2, 3, 0, tzinfo=timezone.utc)]  # 05:00 in Berlin: one hour early
    sinks = SinkSet([("stdout#0", sink), ("sqlite#1", other)])
    with DetectorService(config, ModelBundle.load(tiny_model), sinks=sinks, clock=lambda: clock[0]) as service:
        assert service.summary is not None and service.summary.next_due.hour == 4  # 06:00 CEST
        assert [name for name, _ in service.summary.senders] == ["stdout#0", "sqlite#1"]
    # the scheduler's own thread, checking often, with the clock moved past the due time
    scheduler = SummaryScheduler(config, [("s", sink)], FailureLog({"s": 0}), clock=lambda: clock[0],
                                 chart_dir=tmp_path / "charts", check_s=0.05)
    scheduler.start()
    try:
        clock[0] = datetime(2026, 6, 2, 4, 0, 1, tzinfo=timezone.utc)
        deadline = time.monotonic() + 30
        while not sink.got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.close()
    [(summary, chart)] = sink.got
    assert summary.day == "2026-06-01" and summary.events == 5 and chart is not None
