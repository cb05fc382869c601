"""Audio examples are bounded by what they decode to, not by their size in bytes: a small FLAC of silence holds
hours. Such a file is refused with the limit in a one-line error, a long clip is embedded a few pieces at a
time (memory does not grow with its length), and a reload embeds its examples outside the inference thread, so
detection goes on meanwhile."""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import FakeEncoder, file_windows, immediate_event, make_config, make_detector, write_tone_scene

from streamdetect.daemon.engine import BatchingEngine
from streamdetect.daemon.reload import ReloadGate
from streamdetect.embed import clip
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import ModelBundle
from streamdetect.sources.base import SourceError
from streamdetect.sources.file import FileSource

RATE = 8000  # silence at a low rate: long files that are quick to write and to decode


def silence(path: Path, seconds: float) -> Path:
    sf.write(path, np.zeros(int(seconds * RATE), np.int16), RATE, format="FLAC")
    return path


class GatedEncoder(FakeEncoder):
    """Calls from any thread but the inference thread wait for ``go``: a reload's examples that take long."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.go = threading.Event()
        self.threads: list[str] = []

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if threading.current_thread().name != "streamdetect-inference":
            assert self.go.wait(10)
        return super().__call__(features)


def test_a_clip_longer_than_the_limit_is_refused_by_its_header_or_once_its_decoding_passes_it(tiny_model, tmp_path,
                                                                                              monkeypatch):
    flac = silence(tmp_path / "hours.flac", 1200)
    frontend = LogMelFrontend(ModelBundle.load(tiny_model).frontend_params)
    encoder = FakeEncoder.for_model(tiny_model)
    with pytest.raises(SourceError, match=r"lasts more than 30 s; an audio example may last at most 30 s"):
        clip.clip_embedding(flac, frontend, encoder, max_s=30)
    assert flac.stat().st_size < 100_000 and encoder.batch_sizes == []  # the header said 1200 s: nothing decoded
    monkeypatch.setattr(FileSource, "duration_s", property(lambda _self: 0.0))  # a header that says nothing
    with pytest.raises(SourceError, match=r"lasts more than 30 s"):
        clip.clip_embedding(flac, frontend, encoder, max_s=30)
    assert sum(encoder.batch_sizes) <= 3  # 30 s of 10 s pieces, not 120


def test_a_long_clip_is_embedded_a_batch_at_a_time(tiny_model, tmp_path):
    """Memory stays at one batch of pieces and its features (35 MB traced here for 3 min or 10 min), where the
    list of every 10 s piece took 64 MB for 3 min and 151 MB for 10 min."""
    flac = silence(tmp_path / "three-minutes.flac", 180)
    bundle = ModelBundle.load(tiny_model)
    encoder = FakeEncoder.for_model(tiny_model)
    tracemalloc.start()
    try:
        embedding = clip.clip_embedding(flac, LogMelFrontend(bundle.frontend_params), encoder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert encoder.batch_sizes == [4, 4, 4, 4, 2] and embedding.shape == (bundle.embedding_dim,)
    assert peak < 45e6, peak


def test_a_reload_embeds_its_examples_while_the_inference_thread_goes_on(tiny_model, tmp_path):
    example = write_tone_scene(tmp_path / "tone.wav", seconds=2.0)
    windows = file_windows(write_tone_scene(tmp_path / "scene.wav", seconds=6.0))
    encoder = GatedEncoder.for_model(tiny_model)
    detector, _ = make_detector(tiny_model, [immediate_event("x")], encoder=encoder)
    engine = BatchingEngine(detector)
    engine.start()
    stream = detector.open_stream("mic", live=True)
    new = make_config(tiny_model, [{"label": "t", "examples": [str(example)], "threshold": 0.5}])
    tickets = []
    reloading = threading.Thread(target=lambda: tickets.append(engine.request_reload(new)))
    try:
        reloading.start()
        deadline = time.monotonic() + 10
        while not encoder.threads:  # the example is being embedded, and waits
            assert time.monotonic() < deadline
            time.sleep(0.01)
        engine.submit(stream, windows)
        while engine.stats.windows < len(windows):  # analysed meanwhile, with the old events
            assert time.monotonic() < deadline, engine.stats
            time.sleep(0.01)
        assert list(detector.bank.labels) == ["x"]
    finally:
        encoder.go.set()
        reloading.join(10)
        engine.close_stream(stream)
        engine.stop()
    assert tickets[0].done.is_set() and tickets[0].error is None and list(detector.bank.labels) == ["t"]
    assert encoder.threads[0] != "streamdetect-inference"


def test_an_example_over_the_limit_fails_its_reload_with_one_line_and_no_traceback(tiny_model, tmp_path, caplog,
                                                                                 monkeypatch):
    monkeypatch.setattr(clip, "MAX_EXAMPLE_S", 20.0)
    flac = silence(tmp_path / "long.flac", 60)
    detector, _ = make_detector(tiny_model, [immediate_event("x")], encoder=FakeEncoder.for_model(tiny_model))
    engine = BatchingEngine(detector)
    engine.start()
    gate = ReloadGate(lambda: detector.config, engine.request_reload)
    caplog.set_level(logging.DEBUG)
    try:
        result = gate.apply(make_config(tiny_model, [{"label": "t", "examples": [str(flac)], "threshold": 0.5}]),
                            "test")
    finally:
        engine.stop()
    assert result.error is not None and "lasts more than 20 s" in result.error and list(detector.bank.labels) == ["x"]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "lasts more than 20 s" in errors[0].getMessage() and errors[0].exc_info is None
