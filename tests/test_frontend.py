import numpy as np
import pytest

from streamdetect.embed.frontend import LogMelFrontend, repeat_pad
from streamdetect.model.manifest import FrontendParams

SR = 48_000


def _signals():
    rng = np.random.default_rng(1)
    for seconds in (0.02, 0.7, 1.0, 3.0, 4.5, 10.0):
        t = np.arange(int(seconds * SR)) / SR
        yield seconds, (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    for n_samples in (1, 513, 144_001, 479_999):  # lengths that do not divide the 10 s input or the hop
        yield f"{n_samples} samples", (0.2 * rng.standard_normal(n_samples)).astype(np.float32)
    yield "silence", np.zeros(3 * SR, dtype=np.float32)
    yield "clipped", np.clip(rng.standard_normal(3 * SR) * 3, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint_extractor(tiny_checkpoint):
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor.from_pretrained(tiny_checkpoint)


@pytest.mark.parametrize("name_signal", list(_signals()), ids=lambda ns: str(ns[0]))
def test_log_mel_matches_checkpoint_feature_extractor(checkpoint_extractor, name_signal):
    _, signal = name_signal
    ref = checkpoint_extractor(signal, sampling_rate=SR, return_tensors="np")["input_features"][0, 0]
    frontend = LogMelFrontend(FrontendParams())
    ours = frontend.log_mel(signal)
    assert ours.shape == ref.shape == (1001, 64)
    np.testing.assert_array_equal(frontend.log_mel(signal), ours)  # reused buffers leave no trace
    assert np.abs(ours - ref).max() <= 1e-3


def test_class_defaults_are_not_the_checkpoint(checkpoint_extractor):
    """The known trap: ClapFeatureExtractor() uses frequency_min=0 and fusion; our front end must not."""
    from transformers import ClapFeatureExtractor

    signal = next(s for n, s in _signals() if n == 3.0)
    default = ClapFeatureExtractor()(signal, sampling_rate=SR, truncation="rand_trunc", return_tensors="np")
    ours = LogMelFrontend(FrontendParams()).log_mel(signal)
    assert np.abs(default["input_features"][0, 0] - ours).max() > 1.0


def test_batch_shape_and_dtype():
    feats = LogMelFrontend(FrontendParams())([np.zeros(SR, np.float32), np.ones(2 * SR, np.float32) * 0.1])
    assert feats.shape == (2, 1, 1001, 64) and feats.dtype == np.float32


def test_repeat_pad_repeats_whole_clips_then_zeros():
    out = repeat_pad(np.array([1.0, 2.0, 3.0]), 10)
    assert out.tolist() == [1, 2, 3, 1, 2, 3, 1, 2, 3, 0]


def test_rejects_too_long_and_multichannel_audio():
    frontend = LogMelFrontend(FrontendParams())
    with pytest.raises(ValueError, match="longer than the model"):
        frontend.log_mel(np.zeros(11 * SR, np.float32))
    with pytest.raises(ValueError, match="mono"):
        frontend.log_mel(np.zeros((SR, 2), np.float32))


def test_parallel_front_end_gives_the_plain_front_ends_numbers_from_every_thread():
    import threading

    from streamdetect.embed.frontend import ParallelFrontend

    params = FrontendParams()
    rng = np.random.default_rng(5)
    windows = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (0, 24_000, 144_000, 480_000, 144_000)]
    plain = LogMelFrontend(params)(windows)
    parallel = ParallelFrontend(params, threads=3)
    np.testing.assert_array_equal(parallel(windows), plain)
    np.testing.assert_array_equal(parallel(windows[2]), plain[2:3])  # one window: no pool round trip
    # two callers at once: each pool thread owns its buffers, so nothing is shared between windows
    results = [None, None]

    def call(slot):
        results[slot] = parallel(windows[::-1] if slot else windows)

    callers = [threading.Thread(target=call, args=(slot,)) for slot in (0, 1)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    np.testing.assert_array_equal(results[0], plain)
    np.testing.assert_array_equal(results[1], plain[::-1])
    assert any(t.name.startswith("frontend") for t in threading.enumerate())
    with pytest.raises(ValueError, match="longer than the model's 10 s input"):
        parallel([windows[1], np.zeros(480_001, np.float32)])


def test_front_end_threads_default_to_one_on_a_cpu_and_the_cores_on_a_gpu(monkeypatch):
    from helpers import FakeEncoder

    import streamdetect.pipeline.scorer as detector

    monkeypatch.setattr(detector.os, "cpu_count", lambda: 16)
    gpu, cpu = FakeEncoder(on_gpu=True), FakeEncoder(on_gpu=False, precision="bf16")
    assert detector.frontend_threads(0, gpu) == 14 and detector.frontend_threads(0, cpu) == 1
    assert detector.frontend_threads(3, cpu) == 3 and detector.frontend_threads(3, gpu) == 3
    monkeypatch.setattr(detector.os, "cpu_count", lambda: 2)
    assert detector.frontend_threads(0, gpu) == 1
