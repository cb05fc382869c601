"""Any stream or file ffmpeg can read (RTSP cameras, HTTP/Icecast streams, local files), through an ffmpeg child.

ffmpeg decodes, mixes down and resamples to the model rate and writes raw float32 to a pipe; this module only
supervises it. A live stream is expected to fail now and then (camera reboots, Wi-Fi drops, half-open TCP
connections that never deliver another byte), so the source watches the pipe with ``select``: silence on the
pipe for ``stall_timeout_s`` or an exiting ffmpeg means kill, back off (exponential, jittered, capped) and
reconnect. The audio missed meanwhile is reported as a ``Gap`` so event times stay on the wall clock.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from streamdetect.sources.base import AudioSource, Gap, SourceError, SourceOptions
from streamdetect.util.backoff import Backoff
from streamdetect.util.children import child_env, kill_group
from streamdetect.util.ratelimit import RateLimitedLog
from streamdetect.util.urls import mask_url, scrub, url_secrets

log = logging.getLogger(__name__)

_POLL_S = 0.2  # longest wait on the pipe or in back-off before ``stop`` is looked at again
_READ_BYTES = 1 << 16
_STDERR_LINES = 20


class FfmpegOptions(SourceOptions):
    url: str = Field(min_length=1, max_length=4096, description="anything ffmpeg reads after -i: URL or path")
    live: bool = Field(True, description="a stream: reconnect for ever; false: a finite file that ends with ffmpeg")
    stall_timeout_s: float = Field(10.0, gt=0, le=600, description="no audio for this long: kill and reconnect")
    reconnect_min_s: float = Field(1.0, ge=0.05, le=600, description="first back-off delay after a failure")
    reconnect_max_s: float = Field(60.0, ge=0.05, le=3600, description="back-off delays grow up to this")
    max_ahead_s: float | None = Field(
        5.0, gt=0, le=3600, description="a live stream delivering audio faster than real time (a file served at "
        "full speed) is read at real time once it is this far ahead of the clock, and flagged in the log; "
        "null: never paced")
    healthy_after_s: float = Field(30.0, gt=0, le=3600, description="audio for this long resets the back-off")
    rtsp_transport: Literal["tcp", "udp"] | None = Field(
        "tcp", description="-rtsp_transport for rtsp:// URLs (tcp survives NAT and loss); null: ffmpeg's default")
    input_args: list[str] = Field(default_factory=list, max_length=64,
                                  description="extra ffmpeg arguments placed before -i (e.g. -timeout, headers)")
    ffmpeg: str = Field("ffmpeg", min_length=1, description="ffmpeg binary, by name on PATH or as a path")
    pass_env: list[str] = Field(default_factory=list, max_length=256,
                                description="environment variables passed to ffmpeg besides PATH, HOME, locale, "
                                            "proxies and the like (the daemon's secrets are never passed otherwise)")

    @model_validator(mode="after")
    def _ordered_delays(self) -> FfmpegOptions:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s ({self.reconnect_min_s}) is larger than reconnect_max_s "
                             f"({self.reconnect_max_s})")
        return self


def ffmpeg_command(options: FfmpegOptions, binary: str, sample_rate: int) -> list[str]:
    """The argument list (never a shell line) that decodes ``options.url`` to mono float32 on stdout."""
    cmd = [binary, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if (options.rtsp_transport and options.url.lower().startswith(("rtsp://", "rtsps://"))
            and "-rtsp_transport" not in options.input_args):
        cmd += ["-rtsp_transport", options.rtsp_transport]
    cmd += [*options.input_args, "-i", options.url, "-vn", "-sn", "-dn",
            "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"]
    return cmd


class _Child:
    """One ffmpeg process: its stdout pipe, and the last lines of its stderr gathered by a reader thread (with
    the URL's secrets masked: ffmpeg repeats its input in error lines). It runs in its own process group with
    a clean environment (``util.children``)."""

    def __init__(self, cmd: list[str], url: str, env: dict[str, str]):
        self.url, self.secrets = url, url_secrets(url)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0, env=env, start_new_session=True)
        except OSError as e:  # vanished binary, no permission, out of processes
            raise SourceError(f"cannot start {cmd[0]}: {e}") from e
        if self.proc.stdout is None or self.proc.stderr is None:  # both are pipes, asked for above
            raise SourceError(f"cannot read the output of {cmd[0]}")
        self.out, self.err = self.proc.stdout, self.proc.stderr
        self.fd = self.out.fileno()
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._reader = threading.Thread(target=self._read_stderr, name=f"ffmpeg-stderr-{self.proc.pid}",
                                        daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for raw in iter(self.err.readline, b""):
            line = scrub(raw.decode("utf-8", "replace").rstrip(), self.url, self.secrets)
            if line:
                self.stderr.append(line)

    def read(self, timeout_s: float) -> bytes | None:
        """Bytes from the pipe; ``b""`` at end of stream, ``None`` if nothing came within ``timeout_s``."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return None
        return os.read(self.fd, _READ_BYTES)

    def close(self) -> int:
        """Kill (if still running) and reap the child; its exit code (negative: killed by that signal)."""
        kill_group(self.proc)  # also what ffmpeg may have started (a protocol helper)
        code = self.proc.returncode
        self.out.close()
        self._reader.join(timeout=2.0)  # ends at EOF on stderr, i.e. now that the process is gone
        self.err.close()
        return code

    def describe(self, code: int) -> str:
        tail = "; ".join(list(self.stderr)[-3:])
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return f"ffmpeg {how}" + (f": {tail}" if tail else "")


class FfmpegSource(AudioSource[FfmpegOptions]):
    Options = FfmpegOptions
    live = True

    def __init__(self, options: FfmpegOptions, sample_rate: int, name: str | None = None):
        super().__init__(options, sample_rate, name or mask_url(options.url))
        self.live = options.live  # type: ignore[misc]  # a file decoded by ffmpeg is not a live stream
        binary = shutil.which(options.ffmpeg)
        if binary is None:
            raise SourceError(
                f"source {self.name}: ffmpeg binary {options.ffmpeg!r} not found; install it "
                "(Debian/Ubuntu: apt-get install ffmpeg) or set the source's `ffmpeg:` key to its full path")
        self.binary = binary
        self.masked_url = mask_url(options.url)
        self.reconnects = 0
        self.stalls = 0
        self.paced_s = 0.0  # time spent holding back a stream faster than real time
        self._fast_log = RateLimitedLog(log, 60.0)
        self.gap_samples = 0
        self.ffmpeg_exits = 0
        self.pid: int | None = None  # the running ffmpeg's process id (tests kill it to simulate a crash)

    def blocks(self, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        if self.options.live:
            yield from self._live(stop)
        else:
            yield from self._finite(stop)

    def _spawn(self) -> _Child:
        child = _Child(ffmpeg_command(self.options, self.binary, self.sample_rate), self.options.url,
                       child_env(self.options.pass_env))
        self.pid = child.proc.pid
        return child

    def _finite(self, stop: threading.Event) -> Iterator[np.ndarray]:
        child = self._spawn()
        log.info("%s: decoding %s with ffmpeg", self.name, self.masked_url)
        decoder = _Float32Decoder()
        try:
            quiet_since = time.monotonic()
            while not stop.is_set():
                data = child.read(_POLL_S)
                if data is None:
                    if time.monotonic() - quiet_since > self.options.stall_timeout_s:
                        self.stalls += 1
                        raise SourceError(f"{self.masked_url}: no audio from ffmpeg for "
                                          f"{self.options.stall_timeout_s:g} s")
                    continue
                if not data:
                    break
                quiet_since = time.monotonic()
                block = decoder(data)
                if block.size:
                    yield block
        finally:
            code = child.close()
            self.pid = None
        if not stop.is_set() and code != 0:
            raise SourceError(f"cannot decode {self.masked_url}: {child.describe(code)}")

    def _live(self, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        opts = self.options
        # reset after a healthy connection; never restart ffmpeg sooner than reconnect_min_s (jitter or not)
        backoff = Backoff(opts.reconnect_min_s, opts.reconnect_max_s, floor_s=opts.reconnect_min_s)
        last_audio = time.monotonic()  # when the last sample arrived (start-up counts, so a dead camera is a gap)
        outage_since: float | None = None  # set while we are between connections that delivered audio
        attempts = 0
        heard = False  # any audio yet: an outage at start-up is "cannot open", later ones "lost"
        while not stop.is_set():
            child = self._spawn()
            attempts += 1
            decoder = _Float32Decoder()
            connected_at = None  # first audio of this connection
            received = 0  # samples of this connection
            reason = ""
            try:
                quiet_since = time.monotonic()
                while not stop.is_set():
                    data = child.read(_POLL_S)
                    now = time.monotonic()
                    if data is None:
                        if now - quiet_since >= opts.stall_timeout_s:
                            self.stalls += 1
                            reason = f"no audio for {now - quiet_since:.1f} s (stalled)"
                            break
                        continue
                    if not data:
                        break
                    quiet_since = now
                    block = decoder(data)
                    if not block.size:
                        continue
                    if connected_at is None:
                        connected_at = now
                        if outage_since is not None:
                            # this block's samples were heard just before ``now``: only the rest is missing
                            missed = max(0, int(round((now - last_audio) * self.sample_rate)) - block.size)
                            log.warning("%s: %s is back after %.1f s (%d attempt(s)); %.1f s of audio missed",
                                        self.name, self.masked_url, now - outage_since, attempts,
                                        missed / self.sample_rate)
                            if missed > 0:
                                self.gap_samples += missed
                                yield Gap(missed)
                            outage_since = None
                        else:
                            log.info("%s: receiving audio from %s", self.name, self.masked_url)
                        attempts, heard = 0, True
                    elif backoff.failures and now - connected_at >= opts.healthy_after_s:
                        backoff.reset()
                    last_audio = now
                    received += block.size
                    yield block
                    if opts.max_ahead_s is not None:
                        self._pace(received / self.sample_rate - (time.monotonic() - connected_at),
                                   opts.max_ahead_s, stop)
                        quiet_since = time.monotonic()
            finally:
                code = child.close()
                self.pid = None
            if stop.is_set():
                return
            reason = self._why(child, code, reason)
            delay = backoff.next_delay()
            if outage_since is None:
                outage_since = time.monotonic()
                log.warning("%s: %s %s: %s; reconnecting (first retry in %.1f s)", self.name,
                            "lost" if heard else "cannot open", self.masked_url, reason, delay)
            else:
                log.debug("%s: %s still down: %s; next retry in %.1f s", self.name, self.masked_url, reason, delay)
            self.reconnects += 1
            stop.wait(delay)

    def _pace(self, ahead_s: float, max_ahead_s: float, stop: threading.Event) -> None:
        """Hold back a stream that runs ahead of the wall clock by more than ``max_ahead_s``: unpaced, it would
        fill the inference queue (and memory) as fast as the network delivers. ffmpeg blocks on the full pipe
        meanwhile."""
        excess = ahead_s - max_ahead_s
        if excess <= 0:
            return
        self.paced_s += excess
        self._fast_log("%s: %s delivers audio faster than real time (%.1f s ahead of the clock); reading it at real "
                       "time (%.0f s held back so far)", self.name, self.masked_url, ahead_s, self.paced_s)
        stop.wait(excess)

    def _why(self, child: _Child, code: int, stalled: str) -> str:
        """The reason a connection ended, for the outage log line; counts ffmpeg's own failures."""
        if stalled:  # we killed a stalled ffmpeg; what it said before may tell why
            return stalled + (f"; ffmpeg said: {child.stderr[-1]}" if child.stderr else "")
        if code != 0:
            self.ffmpeg_exits += 1
            return child.describe(code)
        return "stream ended (ffmpeg exit code 0)"

    def stats(self) -> dict[str, int]:
        return {"reconnects": self.reconnects, "stalls": self.stalls, "gap_samples": self.gap_samples,
                "ffmpeg_exits": self.ffmpeg_exits, "paced_s": int(round(self.paced_s))}


class _Float32Decoder:
    """Raw little-endian float32 bytes to samples, carrying a partial sample over to the next read."""

    def __init__(self) -> None:
        self._rest = b""

    def __call__(self, data: bytes) -> np.ndarray:
        data = self._rest + data
        usable = len(data) - len(data) % 4
        self._rest = data[usable:]
        return np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
