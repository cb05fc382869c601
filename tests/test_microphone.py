"""The real microphone path (PortAudio -> ALSA -> PulseAudio) without a sound card.

A private PulseAudio server gets a null sink whose monitor is the default input; the tests play generated
audio into the sink with ``paplay`` and record it through ``sounddevice`` exactly as a user's microphone would
be recorded. Needs Debian's pulseaudio, pulseaudio-utils, libasound2-plugins and libportaudio2
(``scripts/setup.sh --dev`` installs them); without them these tests fail rather than skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import CliRun, kill_pulse, start_pulse, tone_events, write_config

SR = 48_000
TONE_HZ = 3000.0


@pytest.fixture
def pulse_in_process(pulse, monkeypatch):
    """Point this process's PortAudio at the test server (re-scanning devices if it was already started)."""
    for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER"):
        monkeypatch.setenv(key, pulse[key])
    import sounddevice as sd

    sd._terminate()
    sd._initialize()
    yield pulse
    sd._terminate()
    sd._initialize()


def tone_file(path: Path, seconds: float, freq: float = 1000.0) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, subtype="PCM_16")
    return path


def play(path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(["paplay", str(path)], env=env)


def test_devices_lists_the_default_input(pulse):
    result = subprocess.run([sys.executable, "-m", "streamdetect", "devices"], env=pulse, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("*") and "default" in line for line in result.stdout.splitlines()), result.stdout


def test_microphone_source_records_and_resamples_what_is_played(pulse_in_process, tmp_path):
    from streamdetect.sources.microphone import MicrophoneOptions, MicrophoneSource

    source = MicrophoneSource(MicrophoneOptions(device="default"), SR)
    stop = threading.Event()
    got: list[np.ndarray] = []
    player = None
    started = time.monotonic()
    for block in source.blocks(stop):
        got.append(block)
        if player is None:
            player = play(tone_file(tmp_path / "tone.wav", 1.5), pulse_in_process)
        if player.poll() is not None and time.monotonic() - started > 2.5:
            stop.set()
    audio = np.concatenate(got)
    assert source.native_rate > 0 and source.stats()["overrun_samples"] == 0
    loud = audio[np.abs(audio) > 0.1]
    assert loud.size > SR  # more than a second of the tone came through
    segment = audio[np.argmax(np.abs(audio) > 0.1) :][: SR // 2]
    peak_hz = np.argmax(np.abs(np.fft.rfft(segment))) * SR / segment.size
    assert abs(peak_hz - 1000) < 5  # resampled from the device rate to 48 kHz without a pitch shift


def test_cli_detects_a_sound_played_into_the_microphone_and_flushes_on_sigterm(pulse, tiny_model, tmp_path):
    # Pick a threshold between the scores of a silent window and a tone window, so the event can only
    # fire if the tone really travels through PulseAudio, PortAudio, the ring buffer and the resampler.
    # (For the seeded tiny model a 3 kHz tone raises the score of "a dog barking" by about 0.01.)
    events = tone_events(tiny_model)

    out = tmp_path / "mic.jsonl"
    cfg = write_config(tmp_path / "mic.yaml", tiny_model, events, sinks=[{"type": "jsonl", "path": str(out)}],
                       runtime={"device": "cpu"})
    run = CliRun("run", "--config", str(cfg), "--device", "default", env=pulse)
    try:
        run.wait_for("recording from", 60)
        time.sleep(4.5)  # the first window (0-3 s) is pure silence and has been analysed: nothing may fire
        assert not out.exists() or out.read_text() == "", out.read_text()
        player = play(tone_file(tmp_path / "tone.wav", 5.0, TONE_HZ), pulse)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (out.exists() and '"start"' in out.read_text()):
            time.sleep(0.2)
        player.wait(timeout=30)
    finally:
        status = run.stop()
    stderr = run.log
    assert status == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["phase"] for r in records][:2] == ["start", "end"], (records, stderr)
    start = records[0]
    assert start["label"] == "tone" and start["stream"].startswith("mic:") and start["start_s"] >= 1.0  # silence did not fire
    assert "recording from" in stderr and "SIGTERM received" in stderr


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_microphone_reopens_after_the_sound_server_dies_and_hears_audio_again(pulse_in_process, tmp_path):
    """A real device failure: the PulseAudio server behind the ALSA 'default' device is killed mid-stream and
    started again later. The source must notice, retry with back-off, reopen (re-initialising PortAudio),
    record what is played afterwards, and account for the time without audio with one Gap."""
    from streamdetect.sources.base import Gap
    from streamdetect.sources.microphone import MicrophoneOptions, MicrophoneSource

    server_env = {k: v for k, v in pulse_in_process.items() if k != "PULSE_SERVER"}
    options = MicrophoneOptions(device="default", stall_timeout_s=2.0, reconnect_min_s=0.1, reconnect_max_s=0.5)
    source = MicrophoneSource(options, SR)
    stop = threading.Event()
    got: list = []

    def consume() -> None:
        for item in source.blocks(stop):
            got.append(item)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    player = None
    try:
        wait_until(lambda: sum(b.size for b in got if not isinstance(b, Gap)) > SR // 2, 30, "no audio at all")
        killed_at = time.monotonic()
        kill_pulse(server_env)
        wait_until(lambda: source.failed_opens >= 2, 30, "the source did not notice the dead server or retry")
        assert source.stats()["reopens"] == 0 and reader.is_alive()
        restarted_at = time.monotonic()
        start_pulse(server_env)
        wait_until(lambda: source.stats()["reopens"] == 1, 30, "the source did not reopen the device")
        wait_until(lambda: any(isinstance(b, Gap) for b in got), 10, "no Gap for the outage")
        after_gap = next(i for i, b in enumerate(got) if isinstance(b, Gap))
        player = play(tone_file(tmp_path / "tone.wav", 1.0), pulse_in_process)

        def tone_heard() -> bool:
            blocks = [b for b in got[after_gap + 1 :] if not isinstance(b, Gap)]
            return bool(blocks) and int(np.sum(np.abs(np.concatenate(blocks)) > 0.1)) > SR // 2

        wait_until(tone_heard, 30, "the tone played after the restart never arrived")
    finally:
        if player is not None:
            player.wait(timeout=30)
        stop.set()
        reader.join(timeout=10)
    assert not reader.is_alive(), "blocks() did not end promptly after stop"
    gaps = [b for b in got if isinstance(b, Gap)]
    assert len(gaps) == 1 and source.stats()["reopens"] == 1
    # the gap covers at least the time the server was down (audio ended no later than the kill)
    assert gaps[0].n_samples >= (restarted_at - killed_at) * SR * 0.95, (gaps[0], restarted_at - killed_at)
    audio = np.concatenate([b for b in got[after_gap + 1 :] if not isinstance(b, Gap)])
    segment = audio[np.argmax(np.abs(audio) > 0.1) :][: SR // 2]
    peak_hz = np.argmax(np.abs(np.fft.rfft(segment))) * SR / segment.size
    assert abs(peak_hz - 1000) < 5


def test_daemon_survives_the_sound_server_restarting_and_detects_afterwards(pulse, tiny_model, tmp_path):
    """The daemon on a live input keeps running through a device failure and detects a sound played after the
    device came back; the outage is logged as lost audio and SIGTERM still ends it cleanly."""
    server_env = {k: v for k, v in pulse.items() if k != "PULSE_SERVER"}
    out = tmp_path / "mic.jsonl"
    cfg = write_config(tmp_path / "mic.yaml", tiny_model, tone_events(tiny_model),
                       sinks=[{"type": "jsonl", "path": str(out)}], runtime={"device": "cpu"})
    run = CliRun("run", "--config", str(cfg), "--device", "default", env=pulse)
    player = None
    try:
        run.wait_for("recording from", 60)
        time.sleep(1.0)
        kill_pulse(server_env)
        run.wait_for("failed", 30)
        time.sleep(1.0)
        start_pulse(server_env)
        run.wait_for("reopened", 60)
        player = play(tone_file(tmp_path / "tone.wav", 5.0, TONE_HZ), pulse)
        wait_until(lambda: out.exists() and '"start"' in out.read_text(), 30, "no event after the restart")
    finally:
        if player is not None:
            player.wait(timeout=30)
        status = run.stop()
    stderr = run.log
    assert status == 0, stderr
    assert "audio lost" in stderr and "reopens 1" in stderr, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["phase"] for r in records] == ["start", "end"], (records, stderr)
