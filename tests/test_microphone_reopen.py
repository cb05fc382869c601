"""Reopening logic of the microphone source against a scripted fake ``sounddevice`` module.

The real fault (the sound server dying) is in test_microphone.py; here each open of the fake device follows a
script (deliver some blocks then stall or stop, or fail to open), which pins down the back-off, the device
lookup by name after a re-plug (new index), the Gap and the reaction to ``stop``.
"""

from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest

from streamdetect.sources.base import Gap
from streamdetect.sources.microphone import MicrophoneOptions, MicrophoneSource

SR = 48_000
NAME = "USB Mic"


class FakePortAudio:
    """Just enough of sounddevice: one input device whose index changes when it is 're-plugged'."""

    def __init__(self, script: list):
        self.script = list(script)  # per open: ("deliver", n_blocks, then) with then "stall"/"stop", or "fail"
        self.index = 3
        self.opened_indices: list[int] = []
        self.rescans = 0
        self.streams: list = []
        fake = self

        class PortAudioError(Exception):
            pass

        class InputStream:
            def __init__(self, device, channels, samplerate, dtype, blocksize, callback):
                step = fake.script.pop(0) if fake.script else ("deliver", 10**9, "stall")
                if step == "fail":
                    raise PortAudioError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")
                fake.opened_indices.append(device)
                self.step, self.blocksize, self.callback = step, blocksize, callback
                self.active, self.closed = False, False
                fake.streams.append(self)

            def start(self):
                self.active = True
                threading.Thread(target=self._run, daemon=True).start()

            def _run(self):
                _, n_blocks, then = self.step
                for i in range(n_blocks):
                    if self.closed:
                        return
                    block = np.full((self.blocksize, 1), 0.1 + 0.01 * (i % 10), np.float32)
                    self.callback(block, self.blocksize, None, types.SimpleNamespace(input_overflow=False))
                    time.sleep(0.002)
                if then == "stop":
                    self.active = False

            def close(self, ignore_errors=True):
                self.closed, self.active = True, False

        def query_devices():
            return [{"index": fake.index, "name": NAME, "hostapi": 0, "max_input_channels": 1,
                     "default_samplerate": float(SR)}]

        def _terminate():
            fake.rescans += 1
            fake.index += 4  # the re-plugged device shows up under a new index after the rescan

        self.module = types.SimpleNamespace(
            PortAudioError=PortAudioError, InputStream=InputStream, query_devices=query_devices,
            query_hostapis=lambda i: {"name": "ALSA"}, default=types.SimpleNamespace(device=(-1, -1)),
            _terminate=_terminate, _initialize=lambda: None)


@pytest.fixture
def fake_sd(monkeypatch):
    def install(script):
        fake = FakePortAudio(script)
        monkeypatch.setitem(sys.modules, "sounddevice", fake.module)
        return fake
    return install


def run_until(source, stop, predicate, timeout_s=20.0):
    got, done = [], threading.Event()

    def consume():
        for item in source.blocks(stop):
            got.append(item)
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not predicate(got) and time.monotonic() < deadline:
        time.sleep(0.01)
    ok = predicate(got)
    stopped_at = time.monotonic()
    stop.set()
    assert done.wait(5), "blocks() did not end after stop"
    return got, ok, time.monotonic() - stopped_at


def audio_after_first_gap(got):
    if not any(isinstance(b, Gap) for b in got):
        return 0
    i = next(i for i, b in enumerate(got) if isinstance(b, Gap))
    return sum(b.size for b in got[i + 1 :] if not isinstance(b, Gap))


def test_stall_then_failed_open_then_reopen_by_name_with_a_gap(fake_sd):
    fake = fake_sd([("deliver", 20, "stall"), "fail", "fail", ("deliver", 10**9, "stall")])
    options = MicrophoneOptions(device=NAME, block_s=0.01, stall_timeout_s=0.5, reconnect_min_s=0.05,
                                reconnect_max_s=0.2)
    source = MicrophoneSource(options, SR)
    t0 = time.monotonic()
    got, ok, _ = run_until(source, threading.Event(), lambda g: audio_after_first_gap(g) > SR // 10)
    assert ok, got
    assert fake.opened_indices[0] == 3 and fake.opened_indices[1] > 3  # found again under its new index
    assert fake.rescans >= 3 and source.stats()["reopens"] == 1 and source.failed_opens == 2
    gaps = [b for b in got if isinstance(b, Gap)]
    assert len(gaps) == 1
    gap_at = next(i for i, b in enumerate(got) if isinstance(b, Gap))
    first_audio = sum(b.size for b in got[:gap_at])
    assert first_audio == 20 * int(0.01 * SR)  # everything delivered before the stall was passed on
    # the gap is the stall (0.5 s) plus the back-off waits, but less than the whole run
    assert 0.5 * SR <= gaps[0].n_samples <= (time.monotonic() - t0) * SR
    assert all(s.closed for s in fake.streams[:-1])


def test_a_stream_that_stops_is_reopened_and_quick_deaths_back_off(fake_sd):
    # every stream dies at once without delivering anything: reopening must back off, not spin
    fake = fake_sd([("deliver", 0, "stop")] * 1000)
    options = MicrophoneOptions(device=NAME, stall_timeout_s=0.5, reconnect_min_s=0.05, reconnect_max_s=0.2)
    source = MicrophoneSource(options, SR)
    got, _, _ = run_until(source, threading.Event(), lambda g: False, timeout_s=1.5)
    # waits are at least 0.025, 0.05, 0.1, then 0.1 s (half of the capped 0.2 s): at most ~17 opens in 1.5 s
    assert 2 <= len(fake.opened_indices) <= 17, len(fake.opened_indices)
    assert all(isinstance(b, Gap) for b in got)


def test_stop_is_prompt_during_a_long_backoff(fake_sd):
    fake_sd(["fail"] * 10)
    options = MicrophoneOptions(device=NAME, reconnect_min_s=30.0, reconnect_max_s=60.0)
    source = MicrophoneSource(options, SR)
    _, _, took = run_until(source, threading.Event(), lambda g: source.failed_opens >= 1, timeout_s=5)
    assert source.failed_opens == 1 and took < 2.0


def test_backoff_doubles_with_jitter_up_to_the_cap(fake_sd):
    fake_sd([])
    source = MicrophoneSource(MicrophoneOptions(device=NAME, reconnect_min_s=0.5, reconnect_max_s=4.0), SR)
    for failures, full in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (60, 4.0)]:
        delays = [source._backoff.delay(failures) for _ in range(200)]
        assert full / 2 <= min(delays) and max(delays) <= full and max(delays) - min(delays) > full / 10


def test_a_device_that_does_not_exist_at_startup_is_a_clear_error(fake_sd):
    from streamdetect.sources.base import SourceError

    fake_sd([])
    with pytest.raises(SourceError, match="no input device matches 'Nope'"):
        MicrophoneSource(MicrophoneOptions(device="Nope"), SR)
    with pytest.raises(ValueError, match="reconnect_max_s"):
        MicrophoneOptions(reconnect_min_s=5.0, reconnect_max_s=1.0)
