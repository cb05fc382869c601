"""Live input through PortAudio (``sounddevice``) at the device's native rate.

The audio callback only copies into a preallocated ring buffer; mixing-down is left to PortAudio (one channel
opened) and resampling happens in the reading thread, so a slow detector shows up as counted overruns instead
of glitches or a stalled callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from streamdetect.sources.base import AudioSource, Gap, Resampler, SourceError, SourceOptions
from streamdetect.sources.ringbuffer import RingBuffer
from streamdetect.util.backoff import Backoff

log = logging.getLogger(__name__)


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as e:  # the Python package is there but the PortAudio library is not
        raise SourceError(
            f"PortAudio is not available ({e}); install it (Debian/Ubuntu: apt-get install libportaudio2)"
        ) from e
    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    """Input-capable devices as ``{index, name, channels, sample_rate, default}`` dicts."""
    sd = _sounddevice()
    try:
        default_in = sd.default.device[0]
    except Exception:  # noqa: BLE001 - PortAudio reports "no default" in several ways
        default_in = -1
    out = []
    for dev in sd.query_devices():
        if dev["max_input_channels"] > 0:
            out.append(
                {
                    "index": dev["index"],
                    "name": dev["name"],
                    "hostapi": sd.query_hostapis(dev["hostapi"])["name"],
                    "channels": dev["max_input_channels"],
                    "sample_rate": dev["default_samplerate"],
                    "default": dev["index"] == default_in,
                }
            )
    return out


def resolve_device(spec: int | str | None) -> dict[str, Any]:
    """An input device by index, exact name, or unique case-insensitive name substring."""
    devices = input_devices()
    listing = "\n".join(f"  [{d['index']}] {d['name']}" for d in devices) or "  (none)"
    if not devices:
        raise SourceError("no audio input device found (is a microphone connected and PortAudio installed?)")
    if spec is None or spec == "default":
        default = [d for d in devices if d["default"]]
        if default:
            return default[0]
        raise SourceError(f"no default input device; pick one with --device:\n{listing}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        for d in devices:
            if d["index"] == index:
                return d
        raise SourceError(f"no input device with index {index}; input devices:\n{listing}")
    exact = [d for d in devices if d["name"] == spec]
    matches = exact or [d for d in devices if spec.lower() in d["name"].lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SourceError(f"no input device matches {spec!r}; input devices:\n{listing}")
    names = "\n".join(f"  [{d['index']}] {d['name']}" for d in matches)
    raise SourceError(f"{spec!r} matches several input devices, use an index or a longer name:\n{names}")


class MicrophoneOptions(SourceOptions):
    device: int | str | None = Field(None, description="index, name or name substring; default input if unset")
    block_s: float = Field(0.05, gt=0, le=1.0, description="PortAudio callback block length")
    buffer_s: float = Field(30.0, ge=1.0, le=600.0, description="audio held while the detector catches up")
    stall_timeout_s: float = Field(5.0, ge=0.5, le=600.0, description="no audio for this long counts as a "
                                                                       "device failure and the device is reopened")
    reconnect_min_s: float = Field(0.5, gt=0, le=60.0, description="first wait before reopening a failed device; "
                                                                   "doubles with each failed try, with jitter")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600.0, description="longest wait between two reopen tries")

    @model_validator(mode="after")
    def _backoff_order(self) -> MicrophoneOptions:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({self.reconnect_max_s:g}) must be at least reconnect_min_s "
                             f"({self.reconnect_min_s:g})")
        return self


class DeviceLost(Exception):
    """The open stream stopped delivering; the message says why. Never leaves ``blocks``."""


class MicrophoneSource(AudioSource[MicrophoneOptions]):
    """A live input that survives device failures: a dead stream is closed and reopened (by device name, as a
    re-plugged USB microphone gets a new index) with capped exponential back-off, and the wall-clock time lost
    meanwhile is yielded as a ``Gap`` so that stream time keeps matching the clock."""

    Options = MicrophoneOptions
    live = True
    # PortAudio is one library per process: re-initialising it (the only way to see devices plugged in after
    # start-up) closes every stream of the process, so it is done only while no MicrophoneSource has one open.
    _portaudio_lock: ClassVar[threading.Lock] = threading.Lock()
    _open_streams: ClassVar[list[int]] = [0]

    def __init__(self, options: MicrophoneOptions, sample_rate: int, name: str | None = None):
        self.device = resolve_device(options.device)
        super().__init__(options, sample_rate, name or f"mic:{self.device['name']}")
        self.native_rate = float(self.device["sample_rate"])
        self.ring = RingBuffer(int(options.buffer_s * self.native_rate))
        self.input_overflows = 0
        self.reopens = 0
        self.failed_opens = 0
        self._earlier_overruns = 0  # overruns counted by the ring buffers of earlier (failed) streams
        # failed opens (or streams that died before delivering anything) in a row set the wait before reopening
        self._backoff = Backoff(options.reconnect_min_s, options.reconnect_max_s)

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status.input_overflow:
            self.input_overflows += 1
        self.ring.write(indata[:, 0])

    def _open(self, sd: Any, rescan: bool) -> Any:
        """Find the device again by name and start a stream on it (raises PortAudioError or SourceError)."""
        name = self.device["name"]
        with self._portaudio_lock:
            if rescan and self._open_streams[0] == 0:
                sd._terminate()  # noqa: SLF001 - sounddevice's documented way to make PortAudio rescan devices
                sd._initialize()  # noqa: SLF001
            elif rescan:
                log.debug("%s: other input streams are open, so PortAudio is not re-initialised and only "
                          "devices it listed at start-up can be found", self.name)
            matches = [d for d in input_devices() if d["name"] == name]
            if not matches:
                raise SourceError(f"input device {name!r} is not present")
            self.device = matches[0]
            self.native_rate = float(self.device["sample_rate"])
            self._earlier_overruns += self.ring.overrun_samples
            self.ring = RingBuffer(int(self.options.buffer_s * self.native_rate))
            stream = sd.InputStream(device=self.device["index"], channels=1, samplerate=self.native_rate,
                                    dtype="float32", blocksize=int(self.options.block_s * self.native_rate),
                                    callback=self._callback)
            try:
                stream.start()
            except BaseException:
                stream.close()
                raise
            self._open_streams[0] += 1
        return stream

    def _close(self, sd: Any, stream: Any) -> None:
        with self._portaudio_lock:
            self._open_streams[0] -= 1
            try:
                stream.close(ignore_errors=True)
            except sd.PortAudioError as e:  # a dead device may refuse even that; the stream is gone either way
                log.debug("%s: closing the failed stream: %s", self.name, e)

    def blocks(self, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        sd = _sounddevice()
        backoff = self._backoff
        backoff.reset()
        lost_since: float | None = None  # monotonic time from which audio is missing (None: nothing missing)
        while not stop.is_set():
            try:
                stream = self._open(sd, rescan=lost_since is not None)
            except (sd.PortAudioError, SourceError) as e:
                delay = backoff.next_delay()
                self.failed_opens += 1
                if lost_since is None:  # only at start-up: a failure while running was logged when it happened
                    lost_since = time.monotonic()
                    log.warning("%s: cannot open input device %r (%s); retrying with back-off up to %g s",
                                self.name, self.device["name"], e, self.options.reconnect_max_s)
                else:
                    log.debug("%s: open attempt %d failed: %s", self.name, backoff.failures, e)
                stop.wait(delay)
                continue
            opened_at = time.monotonic()
            log.info("recording from [%d] %s at %g Hz", self.device["index"], self.device["name"], self.native_rate)
            if lost_since is not None:
                self.reopens += 1
                log.info("%s: input device reopened after %.1f s without audio", self.name, opened_at - lost_since)
                lost = int(round((opened_at - lost_since) * self.sample_rate))
                if lost > 0:  # a device that delivered faster than the clock just before failing owes nothing
                    yield Gap(lost)
                lost_since = None
            try:
                yield from self._record(sd, stream, stop)
            except DeviceLost as e:
                # PortAudio's ALSA layer prints "Expression '...' failed in pa_linux_alsa.c" straight to the
                # process's stderr (no hook to catch it in this build); this line says what those were.
                log.warning("%s: input device %r failed (%s); closing it and reopening with back-off up to %g s "
                            "(any \"Expression '...' failed\" lines from PortAudio just before report the same "
                            "failure)", self.name, self.device["name"], e, self.options.reconnect_max_s)
                # audio stops where the samples the device produced end, not when the failure was noticed
                lost_since = opened_at + self.ring.written_samples / self.native_rate
                if self.ring.written_samples:  # it worked for a while: start the back-off over
                    backoff.reset()
            finally:
                self._close(sd, stream)
            if lost_since is not None:
                stop.wait(backoff.next_delay())  # also after a quick death: never reopen in a busy loop

    def _record(self, sd: Any, stream: Any, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        """Blocks of one open stream at the model rate until ``stop``; ``DeviceLost`` when it dies (after
        passing on what it had delivered)."""
        resample = Resampler(self.native_rate, self.sample_rate)
        ring = self.ring
        reported_overruns = 0
        expected = 0  # absolute native-rate index of the next sample we have not seen
        last_audio = time.monotonic()
        block_samples = int(self.options.block_s * self.native_rate)
        failure: str | None = None
        while not stop.is_set() and failure is None:
            try:
                if not stream.active:
                    failure = "the stream stopped"
            except sd.PortAudioError as e:
                failure = str(e)
            if failure is None:
                ring.wait(block_samples, timeout_s=0.25)
            if ring.overrun_samples > reported_overruns:
                log.warning("%s: detector fell behind, %.2f s of audio overwritten so far",
                            self.name, ring.overrun_samples / self.native_rate)
                reported_overruns = ring.overrun_samples
            start, block = ring.read_new()
            if start > expected:  # overwritten audio: tell the windower so stream time stays exact
                yield Gap(int(round((start - expected) * self.sample_rate / self.native_rate)))
            expected = start + block.size
            if block.size:
                last_audio = time.monotonic()
                yield resample(block)
            elif failure is None and time.monotonic() - last_audio > self.options.stall_timeout_s:
                failure = f"no audio for {self.options.stall_timeout_s:g} s"
        tail = resample(ring.read_new()[1], last=True)
        if tail.size:
            yield tail
        if failure is not None:
            raise DeviceLost(failure)

    def stats(self) -> dict[str, int]:
        return {"overrun_samples": self._earlier_overruns + self.ring.overrun_samples,
                "input_overflows": self.input_overflows, "reopens": self.reopens}
