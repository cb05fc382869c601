import json
import sys
import textwrap

import pytest
from helpers import event_record

from streamdetect.config import parse_config
from streamdetect.pipeline.events import LabelScore
from streamdetect.sinks import SINKS
from streamdetect.sinks.base import Sink, SinkSet, build_sinks
from streamdetect.sinks.jsonl import JsonlOptions, JsonlSink
from streamdetect.sinks.stdout import StdoutSink, format_record


def record(phase="start", label="bird", end=None):
    return event_record(phase, id="abc", label=label, start_s=1.0, end_s=end, peak_score=0.42, peak_time_s=2.5,
                        stream="garden", time="2026-11-24T06:00:00.000+00:00",
                        top=(LabelScore(label, 0.42), LabelScore("wind", 0.1)))


def test_jsonl_writes_one_flushed_object_per_record(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    sink = JsonlSink(JsonlOptions(path=str(path)))
    sink.emit(record())
    # read while the sink is still open: the record must already be on disk
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"id": "abc", "label": "bird", "phase": "start", "start_s": 1.0, "end_s": None,
                     "peak_score": 0.42, "peak_time_s": 2.5, "stream": "garden",
                     "time": "2026-11-24T06:00:00.000+00:00",
                     "top": [{"label": "bird", "score": 0.42}, {"label": "wind", "score": 0.1}]}
    sink.emit(record("end", end=4.0))
    sink.close()
    assert [json.loads(line)["phase"] for line in path.read_text().splitlines()] == ["start", "end"]


def test_stdout_line_is_readable(capsys):
    StdoutSink(StdoutSink.Options()).emit(record("end", end=4.0))
    line = capsys.readouterr().out.strip()
    assert line == format_record(record("end", end=4.0))
    assert "[garden] bird END" in line and "1.00-4.00 s" in line and "peak 0.420 at 2.50 s" in line


class Exploding(Sink):
    def emit(self, record):
        raise ConnectionError("receiver down")


def test_failing_sink_does_not_stop_the_others(tmp_path, caplog):
    path = tmp_path / "ok.jsonl"
    good = JsonlSink(JsonlOptions(path=str(path)))
    sinks = SinkSet([("bad", Exploding(Exploding.Options())), ("good", good)])
    for _ in range(3):
        sinks.emit(record())
    sinks.close()
    assert len(path.read_text().splitlines()) == 3
    assert sinks.failures == {"bad": 3, "good": 0}
    assert "sink bad failed" in caplog.text and "receiver down" in caplog.text


def test_third_party_sink_registers_through_an_entry_point(tmp_path, monkeypatch):
    """A real distribution on sys.path with an entry point; nothing in streamdetect is edited."""
    pkg = tmp_path / "site"
    (pkg / "pigeon_sink").mkdir(parents=True)
    (pkg / "pigeon_sink" / "__init__.py").write_text(textwrap.dedent("""
        from pydantic import Field
        from streamdetect.sinks.base import Sink, SinkOptions

        class PigeonOptions(SinkOptions):
            loft: str = Field(min_length=1)

        class PigeonSink(Sink):
            Options = PigeonOptions
            sent = []

            def emit(self, record):
                PigeonSink.sent.append((self.options.loft, record.label))
    """))
    dist = pkg / "pigeon_sink-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-sink\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[streamdetect.sinks]\npigeon = pigeon_sink:PigeonSink\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(SINKS, "_loaded", {})
    assert "pigeon" in SINKS.names()
    config = parse_config({"events": [{"label": "bird", "prompts": ["x"], "threshold": 0.1}],
                           "sinks": [{"type": "pigeon", "loft": "roof"}]})
    sinks = build_sinks(config.sinks)
    sinks.emit(record())
    sinks.close()  # configured sinks run in their own worker threads; close() drains them
    assert sys.modules["pigeon_sink"].PigeonSink.sent == [("roof", "bird")]
    with pytest.raises(Exception, match=r"sinks\[0\]\.loft"):
        parse_config({"events": [{"label": "b", "prompts": ["x"], "threshold": 0.1}], "sinks": [{"type": "pigeon"}]})


class Slow(Sink):
    def __init__(self, options, delay_s):
        super().__init__(options)
        self.delay_s, self.got = delay_s, []

    def emit(self, record):
        import time

        time.sleep(self.delay_s)
        self.got.append(record.label)


def test_threaded_sinks_never_hold_up_the_caller_and_drain_on_close():
    import time

    slow = Slow(Slow.Options(), 0.05)
    fast = Slow(Slow.Options(), 0.0)
    sinks = SinkSet([("slow", slow), ("fast", fast), ("bad", Exploding(Exploding.Options()))], threaded=True)
    t0 = time.perf_counter()
    for _ in range(20):
        sinks.emit(record())
    assert time.perf_counter() - t0 < 0.5  # 20 x 50 ms would be 1 s if delivered inline
    sinks.close()
    assert len(slow.got) == len(fast.got) == 20 and sinks.failures["bad"] == 20


def test_shutdown_drains_all_sinks_within_one_shared_deadline(caplog):
    """Several slow sinks must not add their drain times up past a service manager's stop timeout."""
    import time

    sinks = [Slow(Slow.Options(), 0.3) for _ in range(3)]
    sink_set = SinkSet([(f"slow{i}", s) for i, s in enumerate(sinks)], threaded=True, drain_timeout_s=1.0)
    for _ in range(10):  # 3 s of work queued on each sink
        sink_set.emit(record())
    t0 = time.monotonic()
    sink_set.close()
    assert time.monotonic() - t0 < 2.0  # one 1 s deadline for all three, not 1 s each
    assert all(1 <= len(s.got) < 10 for s in sinks)  # each drained concurrently until the deadline
    # what was still queued is counted and logged as lost (these sinks cannot keep records for the next run)
    assert caplog.text.count("queued at the shutdown deadline") == 3 and "0 kept for the next run" in caplog.text
    assert sum(sink_set.failures.values()) == sum(10 - len(s.got) for s in sinks)


def test_full_queue_drops_and_counts(caplog):
    slow = Slow(Slow.Options(queue_size=2), 0.2)
    sinks = SinkSet([("slow", slow)], threaded=True)
    for _ in range(10):
        sinks.emit(record())
    assert sinks.dropped["slow"] >= 6 and "records dropped so far" in caplog.text
    sinks.close()
    assert len(slow.got) + sinks.dropped["slow"] == 10


def test_sink_label_filter_and_its_validation():
    only = Slow(Slow.Options(labels=["dog"]), 0.0)
    sinks = SinkSet([("only", only)])
    sinks.emit(record(label="bird"))
    sinks.emit(record(label="dog"))
    assert only.got == ["dog"]
    with pytest.raises(Exception, match=r"sinks\[0\]\.labels: 'cat' is not an event label \(bird\)"):
        parse_config({"events": [{"label": "bird", "prompts": ["x"], "threshold": 0.1}],
                      "sinks": [{"type": "stdout", "labels": ["cat"]}]})


def test_the_catalog_reaches_a_busy_sink_after_its_records_without_blocking_the_caller():
    """A reload's catalog must neither wait behind a sink that hangs (detection would stop) nor be dropped."""
    import threading
    import time

    from streamdetect.pipeline.events import Catalog

    release, seen = threading.Event(), []

    class Slow(Sink):
        def emit(self, record):
            release.wait(10)
            seen.append(record.phase)

        def catalog_changed(self, catalog):
            seen.append(catalog)

    sinks = SinkSet([("slow", Slow(Sink.Options(queue_size=1)))], threaded=True)
    sinks.emit(record("start"))  # taken by the worker, which now hangs
    time.sleep(0.2)
    sinks.emit(record("end", end=3.0))  # fills the queue of 1
    catalog = Catalog((("garden", ("bird",)),))
    caller = threading.Thread(target=sinks.catalog_changed, args=(catalog,))
    caller.start()
    caller.join(5)
    done_before_release = not caller.is_alive()  # the queue is full: it must not wait for the hanging sink
    release.set()
    assert done_before_release
    sinks.close()
    assert seen == ["start", "end", catalog]
