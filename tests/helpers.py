"""Plain helpers shared by the tests (fixtures live in conftest.py): audio scenes, configs, detectors, event
records, a fake audio encoder, CLI runs, a private PulseAudio server and free loopback ports."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

SAMPLE_RATE = 48_000
FEATURE_SHAPE = (1, 1001, 64)  # the tiny model's (and CLAP's) log-mel window: 10 s at 48 kHz, 64 mels
EMBEDDING_DIM = 32  # the tiny model's projection

# ------------------------------------------------------------------------------------------- audio and configs


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


def event_spec(label: str = "x", prompts: Sequence[str] = ("a dog barking",), threshold: float = 0.5,
               **extra: Any) -> dict:
    """One ``events:`` entry of a config, as the YAML would give it."""
    return {"label": label, "prompts": list(prompts), "threshold": threshold, **extra}


def immediate_event(label: str = "x", prompts: Sequence[str] = ("a dog barking",), threshold: float = 0.5,
                    **extra: Any) -> dict:
    """An event without hysteresis or cooldown: it starts on the first window at or above ``threshold`` and ends
    on the first one below it, so tests can predict its records from window scores alone."""
    return event_spec(label, prompts, threshold, hysteresis=0.0, cooldown_s=0.0, **extra)


def config_dict(model: Path | str | None, events: list[dict], **extra: Any) -> dict:
    """A config as parsed YAML; ``runtime`` defaults to the CPU (merged with any ``runtime`` given)."""
    runtime = {"device": "cpu", **extra.pop("runtime", {})}
    data = {"events": events, "runtime": runtime, **extra}
    if model is not None:
        data["model"] = str(model)
    return data


def make_config(model: Path | str | None, events: list[dict], **extra: Any):
    """A validated ``Config`` for ``model`` (see ``config_dict``)."""
    from streamdetect.config import parse_config

    return parse_config(config_dict(model, events, **extra))


def write_config(path: Path, model: Path, events: list[dict], sinks: list[dict] | None = None, **extra) -> Path:
    """A config file as a user writes it (no runtime section unless given: the CLI's defaults apply)."""
    data = {"model": str(model), "events": events, **extra}
    if sinks is not None:
        data["sinks"] = sinks
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------ detectors and encoders


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


def written_clips(sink) -> list[Path]:
    """The clips a clips sink wrote, found as the sink itself finds them after a restart (``scan_clips``)."""
    from streamdetect.sinks.clips import scan_clips

    return sorted(c.path for c in scan_clips(sink.root))


def window_result(stream: str, start_s: float, end_s: float, wall: float, embedding, **fields: Any):
    """A ``WindowResult`` of one encoded window with the given embedding, as the detector hands its listeners;
    ``fields`` set the rest (scores, private, gated...)."""
    from streamdetect.pipeline.results import WindowResult

    sr = SAMPLE_RATE
    return WindowResult(**{"stream": stream, "start_s": start_s, "end_s": end_s, "start_sample": round(start_s * sr),
                           "end_sample": round(end_s * sr), "wall": wall, "labels": (), "scores": np.zeros(0),
                           "suppressed_by": (), "thresholds": (), "embedding": embedding, **fields})


def make_detector(model: Path, events: list[dict], *, encoder=None, bank=None, observer=None, listeners=(),
                  **config: Any):
    """``(detector, sink)``: a detector built the way the daemon builds one (``build_detector``) for ``events``
    on the CPU, writing to one collecting sink. ``encoder``/``observer``/... are handed to ``build_detector``;
    other keywords are config sections (``runtime`` is merged into the CPU default)."""
    from streamdetect.daemon.build import build_detector
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.sinks.base import SinkSet

    sink = collecting_sink()
    detector = build_detector(make_config(model, events, **config), ModelBundle.load(model),
                              SinkSet([("collect", sink)]), encoder=encoder, bank=bank, observer=observer,
                              listeners=listeners)
    return detector, sink


def file_windows(path: Path, window_s: float = 3.0, hop_s: float = 1.0, sample_rate: int = SAMPLE_RATE) -> list:
    """Every window of an audio file, as the detector's windower cuts it."""
    from streamdetect.pipeline.windows import Windower
    from streamdetect.sources.file import FileOptions, FileSource

    windower, windows = Windower(window_s, hop_s, sample_rate), []
    for block in FileSource(FileOptions(path=str(path)), sample_rate).blocks(threading.Event()):
        windows.extend(windower.push(block))
    return windows + list(windower.finish())


def split_threshold(scores) -> float:
    """A threshold halfway between the middle two distinct scores: about half the windows lie above it and none
    on it. At a window's own score (a median, say) the event would hinge on float rounding, and a score may
    differ in its last bit with the size of the batch it was scored in (BLAS)."""
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    assert distinct.size >= 2, "all windows scored the same"
    k = (distinct.size - 1) // 2
    return float((distinct[k] + distinct[k + 1]) / 2)


class FakeEncoder:
    """An ``AudioEncoder`` for tests whose subject is not the encoder: a fixed random projection of each window's
    mean log-mel spectrum (its spectral shape and level), L2-normalised. Deterministic, fast, and a window's
    embedding never depends on the other windows of its call; different sounds get different embeddings.

    ``batch_sizes`` records the size of every call.
    """

    def __init__(self, feature_shape: tuple[int, int, int] = FEATURE_SHAPE, embedding_dim: int = EMBEDDING_DIM, *,
                 file: str = "fake-encoder", precision: str = "fp32", on_gpu: bool = False, seed: int = 0):
        self.feature_shape, self.embedding_dim = tuple(feature_shape), embedding_dim
        self.file, self.precision, self.on_gpu = file, precision, on_gpu
        self.projection = np.random.default_rng(seed).standard_normal((feature_shape[-1] + 1, embedding_dim))
        self.batch_sizes: list[int] = []

    @classmethod
    def for_model(cls, model: Path, **kwargs: Any) -> FakeEncoder:
        """A fake encoder with the feature shape and embedding size of an exported model (its prompts' size)."""
        from streamdetect.model.manifest import ModelBundle

        bundle = ModelBundle.load(model)
        params = bundle.frontend_params
        return cls((1, params.n_frames, params.n_mels), bundle.embedding_dim, **kwargs)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        from streamdetect.embed.encoder.base import check_features

        features = check_features(features, self.feature_shape)
        self.batch_sizes.append(features.shape[0])
        spectrum = features.mean(axis=(1, 2), dtype=np.float64) / 100.0  # dB, about -1..1
        shape = spectrum - spectrum.mean(axis=1, keepdims=True)
        level = spectrum.mean(axis=1, keepdims=True)
        embeddings = np.concatenate([shape * 10.0, level], axis=1) @ self.projection
        norms = np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return (embeddings / norms).astype(np.float32)

    def describe(self) -> str:
        return f"fake encoder ({self.file})"


class SlowEncoder(FakeEncoder):
    """A fake encoder slower than real time (``delay_s`` per call), so that a backlog must build up."""

    def __init__(self, *args: Any, delay_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s

    def __call__(self, features: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().__call__(features)


class FailingEncoder(FakeEncoder):
    """A fake encoder that raises ``error`` from its ``fail_at``-th call on (counting from 1)."""

    def __init__(self, *args: Any, fail_at: int = 1, error: Exception | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fail_at, self.error, self.calls = fail_at, error or RuntimeError("encoder failed"), 0

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise self.error
        return super().__call__(features)


# ------------------------------------------------------------------------------------------------ event records


_END_DEFAULT: Any = object()


def event_record(phase: str = "end", *, id: str = "e1", label: str = "dog", start_s: float = 1.0,
                 end_s: Any = _END_DEFAULT, peak_score: float = 0.4, peak_time_s: float | None = None,
                 stream: str = "garden", time: str = "2026-11-24T06:00:00.000+00:00", top: tuple = (),
                 **extra: Any):
    """An ``EventRecord`` as the detector emits one; an ``end`` ends 3 s after its start unless ``end_s`` is
    given (a ``start`` has no end); the peak is mid-event unless ``peak_time_s`` is given."""
    from streamdetect.pipeline.events import EventRecord

    if end_s is _END_DEFAULT:
        end_s = start_s + 3.0 if phase == "end" else None
    if peak_time_s is None:
        peak_time_s = (start_s + end_s) / 2 if end_s is not None else start_s + 1.5
    return EventRecord(id=id, label=label, phase=phase, start_s=start_s, end_s=end_s, peak_score=peak_score,
                       peak_time_s=peak_time_s, stream=stream, time=time, top=top, **extra)


# --------------------------------------------------------------------------------------------------- processes


def run_cli_without_torch(*args: str, timeout: float = 300, env: dict | None = None,
                          rc: int = 0) -> subprocess.CompletedProcess:
    """Run ``streamdetect ARGS`` in a fresh interpreter and fail unless it exits ``rc`` without ever importing torch
    or transformers (the run-time path must not need them; a mistake is answered before they load)."""
    code = ("import sys; from streamdetect.cli import main\n"
            f"rc = main({list(args)!r})\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
            "print('RC', rc, 'HEAVY', bad)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert f"RC {rc} HEAVY []" in result.stdout, result.stdout + result.stderr
    return result


# What libraries print that a user would read as an error: no command's output may hold any of it.
NOISE = ("Skipping torchvision", "FutureWarning", "pre-processing before quantization", "UserWarning",
         "Traceback", "TqdmWarning")


def decision_line(precision: str, info: dict) -> str:
    """The line `export` prints for a reduced precision: its figure against fp32 and what was decided."""
    label = "bf16 (OpenVINO)" if precision == "bf16" else precision
    decided = "shipped" if info["status"] == "shipped" else f"refused (needs >= {info['required']})"
    return f"  {label}: min cosine vs fp32 {info['cosine_min_vs_fp32']:.5f} -> {decided}"


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamdetect", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def free_port() -> int:
    """A loopback port nobody listens on, for a test that starts a real server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tone_events(tiny_model: Path, tone_hz: float = 3000.0) -> list[dict]:
    """One event whose threshold lies between the tiny model's scores for silence and for a loud tone, so it
    fires only where the tone really arrives (the tiny model's scores mean nothing otherwise).

    The threshold sits a quarter of the way from silence to tone: silence arrives as exact zeros and scores
    exactly what is computed here, while the tone arrives resampled and re-quantised (ffmpeg, PulseAudio) and
    scores a little off, so the tone side needs the larger margin. At the midpoint a CI run under load once
    saw a streamed tone miss the threshold for 17 s."""
    from streamdetect.pipeline.windows import Window

    events = [immediate_event("tone", threshold=0.0)]
    detector, _ = make_detector(tiny_model, events)
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
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, f"no {text!r} in:\n{self.log}"
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit status once the process and its log reader have finished."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return self.proc.returncode


def start_pulse(server_env: dict) -> dict:
    """Start the private server with the null sink whose monitor is the default input; the client environment.
    The same server ``scripts/virtual_mic.py`` gives users who want a microphone without a sound card."""
    return _virtual_mic().start_server(server_env, "streamdetect_test")


def kill_pulse(server_env: dict) -> None:
    """Stop the server and wait until it is really gone (``--kill`` only sends the signal)."""
    _virtual_mic().stop_server(server_env)


def _virtual_mic():
    from scripts import virtual_mic

    return virtual_mic


def fill(folder: Path) -> None:
    """Take every free byte of the file system ``folder`` is on (the ``small_fs`` fixture's tmpfs)."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        while True:
            try:
                fh.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                return
