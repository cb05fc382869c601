"""Shared fixtures: a tiny random-weight CLAP checkpoint (built offline) and its real export.

The tiny model has the real architecture and the real front end (48 kHz, 64 mels, 1001 frames), only small
widths, so export, ONNX parity and the whole pipeline are exercised in seconds. Its scores mean nothing.
Also here: a private PulseAudio server (``pulse``) for every test that records a "microphone", and
``free_port`` for tests that start a real server on loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from streamdetect.model.offline import checkpoint_feature_extractor, offline_tokenizer

SAMPLE_RATE = 48_000
def build_tiny_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Save a small seeded CLAP with a byte-level BPE tokenizer trained offline, like a hub checkpoint."""
    import torch
    from transformers import ClapConfig, ClapModel, ClapProcessor

    torch.manual_seed(seed)
    tokenizer = offline_tokenizer()
    config = ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=80),
        audio_config=dict(patch_embeds_hidden_size=16, hidden_size=128, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 2, 2], window_size=8),
        projection_dim=32,
    )
    model = ClapModel(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    ClapProcessor(feature_extractor=checkpoint_feature_extractor(), tokenizer=tokenizer).save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-clap") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_checkpoint) -> Path:
    """The tiny checkpoint exported by the real ``streamdetect export`` code path."""
    from streamdetect.model.export import export_model

    out = tmp_path_factory.mktemp("tiny-export") / "tiny-clap"
    export_model(str(tiny_checkpoint), out, report=lambda _msg: None)
    return out


def write_tone_scene(path: Path, seconds: float = 12.0, sample_rate: int = SAMPLE_RATE, channels: int = 1,
                     tone_at: tuple[float, float] = (4.0, 8.0), seed: int = 0) -> Path:
    """Noise with a loud 3 kHz tone in ``tone_at``: two clearly different kinds of window for any encoder."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.05 * rng.standard_normal(t.size)
    on = (t >= tone_at[0]) & (t < tone_at[1])
    x[on] += 0.5 * np.sin(2 * np.pi * 3000 * t[on])
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(path, data.astype(np.float32), sample_rate)
    return path


def write_config(path: Path, model: Path, events: list[dict], sinks: list[dict] | None = None, **extra) -> Path:
    data = {"model": str(model), "events": events, **extra}
    if sinks is not None:
        data["sinks"] = sinks
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli_without_torch(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``streamdetect ARGS`` in a fresh interpreter and fail unless it exits 0 without ever importing torch
    or transformers (the run-time path must not need them)."""
    code = ("import sys; from streamdetect.cli import main\n"
            f"rc = main({list(args)!r})\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
            "print('RC', rc, 'HEAVY', bad)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert "RC 0 HEAVY []" in result.stdout, result.stdout + result.stderr
    return result


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamdetect", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)



def free_port() -> int:
    """A loopback port nobody listens on, for a test that starts a real server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collecting_sink():
    """A sink that keeps what it receives, for tests whose subject is not a sink."""
    from streamdetect.sinks.base import Sink

    class Collect(Sink):
        def __init__(self):
            super().__init__(Sink.Options())
            self.records = []

        def emit(self, record):
            self.records.append(record)

    return Collect()


def tone_events(tiny_model: Path, tone_hz: float = 3000.0) -> list[dict]:
    """One event whose threshold lies between the tiny model's scores for silence and for a loud tone, so it
    fires only where the tone really arrives (the tiny model's scores mean nothing otherwise).

    The threshold sits a quarter of the way from silence to tone: silence arrives as exact zeros and scores
    exactly what is computed here, while the tone arrives resampled and re-quantised (ffmpeg, PulseAudio) and
    scores a little off, so the tone side needs the larger margin. At the midpoint a CI run under load once
    saw a streamed tone miss the threshold for 17 s."""
    from streamdetect.config import parse_config
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.pipeline.build import build_detector
    from streamdetect.pipeline.windows import Window
    from streamdetect.sinks.base import SinkSet

    events = [{"label": "tone", "prompts": ["a dog barking"], "threshold": 0.0, "hysteresis": 0.0,
               "cooldown_s": 0.0}]
    config = parse_config({"model": str(tiny_model), "events": events, "runtime": {"device": "cpu"}})
    detector = build_detector(config, ModelBundle.load(tiny_model), SinkSet([]))
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    silent_score, tone_score = detector.scores(
        [Window(0, 0, np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE), Window(1, 0, tone, SAMPLE_RATE)]
    ).event[:, 0]
    assert tone_score - silent_score > 3e-3, "the tiny model no longer separates tone from silence"
    events[0]["threshold"] = float(silent_score + (tone_score - silent_score) / 4)
    return events


class CliRun:
    """A ``streamdetect`` command as a subprocess (a daemon under test) whose stderr is collected line by line."""

    def __init__(self, *args: str, env: dict | None = None):
        import threading

        self.proc = subprocess.Popen([sys.executable, "-m", "streamdetect", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")),
                                        daemon=True)
        self._reader.start()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Until ``text`` appears in the log; fails with the log if the process ends or time runs out."""
        import time

        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, f"no {text!r} in:\n{self.log}"
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit status once the process and its log reader have finished."""
        import signal

        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return self.proc.returncode


def start_pulse(server_env: dict) -> dict:
    """Start the private server with the null sink whose monitor is the default input; the client environment."""
    subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1", "--daemonize=yes"], env=server_env,
                   check=True, capture_output=True, timeout=30)
    env = {**server_env, "PULSE_SERVER": f"unix:{server_env['XDG_RUNTIME_DIR']}/pulse/native"}
    for cmd in (["pactl", "load-module", "module-null-sink", "sink_name=streamdetect_test", "rate=48000",
                 "channels=1"], ["pactl", "set-default-sink", "streamdetect_test"],
                ["pactl", "set-default-source", "streamdetect_test.monitor"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=30)
    return env


def kill_pulse(server_env: dict) -> None:
    """Stop the server and wait until it is really gone (``--kill`` only sends the signal)."""
    subprocess.run(["pulseaudio", "--kill"], env=server_env, capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while subprocess.run(["pulseaudio", "--check"], env=server_env, capture_output=True, timeout=30).returncode == 0:
        assert time.monotonic() < deadline, "pulseaudio did not exit"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """Environment variables that point PortAudio's ALSA 'default' device at a fresh PulseAudio null sink."""
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: run `bash tools/setup.sh --dev` (Debian pulseaudio, pulseaudio-utils)")
    runtime = tmp_path_factory.mktemp("xdg")
    runtime.chmod(0o700)
    server_env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}  # a set server blocks starting
    server_env["XDG_RUNTIME_DIR"] = str(runtime)
    server_env["PULSE_STATE_PATH"] = str(runtime / "state")  # keep the server's state out of the home directory
    try:
        yield start_pulse(server_env)
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=server_env, capture_output=True, timeout=30)
