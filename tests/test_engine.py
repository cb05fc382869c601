import threading

import numpy as np
from fakes import LiveSource
from helpers import (
    FakeEncoder,
    SlowEncoder,
    file_windows,
    immediate_event,
    make_detector,
    split_threshold,
    write_tone_scene,
)

from streamdetect.analysis.replay import run_source
from streamdetect.config import parse_config
from streamdetect.daemon.engine import BatchingEngine, run_sources
from streamdetect.sources.file import FileOptions, FileSource

SR = 48_000


def detector_for(model, threshold, batch_size=4, encoder=None):
    """A detector for one immediate event ``x`` at ``threshold``, on a fake encoder (the engine is the subject)."""
    events = [immediate_event("x", threshold=threshold)]
    return make_detector(model, events, encoder=encoder or FakeEncoder.for_model(model),
                         runtime={"batch_size": batch_size})


def key(records):
    return [(r.stream, r.phase, r.start_s, r.end_s, r.peak_score) for r in records]


def test_batched_streams_give_the_same_events_as_each_stream_alone(tiny_model, tmp_path):
    wavs = [write_tone_scene(tmp_path / f"s{i}.wav", seconds=8.0, tone_at=(1 + i, 4 + i), seed=i) for i in range(3)]
    probe, _ = detector_for(tiny_model, 0.0)
    threshold = split_threshold(probe.scores([w for f in wavs for w in file_windows(f)]).event[:, 0])
    alone = []
    for wav in wavs:
        det, sink = detector_for(tiny_model, threshold, batch_size=1)
        run_source(det, FileSource(FileOptions(path=str(wav)), SR), threading.Event())
        alone += sink.records
    det, sink = detector_for(tiny_model, threshold, batch_size=8, encoder=FakeEncoder.for_model(tiny_model))
    sources = [FileSource(FileOptions(path=str(w), block_s=0.3), SR) for w in wavs]
    summaries, stats = run_sources(det, sources, threading.Event())
    assert alone and sorted(key(sink.records)) == pytest_approx_sorted(key(alone))
    assert stats.windows == sum(s.windows for s in summaries) == 3 * 6
    assert max(det.encoder.batch_sizes) > 1  # windows of several streams really shared encoder calls


def pytest_approx_sorted(items):
    import pytest

    return [tuple(pytest.approx(v, abs=1e-5) if isinstance(v, float) else v for v in item) for item in sorted(items)]


def test_backlog_is_reported_and_no_window_is_dropped(tiny_model, caplog):
    det, sink = detector_for(tiny_model, -1.0, batch_size=2, encoder=SlowEncoder.for_model(tiny_model, delay_s=0.15))
    engine = BatchingEngine(det, backlog_warn_s=0.2)
    audio = np.zeros(20 * SR, np.float32)
    sources = [LiveSource(audio, f"live{i}") for i in range(3)]
    caplog.set_level("WARNING")
    summaries, stats = run_sources(det, sources, threading.Event(), engine=engine)
    assert stats.max_backlog >= 10 and stats.backlog_warnings >= 1
    assert "inference is" in caplog.text and "windows queued" in caplog.text
    assert [s.windows for s in summaries] == [18, 18, 18]  # 20 s, 3 s windows every 1 s: all analysed
    assert stats.windows == 54 and stats.latency_ms(99) > 150
    assert sorted(r.stream for r in sink.records if r.phase == "end") == ["live0", "live1", "live2"]


def test_one_slow_stream_does_not_hold_back_the_others(tiny_model):
    det, _ = detector_for(tiny_model, 1.0, batch_size=4)
    engine = BatchingEngine(det, max_wait_s=0.02)
    fast = LiveSource(np.zeros(6 * SR, np.float32), "fast")
    slow = LiveSource(np.zeros(6 * SR, np.float32), "slow", pace_s=0.5)  # a block every 0.5 s
    summaries, stats = run_sources(det, [fast, slow], threading.Event(), engine=engine)
    assert [s.windows for s in summaries] == [4, 4]
    # the fast stream's windows were not kept waiting for the slow one: every batch waited at most max_wait_s
    assert stats.latency_ms(50) < 400


def test_config_with_several_named_sources_runs_them_together(tiny_model, tmp_path):
    import json

    from helpers import run_cli, write_config

    north = write_tone_scene(tmp_path / "n.wav", seconds=5.0, seed=1)
    south = write_tone_scene(tmp_path / "s.wav", seconds=6.0, seed=2)
    out = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["birdsong"], "threshold": -1.0}],
                       sinks=[{"type": "jsonl", "path": str(out)}],
                       sources=[{"type": "file", "name": "north", "path": str(north)},
                                {"type": "file", "name": "south", "path": str(south)}])
    result = run_cli("run", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    ends = {r["stream"]: r for r in map(json.loads, out.read_text().splitlines()) if r["phase"] == "end"}
    assert set(ends) == {"north", "south"} and ends["north"]["end_s"] == 5.0 and ends["south"]["end_s"] == 6.0
    assert "north: 5.0 s of audio" in result.stderr and "south: 6.0 s of audio" in result.stderr


def test_source_config_mistakes_are_reported():
    import pytest

    from streamdetect.config import ConfigError

    events = [{"label": "x", "prompts": ["y"], "threshold": 0.1}]
    with pytest.raises(ConfigError, match=r"must be unique: sources\[0\] and sources\[1\] are both named 'a'"):
        parse_config({"events": events, "sources": [{"type": "file", "name": "a", "path": "1.wav"},
                                                    {"type": "file", "name": "a", "path": "2.wav"}]})
    with pytest.raises(ConfigError, match=r"sources\[1\]\.type: unknown source type 'rtsp'"):
        parse_config({"events": events, "sources": [{"type": "file", "path": "1.wav"}, {"type": "rtsp"}]})
    with pytest.raises(ConfigError, match="either `source` or `sources`"):
        parse_config({"events": events, "source": {"type": "file", "path": "1.wav"},
                      "sources": [{"type": "file", "path": "2.wav"}]})


def test_each_source_can_have_its_own_energy_gate(tiny_model, tmp_path):
    """A source entry's gate replaces the top-level one for that stream only; `min_dbfs: null` turns it off."""
    import soundfile as sf
    from helpers import run_cli, write_config

    rng = np.random.default_rng(3)
    quiet = (1e-4 * rng.standard_normal(SR * 6)).astype(np.float32)  # about -80 dBFS everywhere
    for name in ("own", "off", "default"):
        sf.write(tmp_path / f"{name}.wav", quiet, SR, subtype="FLOAT")
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["birdsong"], "threshold": 0.9}],
                       sinks=[{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
                       gate={"min_dbfs": -50.0},
                       sources=[{"type": "file", "name": "own", "path": str(tmp_path / "own.wav"),
                                 "gate": {"min_dbfs": -120.0}},
                                {"type": "file", "name": "off", "path": str(tmp_path / "off.wav"),
                                 "gate": {"min_dbfs": None}},
                                {"type": "file", "name": "default", "path": str(tmp_path / "default.wav")}])
    result = run_cli("run", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    # 6 s at 3 s windows and 1 s hop: 4 windows per stream
    assert "own: 6.0 s of audio, 4 windows (0 gated as silence)" in result.stderr
    assert "off: 6.0 s of audio, 4 windows (0 gated as silence)" in result.stderr
    assert "default: 6.0 s of audio, 4 windows (4 gated as silence)" in result.stderr


def test_a_source_gate_is_validated_with_its_key_path():
    import pytest

    from streamdetect.config import ConfigError

    events = [{"label": "x", "prompts": ["y"], "threshold": 0.1}]
    with pytest.raises(ConfigError, match=r"sources\[0\]\.gate\.min_dbfs: expected less than or equal to 0"):
        parse_config({"events": events, "sources": [{"type": "file", "path": "1.wav", "gate": {"min_dbfs": 3}}]})


def test_each_source_listens_for_its_own_events_or_shares_them(tiny_model, tmp_path):
    import json

    from helpers import run_cli, write_config

    wav = write_tone_scene(tmp_path / "t.wav", seconds=4.0)
    out = tmp_path / "out.jsonl"
    events = [{"label": label, "prompts": ["birdsong"], "threshold": -1.0} for label in ("bird", "dog", "rain")]
    cfg = write_config(tmp_path / "c.yaml", tiny_model, events, sinks=[{"type": "jsonl", "path": str(out)}],
                       sources=[{"type": "file", "name": "garden", "path": str(wav), "events": ["bird", "rain"]},
                                {"type": "file", "name": "porch", "path": str(wav), "events": ["dog"]},
                                {"type": "file", "name": "roof", "path": str(wav)}])
    result = run_cli("run", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    heard: dict[str, set] = {}
    for r in map(json.loads, out.read_text().splitlines()):
        heard.setdefault(r["stream"], set()).add(r["label"])
    assert heard == {"garden": {"bird", "rain"}, "porch": {"dog"}, "roof": {"bird", "dog", "rain"}}


def test_a_source_naming_an_unknown_event_is_refused_with_its_key_path():
    import pytest

    from streamdetect.config import ConfigError

    events = [{"label": "x", "prompts": ["y"], "threshold": 0.1}]
    with pytest.raises(ConfigError, match=r"sources\[1\]\.events: 'dgo' is not an event label \(x\)"):
        parse_config({"events": events, "sources": [{"type": "file", "path": "1.wav", "events": ["x"]},
                                                    {"type": "file", "path": "2.wav", "events": ["dgo"]}]})
    with pytest.raises(ConfigError, match=r"source\.events: expected"):
        parse_config({"events": events, "source": {"type": "file", "path": "1.wav", "events": "x"}})


class Recorder:
    """A window listener that keeps every result it is handed."""

    def __init__(self):
        self.results = []

    def window(self, result):
        self.results.append(result)


def test_each_window_becomes_one_result_that_every_listener_gets(tiny_model):
    import dataclasses

    import pytest

    from streamdetect.daemon.metrics import Metrics

    first, second, metrics = Recorder(), Recorder(), Metrics()
    det, sink = make_detector(tiny_model, [immediate_event("x", threshold=-1.0)], listeners=[first, metrics, second],
                              encoder=FakeEncoder.for_model(tiny_model), runtime={"batch_size": 4},
                              gate={"min_dbfs": -60.0})
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(4 * SR, np.float32), (0.1 * rng.standard_normal(4 * SR)).astype(np.float32)])
    summaries, stats = run_sources(det, [LiveSource(audio, "a"), LiveSource(audio, "b")], threading.Event())
    assert [s.windows for s in summaries] == [6, 6] and stats.windows == 12
    # one value per window, the very same object at every listener, in the order the windows were applied
    assert len(first.results) == len(second.results) == 12
    assert all(a is b for a, b in zip(first.results, second.results, strict=True))
    for name in ("a", "b"):
        mine = [r for r in first.results if r.stream == name]
        assert [r.start_s for r in mine] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        assert [r.end_sample - r.start_sample for r in mine] == [3 * SR] * 6
        # the first two windows are silent: gated by the energy gate, so never encoded and without an embedding
        assert [r.gated for r in mine] == [True, True, False, False, False, False]
        assert [r.embedding is None for r in mine] == [True, True, False, False, False, False]
        assert all(r.labels == ("x",) and r.thresholds == (-1.0,) and r.scores.shape == (1,) for r in mine)
        assert all(isinstance(r.wall, float) and r.private is None and not r.scheduled_out for r in mine)
        assert metrics.registry.get_sample_value("streamdetect_windows_total", {"stream": name}) == 6
        assert metrics.registry.get_sample_value("streamdetect_gated_windows_total", {"stream": name}) == 2
    result = first.results[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.gated = True  # type: ignore[misc]
    assert not result.scores.flags.writeable  # shared by every listener: nobody may change it for the others
    assert {r.stream for r in sink.records} == {"a", "b"}  # records still go to the outputs
