"""Schedules: periods in local time and around the sun, across midnight and DST, and what the detector does
outside them (no encoder call, no firing, the source's audio not recorded). Clocks are fixed and handed in."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from helpers import SAMPLE_RATE, FakeEncoder, collecting_sink, config_dict, immediate_event

from streamdetect.analysis.replay import Replay
from streamdetect.config import ConfigError, parse_config
from streamdetect.daemon.build import build_detector
from streamdetect.daemon.metrics import Metrics
from streamdetect.model.manifest import ModelBundle
from streamdetect.schedule import Period, Schedule, Site, local_time_today, sun_time
from streamdetect.sinks.base import Sink, SinkSet

BERLIN = Site("Europe/Berlin", 52.52, 13.405)
UTC = timezone.utc


def local(tz, *args):
    return datetime(*args, tzinfo=ZoneInfo(tz))


# -- the schedule itself ------------------------------------------------------------------------------------


def test_clock_periods_and_midnight_crossing():
    s = Schedule.of(["05:00-09:00", "22:00-02:00"], BERLIN)
    at = lambda *a: local("Europe/Berlin", 2026, 6, 10, *a)  # noqa: E731
    assert [s.active(at(h, m)) for h, m in [(4, 59), (5, 0), (8, 59), (9, 0)]] == [False, True, True, False]
    assert [s.active(at(h, m)) for h, m in [(21, 59), (22, 0), (23, 59)]] == [False, True, True]
    after_midnight = local("Europe/Berlin", 2026, 6, 11, 1, 59)
    assert s.active(after_midnight) and not s.active(after_midnight + timedelta(minutes=1))
    assert Schedule.of([], BERLIN) is None  # no periods: always on, and nothing to check


def test_around_sunrise():
    day = date(2026, 6, 21)
    sunrise = sun_time(BERLIN, "sunrise", day)
    # Berlin's summer-solstice sunrise is at about 04:43 CEST (02:43 UTC)
    assert datetime(2026, 6, 21, 2, 38, tzinfo=UTC) < sunrise < datetime(2026, 6, 21, 2, 48, tzinfo=UTC)
    s = Schedule.of(["sunrise-30m..sunrise+2h"], BERLIN)
    second = timedelta(seconds=1)
    start, end = sunrise - timedelta(minutes=30), sunrise + timedelta(hours=2)
    assert not s.active(start - second) and s.active(start) and s.active(end - second) and not s.active(end)
    # half a year later the same period is hours later in UTC
    winter = Schedule.of(["sunrise-30m..sunrise+2h"], BERLIN).intervals(date(2026, 12, 21))[0][0]
    assert winter.hour == 6 and winter.minute > 40  # 08:16 CET sunrise - 30 min = 06:46 UTC


def test_dst_changes_in_berlin_and_new_york():
    s = Schedule.of(["01:00-04:00"], BERLIN)
    [(a, b)] = s.intervals(date(2026, 3, 29))  # spring forward: 02:00-03:00 does not exist
    assert b - a == timedelta(hours=2)
    [(a, b)] = s.intervals(date(2026, 10, 25))  # fall back: 02:00-03:00 happens twice
    assert b - a == timedelta(hours=4)
    ny = Schedule.of(["05:00-09:00"], Site("America/New_York"))
    before, after = ny.intervals(date(2026, 3, 7))[0][0], ny.intervals(date(2026, 3, 8))[0][0]
    assert (before.hour, after.hour) == (10, 9)  # 05:00 EST = 10:00 UTC, 05:00 EDT = 09:00 UTC
    # a night period across the DST night keeps its local end
    night = Schedule.of(["22:00-06:00"], BERLIN).intervals(date(2026, 3, 28))[0]
    assert night[0].astimezone(BERLIN.zone).hour == 22 and night[1].astimezone(BERLIN.zone).hour == 6
    assert night[1] - night[0] == timedelta(hours=7)


def test_polar_day_has_no_sunrise_and_the_period_is_off():
    svalbard = Site("Arctic/Longyearbyen", 78.22, 15.65)
    assert sun_time(svalbard, "sunrise", date(2026, 6, 21)) is None
    s = Schedule.of(["sunrise..sunrise+2h"], svalbard)
    assert s.intervals(date(2026, 6, 21)) == [] and not s.active(datetime(2026, 6, 21, 3, tzinfo=UTC))


def test_next_summary_time_is_local():
    now = local("Europe/Berlin", 2026, 3, 28, 22, 0)
    when = local_time_today(BERLIN, "21:00", now)
    assert when.astimezone(BERLIN.zone).isoformat() == "2026-03-29T21:00:00+02:00"  # after the DST change


@pytest.mark.parametrize("text", ["5-9", "sunrise-30m-sunrise+2h", "25:00-26:00", "sunrise+13h..sunset",
                                  "sunrise~1h..noon"])
def test_bad_periods_are_refused(text):
    with pytest.raises(ValueError):
        Period.parse(text)


def test_config_errors_name_the_key():
    base = {"events": [{"label": "bird", "prompts": ["birdsong"], "threshold": 0.2, "schedule": ["5-9"]}]}
    with pytest.raises(ConfigError, match=r"events\[0\]\.schedule"):
        parse_config(base)
    base["events"][0]["schedule"] = ["sunrise..sunrise+1h"]
    with pytest.raises(ConfigError, match="site.latitude"):
        parse_config(base)
    with pytest.raises(ConfigError, match="unknown time zone"):
        parse_config({**base, "site": {"timezone": "Mars/Olympus", "latitude": 1, "longitude": 2}})
    ok = parse_config({**base, "site": {"timezone": "Europe/Berlin", "latitude": 52.5, "longitude": 13.4}})
    assert ok.events[0].schedule == ["sunrise..sunrise+1h"]


# -- the detector under a schedule ---------------------------------------------------------------------------


class AudioTap(Sink):
    wants_audio = True

    def __init__(self):
        super().__init__(Sink.Options())
        self.blocks = []

    def emit(self, record):
        pass

    def audio(self, stream, start_sample, block, sample_rate):
        self.blocks.append((start_sample, block.copy()))


def scheduled_detector(model, events, clock, listeners=(), **config):
    encoder = FakeEncoder.for_model(model)
    sink, tap = collecting_sink(), AudioTap()
    data = config_dict(model, events, site={"timezone": "Europe/Berlin"}, **config)
    detector = build_detector(parse_config(data), ModelBundle.load(model),
                              SinkSet([("collect", sink), ("tap", tap)]), encoder=encoder, clock=clock,
                              listeners=listeners)
    return detector, encoder, sink, tap


def push_seconds(replay, seconds, block_s=0.5):
    rng = np.random.default_rng(0)
    n = int(block_s * SAMPLE_RATE)
    for _ in range(int(seconds / block_s)):
        replay.push((0.1 * rng.standard_normal(n)).astype(np.float32))


def test_the_encoder_is_not_called_outside_every_period(tiny_model):
    events = [immediate_event("a", threshold=-1.0, schedule=["05:00-06:00"]),
              immediate_event("b", threshold=-1.0, schedule=["22:00-02:00"])]
    start = local("Europe/Berlin", 2026, 3, 29, 4, 59, 50)  # the DST morning
    metrics = Metrics()
    detector, encoder, sink, _ = scheduled_detector(tiny_model, events, lambda: start, listeners=[metrics])
    stream = detector.open_stream("garden", live=True)
    push_seconds(Replay(detector, stream), 30.0)
    starts = [w for w in range(0, 28)]  # windows start every 1 s: 0 .. 27 s (3 s windows, 30 s of audio)
    due = [s for s in starts if start + timedelta(seconds=s) >= local("Europe/Berlin", 2026, 3, 29, 5, 0)]
    assert sum(encoder.batch_sizes) == len(due) == 18
    assert stream.scheduled_out_windows == len(starts) - len(due) and stream.windows_processed == len(due)
    assert {r.label for r in sink.records} == {"a"}  # b is outside its period and never fires
    assert sink.records[0].start_s == float(due[0])
    counted = {name: metrics.registry.get_sample_value(f"streamdetect_{name}_total", {"stream": "garden"})
               for name in ("windows", "scheduled_out_windows")}
    assert counted == {"windows": len(due), "scheduled_out_windows": len(starts) - len(due)}

    midday = local("Europe/Berlin", 2026, 3, 29, 12, 0)
    detector2, encoder2, sink2, _ = scheduled_detector(tiny_model, events, lambda: midday)
    stream2 = detector2.open_stream("garden", live=True)
    replay2 = Replay(detector2, stream2)
    push_seconds(replay2, 20.0)
    replay2.finish()
    assert encoder2.batch_sizes == [] and sink2.records == []
    assert stream2.scheduled_out_windows == stream2.windower.next_index >= 18


def test_an_open_event_ends_when_its_period_ends(tiny_model):
    events = [immediate_event("a", threshold=-1.0, schedule=["04:00-05:00"])]
    start = local("Europe/Berlin", 2026, 6, 1, 4, 59, 50)
    detector, encoder, sink, _ = scheduled_detector(tiny_model, events, lambda: start)
    stream = detector.open_stream("garden", live=True)
    push_seconds(Replay(detector, stream), 20.0)
    phases = [(r.phase, r.start_s, r.end_s) for r in sink.records]
    # windows starting at 0..9 s lie in the period (start before 05:00); the event ends with the last of them
    assert phases == [("start", 0.0, None), ("end", 0.0, 12.0)]
    assert sum(encoder.batch_sizes) == 10


def test_a_source_outside_its_schedule_is_not_recorded(tiny_model):
    events = [immediate_event("a", threshold=-1.0)]
    start = local("Europe/Berlin", 2026, 6, 1, 8, 59, 55)
    detector, encoder, sink, tap = scheduled_detector(tiny_model, events, lambda: start)
    stream = detector.open_stream("garden", live=True, schedule=["06:00-09:00"])
    push_seconds(Replay(detector, stream), 12.0)
    heard = np.concatenate([b for _, b in tap.blocks])
    assert np.any(heard[: 5 * SAMPLE_RATE]) and not np.any(heard[5 * SAMPLE_RATE :])  # nothing after 09:00
    assert sum(encoder.batch_sizes) == 5  # the windows starting at 0..4 s, before 09:00
    assert stream.scheduled_out_windows == stream.windower.next_index - 5 == 5


def test_cli_run_counts_scheduled_out_and_private_windows(tiny_model, tmp_path):
    """The run summary says what the schedule and the privacy filter did; a file is judged at the time it is
    analysed, so the period is put two hours from now, where no run of this test can reach."""
    import json

    import yaml
    from helpers import run_cli, write_tone_scene

    now = datetime.now(UTC)
    period = f"{(now + timedelta(hours=2)):%H:%M}-{(now + timedelta(hours=3)):%H:%M}"
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=6.0)
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model), "site": {"timezone": "UTC"}, "privacy": {"enabled": True, "threshold": -1.0},
        "events": [{"label": "bird", "prompts": ["birdsong"], "threshold": -1.0, "schedule": [period]},
                   {"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0}],
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}]}))
    result = run_cli("run", "--config", str(config), "--input", str(wav))
    assert result.returncode == 0, result.stderr
    assert "private windows 4, scheduled-out windows 0" in result.stderr  # dog is always on: all analysed
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["label"] for r in records} == {"dog"} and all(r["private"] is True for r in records)

    data = yaml.safe_load(config.read_text())
    data["events"][1]["schedule"] = [period]
    config.write_text(yaml.safe_dump(data))
    result = run_cli("run", "--config", str(config), "--input", str(wav))
    assert result.returncode == 0, result.stderr
    assert "6.0 s of audio, 0 windows (0 gated as silence)" in result.stderr  # none reached the encoder
    assert "private windows 0, scheduled-out windows 4" in result.stderr
