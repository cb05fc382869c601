"""Property tests (hypothesis) for the ring buffer, the window cutter, the event state machine and config
loading, and bounded fuzz targets for audio decoding and config parsing. Example counts are fixed, so the file
takes the same work on every run (no time-based budget, nothing depends on machine speed)."""

from __future__ import annotations

import io
import struct
import threading

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdetect.config import Config, ConfigError, load_config, parse_config
from streamdetect.pipeline.events import EventRecord, EventRules, EventTracker, WindowScore
from streamdetect.pipeline.windows import Windower
from streamdetect.sources.base import SourceError
from streamdetect.sources.file import FileOptions, FileSource
from streamdetect.sources.ringbuffer import RingBuffer

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- ring buffer and windows ---------------------------------------------------------------------------------------

@FAST
@given(capacity=st.integers(1, 64), ops=st.lists(st.one_of(st.integers(0, 150), st.none()), max_size=40))
def test_ring_buffer_returns_every_kept_sample_and_counts_the_lost(capacity, ops):
    ring, signal, written, read, lost = RingBuffer(capacity), np.arange(5000, dtype=np.float32), 0, 0, 0
    for op in ops:
        if op is None:  # the reader takes everything unread
            start, samples = ring.read_new()
            assert start == read and np.array_equal(samples, signal[start:written])
            read = written
        else:
            ring.write(signal[written : written + op])
            written += op
            if written - read > capacity:
                lost, read = lost + written - capacity - read, written - capacity
        assert ring.available() == written - read and ring.overrun_samples == lost


@FAST
@given(window=st.integers(1, 40), hop=st.integers(1, 40),
       blocks=st.lists(st.integers(0, 300), max_size=25))
def test_windower_yields_exactly_the_expected_windows_for_any_blocks(window, hop, blocks):
    rate = 100
    windower = Windower(window / rate, hop / rate, rate)
    signal = np.arange(sum(blocks), dtype=np.float32)
    got, offset = [], 0
    for n in blocks:
        got += list(windower.push(signal[offset : offset + n]))
        offset += n
    got += list(windower.finish())
    total = signal.size
    full = [k * hop for k in range(total) if k * hop + window <= total]
    expected = [(s, window) for s in full]
    if not full and total:
        expected = [(0, total)]  # a recording shorter than a window is analysed once
    elif full and full[-1] + window < total and len(full) * hop < total:
        expected.append((len(full) * hop, total - len(full) * hop))  # the uncovered tail
    assert [(w.start_sample, w.n_samples) for w in got] == expected
    assert [w.index for w in got] == list(range(len(got)))
    for w in got:
        assert np.array_equal(w.samples, signal[w.start_sample : w.start_sample + w.n_samples])
        assert w.start_s == w.start_sample / rate and w.end_s == (w.start_sample + w.n_samples) / rate


# --- event state machine -------------------------------------------------------------------------------------------

@st.composite
def tracker_runs(draw):
    rules = EventRules(threshold=draw(st.floats(-0.5, 0.5)), hysteresis=draw(st.floats(0, 0.3)),
                       min_windows=draw(st.integers(1, 4)), cooldown_s=draw(st.sampled_from([0.0, 0.5, 2.0, 5.0])))
    window_s, hop_s = draw(st.sampled_from([(3.0, 1.0), (1.0, 1.0), (1.0, 2.5), (2.0, 0.5)]))
    scores = draw(st.lists(st.tuples(st.floats(-1, 1), st.booleans() | st.just(False)), max_size=80))
    return rules, window_s, hop_s, scores


@settings(max_examples=300, deadline=None)
@given(tracker_runs())
def test_event_tracker_invariants(run):
    rules, window_s, hop_s, scores = run
    tracker = EventTracker("x", rules)
    windows = [WindowScore(i * hop_s, i * hop_s + window_s, s, "neg" if vetoed else None, (), 0.0)
               for i, (s, vetoed) in enumerate(scores)]
    emitted: list[tuple[int, EventRecord]] = []  # (index of the window whose update produced it, record)
    for i, w in enumerate(windows):
        emitted += [(i, r) for r in tracker.update(w)]
    emitted += [(len(windows), r) for r in tracker.finish(0.0)]
    phases = [r.phase for _, r in emitted]
    assert phases == ["start", "end"] * (len(phases) // 2)  # no end without a start, nothing left open
    fires = [w.score >= rules.threshold and w.suppressed_by is None for w in windows]
    previous_end: tuple[int, EventRecord] | None = None
    for (i_start, start), (i_end, end) in zip(emitted[::2], emitted[1::2], strict=True):
        assert start.id == end.id and start.start_s == end.start_s and start.end_s is None
        assert end.end_s >= end.start_s and start.peak_score >= rules.threshold - 1e-6  # records round to 1e-6
        first = i_start - rules.min_windows + 1
        assert first >= 0 and all(fires[first : i_start + 1])  # min_windows consecutive firing windows
        if previous_end is not None:
            j, before = previous_end
            assert start.start_s >= before.end_s  # no overlapping events of one label
            if j < len(windows):  # cooldown runs from the window that ended the previous event
                assert windows[first].end_s >= windows[j].end_s + rules.cooldown_s - 1e-9
        previous_end = (i_end, end)


# --- config ---------------------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["model", "events", "windows", "window_s", "hop_s", "label", "prompts", "threshold",
                        "sinks", "type", "path", "url", "labels", "sources", "source", "metrics", "port", "gate",
                        "runtime", "negatives", "name", "argv", "webhook", "jsonl", "file", "mqtt"])
LEAVES = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=20)
DATA = st.recursive(LEAVES, lambda children: st.lists(children, max_size=5)
                    | st.dictionaries(KEYS | st.text(max_size=8), children, max_size=5), max_leaves=40)


def _parse_or_config_error(data) -> None:
    try:
        assert isinstance(parse_config(data), Config)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and isinstance(m, str) for p, m in e.problems)


@FAST
@given(DATA)
def test_any_data_is_a_config_or_a_config_error(data):
    _parse_or_config_error(data)


VALID = {"events": [{"label": "a", "prompts": ["x"], "threshold": 0.2}],
         "sinks": [{"type": "jsonl", "path": "o.jsonl"}, {"type": "webhook", "url": "http://127.0.0.1/h"}]}


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.sampled_from(["events", "sinks", 0, 1, "label", "threshold", "url", "labels", "windows"]),
                     min_size=1, max_size=3), value=DATA)
def test_one_wrong_value_anywhere_in_a_valid_config_is_a_config_error(path, value):
    import copy

    data = copy.deepcopy(VALID)
    node = data
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    if isinstance(node, dict) and isinstance(path[-1], str):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value
    _parse_or_config_error(data)


YAML_TOKENS = list("ab01.-:[]{}&*!|>'\"#, \n\t") + ["events", "sinks", "label", "threshold", "&a", "*a", "!!"]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), YAMLISH), raw=st.binary(max_size=64))
def test_fuzz_load_config_gives_only_config_errors(tmp_path_factory, text, raw):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    for content in (text.encode("utf-8", "surrogatepass"), raw):
        path.write_bytes(content)
        try:
            assert isinstance(load_config(path), Config)
        except ConfigError as e:
            assert str(path) in str(e)


# --- audio decoding fuzz --------------------------------------------------------------------------------------------

def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    out = {}
    for ext, fmt, subtype in [("wav", "WAV", "PCM_16"), ("wav", "WAV", "FLOAT"), ("flac", "FLAC", "PCM_16"),
                              ("ogg", "OGG", "VORBIS")]:
        buffer = io.BytesIO()
        sf.write(buffer, audio, 8000, format=fmt, subtype=subtype)
        out[f"{subtype.lower()}.{ext}"] = buffer.getvalue()
    return out


SEEDS = _seed_files()


@st.composite
def audio_bytes(draw):
    kind = draw(st.sampled_from(["random", "mutated", "cut", "header"]))
    name = draw(st.sampled_from(sorted(SEEDS)))
    if kind == "random":
        return name, draw(st.binary(max_size=2048))
    data = bytearray(SEEDS[name])
    if kind == "cut":
        return name, bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "header" and name.endswith(".wav"):  # WAV fmt chunk: channels @22, rate @24, byte rate @28
        field = draw(st.sampled_from([(22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"), (34, "<H")]))
        struct.pack_into(field[1], data, field[0], draw(st.integers(0, 2 ** (8 * struct.calcsize(field[1])) - 1)))
        return name, bytes(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return name, bytes(data)


@FUZZ
@given(case=audio_bytes())
def test_fuzz_file_source_gives_a_source_error_or_finite_windows(tmp_path_factory, case):
    name, content = case
    path = tmp_path_factory.mktemp("audio") / name
    path.write_bytes(content)
    try:
        source = FileSource(FileOptions(path=str(path)), 16_000)
        windower = Windower(0.5, 0.25, 16_000)
        total = 0
        for block in source.blocks(threading.Event()):
            assert block.dtype == np.float32 and block.ndim == 1
            total += block.size
            assert total < 16_000 * 600  # a few KB of input cannot become ten minutes of audio
            for window in windower.push(block):
                assert np.isfinite(window.samples).all()
    except SourceError as e:
        assert str(path) in str(e)
