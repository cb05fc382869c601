"""A live source faster than real time is paced and flagged; the engine keeps a bounded number of each live
stream's windows queued, counts what it drops (metric and run summary), and stops promptly."""

from __future__ import annotations

import logging
import re
import threading
import time

import numpy as np
from fakes import LiveSource
from helpers import SlowEncoder
from test_engine import SR, detector_for

from streamdetect.daemon.engine import BatchingEngine, run_sources
from streamdetect.daemon.metrics import Metrics
from streamdetect.sources.ffmpeg import FfmpegOptions, FfmpegSource


def test_a_live_ffmpeg_stream_faster_than_real_time_is_read_at_real_time_and_flagged(caplog):
    """lavfi without -re generates audio as fast as it is read, like an HTTP file served at full speed."""
    source = FfmpegSource(FfmpegOptions(url="sine=frequency=440:sample_rate=48000", input_args=["-f", "lavfi"],
                                        live=True, max_ahead_s=1.0), SR, "fast")
    caplog.set_level(logging.WARNING, logger="streamdetect")
    stop = threading.Event()
    got = {"samples": 0}
    first: list[float] = []

    def consume() -> None:
        for block in source.blocks(stop):
            first[:] = first or [time.monotonic()]
            got["samples"] += block.size

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    deadline = time.monotonic() + 30
    while source.paced_s < 2.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    wall_s, audio_s = time.monotonic() - first[0], got["samples"] / SR
    stop.set()
    consumer.join(5)
    assert not consumer.is_alive() and source.pid is None  # stopping while paced is prompt
    assert source.paced_s >= 2.0 and source.stats()["paced_s"] >= 2
    # unpaced, lavfi delivers some hundred times real time; paced, never more than max_ahead_s (and a pipe
    # read) ahead of the clock
    assert audio_s <= wall_s + 1.0 + 0.5, (audio_s, wall_s)
    assert "delivers audio faster than real time" in caplog.text


def test_the_engine_queue_of_a_live_stream_is_bounded_and_the_overflow_counted(tiny_model):
    det, sink = detector_for(tiny_model, -1.0, batch_size=2, encoder=SlowEncoder.for_model(tiny_model, delay_s=0.05))
    metrics = Metrics()
    engine = BatchingEngine(det, observer=metrics, live_queue_windows=8)
    audio = np.zeros(120 * SR, np.float32)  # 118 windows, delivered in a burst
    summaries, stats = run_sources(det, [LiveSource(audio, "burst")], threading.Event(), engine=engine)
    [summary] = summaries
    assert stats.max_backlog <= 8
    assert stats.dropped_windows > 50 and summary.dropped_windows == stats.dropped_windows
    assert summary.windows + summary.dropped_windows == 118  # every window analysed or counted, none unseen
    exposed = metrics.exposition().decode()
    counted = re.search(r'streamdetect_dropped_windows\w*\{stream="burst"\} ([0-9.]+)', exposed)
    assert counted and float(counted.group(1)) == stats.dropped_windows
    assert [r.phase for r in sink.records] == ["start", "end"]


def test_stopping_a_stream_that_outruns_inference_is_prompt(tiny_model):
    """With the queue bounded, stop leaves at most live_queue_windows windows to finish."""
    det, _ = detector_for(tiny_model, -1.0, batch_size=1, encoder=SlowEncoder.for_model(tiny_model, delay_s=0.02))
    engine = BatchingEngine(det, live_queue_windows=4)
    stop = threading.Event()
    endless = LiveSource(np.zeros(100_000 * SR // 100, np.float32), "endless")  # 1000 s, far more than is read
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(out=run_sources(det, [endless], stop, engine=engine)))
    runner.start()
    while engine.stats.dropped_windows < 20:
        time.sleep(0.01)
    analysed_at_stop = engine.stats.windows
    stop.set()
    runner.join(30)
    assert not runner.is_alive()
    [summary], stats = result["out"]
    assert stats.windows - analysed_at_stop <= 4 + 2  # the queue, and a window in flight


def test_the_per_stream_and_the_global_live_bound_count_each_dropped_window_once(tiny_model):
    """Two live streams in a burst, each bounded to 4 queued windows and both together to 6 (the remote
    encoder's bound): every window is analysed or counted once, in the engine, the summaries and the metric."""
    det, _ = detector_for(tiny_model, -1.0, batch_size=2, encoder=SlowEncoder.for_model(tiny_model, delay_s=0.02))
    metrics = Metrics()
    engine = BatchingEngine(det, observer=metrics, live_queue_windows=4, max_queue_windows=6)
    audio = np.zeros(60 * SR, np.float32)  # 58 windows per stream
    summaries, stats = run_sources(det, [LiveSource(audio, "a"), LiveSource(audio, "b")], threading.Event(),
                                   engine=engine)
    assert stats.max_backlog <= 6
    assert stats.dropped_windows > 0 and stats.dropped_windows == sum(s.dropped_windows for s in summaries)
    assert all(s.windows + s.dropped_windows == 58 for s in summaries)
    assert stats.windows + stats.dropped_windows == 116
    exposed = metrics.exposition().decode()
    counted = sum(float(v) for v in re.findall(r'streamdetect_dropped_windows_total\{stream="[ab]"\} ([0-9.]+)',
                                                 exposed))
    assert counted == stats.dropped_windows
