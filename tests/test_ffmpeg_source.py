"""The ffmpeg source against a real HTTP audio stream on loopback, with outages, crashes and stalls.

The server below streams an endless float32 WAV at 44.1 kHz paced at real time, so Debian's ffmpeg (installed
by ``scripts/setup.sh --dev``; these tests fail rather than skip without it) must resample to the 48 kHz model
rate. The test controls what it plays (noise, a 3 kHz tone, silence), can stop it (connections closed, port
released) and restart it on the same port, or pause it (socket open, no bytes: a half-open camera).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from helpers import CliRun, tone_events, write_config

from streamdetect.config import ConfigError, parse_config
from streamdetect.sources import SOURCES
from streamdetect.sources.base import Gap, SourceError
from streamdetect.sources.ffmpeg import FfmpegOptions, FfmpegSource, ffmpeg_command, mask_url
from streamdetect.util.backoff import Backoff

SR = 48_000
SERVER_RATE = 44_100
TONE_HZ = 3000.0
# Small probes so ffmpeg starts decoding after a few ms instead of buffering ~1 s of PCM (also tests input_args).
FAST_START = ["-probesize", "32", "-analyzeduration", "0"]


@pytest.fixture(autouse=True, scope="session")  # not module: it need not keep the file's tests on one worker
def _ffmpeg_installed():
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: run `bash scripts/setup.sh --dev` (Debian package ffmpeg)")


class WavStreamServer:
    """An endless real-time WAV stream over HTTP whose content, outages and stalls the test controls."""

    def __init__(self, port: int = 0):
        self.port = port
        self.mode = "noise"  # "noise" (RMS 0.1), "tone" (3 kHz, amplitude 0.5) or "silence"
        self.paused = threading.Event()  # set: connections stay open but no byte is sent
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._open: set[socket.socket] = set()
        self._running = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.wav"

    def start(self) -> WavStreamServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                owner._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)  # reuses the port on restart
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._running = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashing camera would."""
        self._running = False
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._open):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests += 1
        self._open.add(handler.connection)
        rng = np.random.default_rng(self.requests)
        unknown = 0xFFFFFFFF  # endless: RIFF and data sizes unknown
        header = (b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt "
                  + struct.pack("<IHHIIHH", 16, 3, 1, SERVER_RATE, SERVER_RATE * 4, 4, 32)
                  + b"data" + struct.pack("<I", unknown))
        chunk = SERVER_RATE // 50
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "audio/wav")
            handler.end_headers()
            handler.wfile.write(header)
            owed, last, n = SERVER_RATE * 0.05, time.monotonic(), 0
            while self._running:
                time.sleep(0.01)
                now = time.monotonic()
                if self.paused.is_set():  # real time goes on, the audio of the pause is never sent
                    last = now
                    continue
                owed += (now - last) * SERVER_RATE
                last = now
                while owed >= chunk:
                    if self.mode == "tone":
                        x = 0.5 * np.sin(2 * np.pi * TONE_HZ * (n + np.arange(chunk)) / SERVER_RATE)
                    elif self.mode == "noise":
                        x = 0.1 * rng.standard_normal(chunk)
                    else:
                        x = np.zeros(chunk)
                    handler.wfile.write(x.astype("<f4").tobytes())
                    owed -= chunk
                    n += chunk
        except OSError:  # the client went away or stop() cut the connection
            pass
        finally:
            self._open.discard(handler.connection)


@pytest.fixture
def server():
    srv = WavStreamServer().start()
    yield srv
    if srv._running:
        srv.stop()


class Consumer:
    """Runs ``source.blocks`` in its own thread (as the engine does) and records each item with its arrival."""

    def __init__(self, source: FfmpegSource):
        self.source = source
        self.stop = threading.Event()
        self.items: list[tuple[float, np.ndarray | Gap]] = []
        self.error: BaseException | None = None
        self.pids: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.source.blocks(self.stop):
                if self.source.pid is not None and self.source.pid not in self.pids:
                    self.pids.append(self.source.pid)
                self.items.append((time.monotonic(), item))
        except BaseException as e:  # noqa: BLE001 - asserted by the test
            self.error = e

    def audio(self, since: float = 0.0) -> np.ndarray:
        blocks = [b for t, b in list(self.items) if t >= since and isinstance(b, np.ndarray)]
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def gaps(self) -> list[int]:
        return [b.n_samples for _, b in list(self.items) if isinstance(b, Gap)]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"timed out waiting for {what}; stats {self.source.stats()}"
            time.sleep(0.02)
        return time.monotonic()

    def wait_audio(self, seconds: float, since: float = 0.0, timeout_s: float = 15.0) -> float:
        return self.wait_for(lambda: self.audio(since).size >= seconds * SR, timeout_s, f"{seconds} s of audio")

    def finish(self) -> float:
        """Set ``stop``; how long the source took to return."""
        t0 = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=5.0)
        assert not self.thread.is_alive(), "the source did not return after stop"
        assert self.error is None, self.error
        return time.monotonic() - t0


def _source(url: str, **options) -> FfmpegSource:
    defaults = {"input_args": FAST_START, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    return FfmpegSource(FfmpegOptions(url=url, **{**defaults, **options}), SR, "cam")


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child any more: already waited for, so no zombie
    return False


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _peak_hz(x: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.size)))) * SR / x.size)


def test_decodes_a_paced_http_wav_stream_to_the_model_rate(server):
    consumer = Consumer(_source(server.url))
    consumer.wait_audio(1.0)
    server.mode = "tone"
    switched = time.monotonic()
    consumer.wait_audio(2.0, since=switched)
    stop_s = consumer.finish()

    items = consumer.items
    assert all(isinstance(b, np.ndarray) and b.dtype == np.float32 and b.ndim == 1 for _, b in items)
    audio = consumer.audio()
    # the server paces at real time: what arrived matches the time it took (44.1 kHz resampled to 48 kHz)
    span = items[-1][0] - items[0][0]
    assert abs(audio.size / SR - span) < 0.5, (audio.size / SR, span)
    noise = audio[: SR // 2]
    assert 0.08 < _rms(noise) < 0.12
    tone = consumer.audio(since=switched + 0.5)[-SR:]
    assert tone.size == SR and abs(_peak_hz(tone) - TONE_HZ) <= 2 and 0.33 < _rms(tone) < 0.38
    assert consumer.source.stats() == {"reconnects": 0, "stalls": 0, "gap_samples": 0, "ffmpeg_exits": 0,
                                      "paced_s": 0}
    assert stop_s < 1.0 and consumer.source.pid is None and _reaped(consumer.pids[0])


def test_server_outage_becomes_a_gap_of_its_length_and_audio_resumes(server, caplog):
    caplog.set_level(logging.INFO, logger="streamdetect.sources.ffmpeg")
    consumer = Consumer(_source(server.url))
    consumer.wait_audio(1.5)
    server.stop()
    down = time.monotonic()
    time.sleep(3.0)
    server.start()  # same port
    up = time.monotonic()
    consumer.wait_audio(1.5, since=up)
    consumer.finish()

    gaps = consumer.gaps()
    assert len(gaps) == 1, gaps
    gap_s = gaps[0] / SR
    assert (up - down) - 0.5 < gap_s < (up - down) + 2.0, (gap_s, up - down)
    stats = consumer.source.stats()
    assert stats["gap_samples"] == gaps[0] and stats["reconnects"] >= 2  # refused while down, then back
    assert stats["stalls"] == 0
    assert stats["reconnects"] <= 12  # ~3 s down with delays from 0.2 s doubling to 1 s: no busy retry loop
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "lost http://127.0.0.1" in warnings[0] and "is back after" in warnings[1], warnings
    # stream time (samples + gap) stays on the wall clock across the outage
    span = consumer.items[-1][0] - consumer.items[0][0]
    assert abs((consumer.audio().size + gaps[0]) / SR - span) < 0.5, span
    resumed = consumer.audio(since=up)
    assert 0.08 < _rms(resumed[-SR:]) < 0.12
    assert all(_reaped(pid) for pid in consumer.pids)


def test_a_killed_ffmpeg_is_restarted(server):
    consumer = Consumer(_source(server.url))
    consumer.wait_audio(1.0)
    first = consumer.source.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    consumer.wait_audio(1.0, since=killed)
    consumer.finish()

    assert len(consumer.pids) == 2 and consumer.pids[0] == first
    stats = consumer.source.stats()
    assert stats["ffmpeg_exits"] == 1 and stats["reconnects"] == 1 and stats["stalls"] == 0
    gaps = consumer.gaps()
    assert len(gaps) == 1 and 0 < gaps[0] / SR < 2.0, gaps
    assert all(_reaped(pid) for pid in consumer.pids)


def test_a_stalled_connection_is_detected_and_reconnected(server):
    consumer = Consumer(_source(server.url, stall_timeout_s=1.5))
    consumer.wait_audio(1.0)
    server.paused.set()  # socket open, nothing sent: only our timeout can notice
    paused = time.monotonic()
    detected = consumer.wait_for(lambda: consumer.source.stats()["stalls"] >= 1, 10.0, "the stall")
    assert 1.3 < detected - paused < 1.5 + 2.0, detected - paused
    time.sleep(max(0.0, paused + 4.0 - time.monotonic()))
    server.paused.clear()
    resumed = time.monotonic()
    consumer.wait_audio(1.0, since=resumed)
    consumer.finish()

    stats = consumer.source.stats()
    assert stats["reconnects"] >= 1 and server.requests >= 2
    gaps = consumer.gaps()
    assert len(gaps) == 1 and (resumed - paused) - 0.5 < gaps[0] / SR < (resumed - paused) + 2.0, gaps
    assert 0.08 < _rms(consumer.audio(since=resumed)[-SR // 2:]) < 0.12
    assert all(_reaped(pid) for pid in consumer.pids)


def test_stop_is_prompt_during_a_stalled_read_and_during_back_off(server):
    consumer = Consumer(_source(server.url, stall_timeout_s=30.0))
    consumer.wait_audio(0.5)
    server.paused.set()
    time.sleep(0.5)
    pid = consumer.source.pid
    assert consumer.finish() < 1.0 and pid is not None and _reaped(pid)

    server.stop()
    consumer = Consumer(_source(server.url, reconnect_min_s=20.0, reconnect_max_s=30.0))
    consumer.wait_for(lambda: consumer.source.stats()["reconnects"] >= 1, 10.0, "a refused connection")
    assert consumer.finish() < 1.0 and all(_reaped(p) for p in consumer.pids)


def _push_rtsp(url: str, freq: float, seconds: float, timeout_s: float = 15.0) -> None:
    """Publish a sine to ``url`` with a second ffmpeg, retrying until the listening side accepts it."""
    deadline = time.monotonic() + timeout_s
    while True:
        pusher = subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
             f"sine=frequency={freq:g}:sample_rate=44100", "-t", str(seconds), "-c:a", "pcm_s16be",
             "-rtsp_transport", "tcp", "-f", "rtsp", url], capture_output=True, text=True, timeout=seconds + 20)
        if pusher.returncode == 0:
            return
        assert time.monotonic() < deadline, pusher.stderr
        time.sleep(0.2)  # our side is between connections (refused): try again


def test_an_rtsp_stream_is_decoded_and_followed_across_publisher_restarts():
    # No RTSP server package is at hand, so our source's ffmpeg takes the server role itself (listen mode) and a
    # second ffmpeg publishes to it over RTSP/TCP: the RTSP demuxer, depacketising and -rtsp_transport are real.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/live"
    source = _source(url, input_args=["-rtsp_flags", "listen"], stall_timeout_s=8.0)
    assert ffmpeg_command(source.options, "ffmpeg", SR)[5:7] == ["-rtsp_transport", "tcp"]
    consumer = Consumer(source)
    _push_rtsp(url, 3000, 2.5)
    first_end = time.monotonic()
    consumer.wait_for(lambda: source.stats()["reconnects"] >= 1, 10.0, "the end of the first publication")
    time.sleep(1.0)
    _push_rtsp(url, 1000, 2.5)
    consumer.wait_audio(2.0, since=first_end + 0.5)
    consumer.finish()

    kinds = ["gap" if isinstance(b, Gap) else "audio" for _, b in consumer.items]
    assert kinds.count("gap") == 1, kinds
    split = kinds.index("gap")
    before = np.concatenate([b for _, b in consumer.items[:split]])
    after = np.concatenate([b for _, b in consumer.items[split + 1:]])
    assert before.size > 2 * SR and after.size > 2 * SR
    assert abs(_peak_hz(before[SR // 2: SR // 2 + SR]) - 3000) <= 2
    assert abs(_peak_hz(after[SR // 2: SR // 2 + SR]) - 1000) <= 2
    assert all(_reaped(pid) for pid in consumer.pids)


def test_finite_mode_reads_a_file_and_reports_ffmpeg_errors(tmp_path):
    import soundfile as sf

    t = np.arange(2 * 22_050) / 22_050
    sf.write(tmp_path / "a.wav", np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1), 22_050)
    source = FfmpegSource(FfmpegOptions(url=str(tmp_path / "a.wav"), live=False), SR, "file")
    assert source.live is False
    audio = np.concatenate(list(source.blocks(threading.Event())))
    assert abs(audio.size - 2 * SR) <= 64 and abs(_peak_hz(audio[:SR]) - 440) <= 2

    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 100)
    bad = FfmpegSource(FfmpegOptions(url=str(tmp_path / "bad.wav"), live=False), SR, "bad")
    with pytest.raises(SourceError, match=r"cannot decode .*bad\.wav: ffmpeg exit code \d+: .*Invalid data"):
        list(bad.blocks(threading.Event()))


def test_passwords_are_masked_and_rtsp_uses_tcp():
    url = "rtsp://admin:s3cret@10.0.0.5:554/stream1"
    assert mask_url(url) == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert mask_url("http://host/x.mp3") == "http://host/x.mp3"
    cmd = ffmpeg_command(FfmpegOptions(url=url, input_args=["-timeout", "5000000"]), "/usr/bin/ffmpeg", SR)
    assert cmd[:5] == ["/usr/bin/ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    assert cmd[cmd.index("-rtsp_transport") + 1] == "tcp" and cmd.index("-timeout") < cmd.index("-i")
    assert cmd[-7:] == ["-f", "f32le", "-ac", "1", "-ar", "48000", "pipe:1"]
    assert "-rtsp_transport" not in ffmpeg_command(FfmpegOptions(url="http://x/a.wav"), "ffmpeg", SR)
    source = FfmpegSource(FfmpegOptions(url=url), SR)
    assert source.name == "rtsp://admin:***@10.0.0.5:554/stream1" and "s3cret" not in source.masked_url


def test_passwords_never_reach_the_log_even_when_ffmpeg_prints_the_url(server, caplog):
    caplog.set_level(logging.DEBUG, logger="streamdetect.sources.ffmpeg")
    server.stop()  # refused: ffmpeg's error line names the URL it could not open
    consumer = Consumer(_source(server.url.replace("http://", "http://user:s3cret@")))
    consumer.wait_for(lambda: consumer.source.stats()["reconnects"] >= 2, 10.0, "two refused connections")
    consumer.finish()
    assert "Connection refused" in caplog.text and "user:***@127.0.0.1" in caplog.text, caplog.text
    assert "s3cret" not in caplog.text


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 4.0, floor_s=0.5, rng=random.Random(1))  # as FfmpegSource makes it
    delays = [backoff.next_delay() for _ in range(8)]
    bases = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(base / 2 <= d <= base for d, base in zip(delays, bases, strict=True)), delays
    assert len(set(delays)) == len(delays)  # jittered: cameras that failed together do not retry together
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5


def test_config_errors_name_the_key_and_a_missing_binary_says_how_to_install():
    base = {"events": [{"label": "a", "prompts": ["x"], "threshold": 0.3}]}
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "sources": [{"type": "ffmpeg", "name": "cam1"}]}, "cfg.yaml")
    assert any(path.startswith("sources[0]") and "url" in path for path, _ in info.value.problems), info.value
    with pytest.raises(ConfigError) as info:
        parse_config({**base, "sources": [{"type": "ffmpeg", "url": "rtsp://x", "stall_timeout_s": "soon",
                                           "reconnect_max_s": 0.01}]}, "cfg.yaml")
    paths = " ".join(path for path, _ in info.value.problems)
    assert "stall_timeout_s" in paths and "reconnect_max_s" in paths and "cfg.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="unknown_flag"):
        parse_config({**base, "sources": [{"type": "ffmpeg", "url": "rtsp://x", "unknown_flag": 1}]}, "cfg.yaml")
    assert SOURCES.get("ffmpeg") is FfmpegSource
    with pytest.raises(SourceError, match=r"'no-such-ffmpeg' not found.*apt-get install ffmpeg"):
        FfmpegSource(FfmpegOptions(url="rtsp://x", ffmpeg="no-such-ffmpeg"), SR)


def test_cli_detects_a_tone_after_the_stream_was_down_with_wall_clock_times(server, tiny_model, tmp_path):
    # Threshold between the tiny model's scores for silence and for the tone, so the event fires only if the
    # tone played after the outage really arrives through the reconnected ffmpeg.
    events = tone_events(tiny_model, TONE_HZ)

    server.mode = "silence"
    out = tmp_path / "events.jsonl"
    source = {"type": "ffmpeg", "name": "cam1", "url": server.url, "input_args": FAST_START,
              "stall_timeout_s": 3.0, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, events, sinks=[{"type": "jsonl", "path": str(out)}],
                       runtime={"device": "cpu"}, sources=[source])
    run = CliRun("run", "--config", str(cfg))
    try:
        run.wait_for("receiving audio from", 60)
        time.sleep(3.5)  # the first window (silence) has been analysed: nothing may fire
        server.stop()
        time.sleep(5.0)
        server.start()
        run.wait_for("is back after", 15)
        server.mode = "tone"
        tone_on = datetime.now(timezone.utc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (out.exists() and '"start"' in out.read_text()):
            time.sleep(0.1)
        time.sleep(0.5)
        server.mode = "silence"
    finally:
        status = run.stop(timeout_s=30)
    stderr = run.log
    assert status == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and records[0]["phase"] == "start" and records[0]["stream"] == "cam1", (records, stderr)
    start = records[0]
    # the 5 s outage is in the stream as a gap, so the record's wall time is the time the tone was played
    # (within a window); without the gap it would be ~5 s early
    fired = datetime.fromisoformat(start["time"].replace("Z", "+00:00"))
    assert -1.5 < (fired - tone_on).total_seconds() < 4.5, (start, tone_on)
    assert start["start_s"] > 8.0  # stream time counts the outage
    assert "lost http://127.0.0.1" in stderr and "audio lost" in stderr and "SIGTERM received" in stderr
    assert re.search(r"cam1: .*, reconnects [1-9]", stderr), stderr  # the run summary reports the source stats
