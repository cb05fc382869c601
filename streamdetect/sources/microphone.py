"""Live input through PortAudio (``sounddevice``) at the device's native rate.

The audio callback only copies into a preallocated ring buffer; mixing-down is left to PortAudio (one channel
opened) and resampling happens in the reading thread, so a slow detector shows up as counted overruns instead
of glitches or a stalled callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import Field

from streamdetect.ringbuffer import RingBuffer
from streamdetect.sources.base import AudioSource, Gap, Resampler, SourceError, SourceOptions

log = logging.getLogger(__name__)


def _sounddevice():
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


class MicrophoneSource(AudioSource):
    Options = MicrophoneOptions
    live = True

    def __init__(self, options: MicrophoneOptions, sample_rate: int, name: str | None = None):
        self.device = resolve_device(options.device)
        super().__init__(options, sample_rate, name or f"mic:{self.device['name']}")
        self.native_rate = float(self.device["sample_rate"])
        self.ring = RingBuffer(int(options.buffer_s * self.native_rate))
        self.input_overflows = 0

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status.input_overflow:
            self.input_overflows += 1
        self.ring.write(indata[:, 0])

    def blocks(self, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        sd = _sounddevice()
        resample = Resampler(self.native_rate, self.sample_rate)
        try:
            stream = sd.InputStream(
                device=self.device["index"],
                channels=1,
                samplerate=self.native_rate,
                dtype="float32",
                blocksize=int(self.options.block_s * self.native_rate),
                callback=self._callback,
            )
        except sd.PortAudioError as e:
            raise SourceError(f"cannot open input device [{self.device['index']}] {self.device['name']}: {e}") from e
        log.info("recording from [%d] %s at %g Hz", self.device["index"], self.device["name"], self.native_rate)
        reported_overruns = 0
        expected = 0  # absolute native-rate index of the next sample we have not seen
        with stream:
            while not stop.is_set():
                if not stream.active:
                    raise SourceError(f"input device {self.device['name']} stopped delivering audio")
                self.ring.wait(int(self.options.block_s * self.native_rate), timeout_s=0.25)
                if self.ring.overrun_samples > reported_overruns:
                    log.warning(
                        "%s: detector fell behind, %.2f s of audio overwritten so far",
                        self.name, self.ring.overrun_samples / self.native_rate,
                    )
                    reported_overruns = self.ring.overrun_samples
                start, block = self.ring.read_new()
                if start > expected:  # overwritten audio: tell the windower so stream time stays exact
                    yield Gap(int(round((start - expected) * self.sample_rate / self.native_rate)))
                expected = start + block.size
                if block.size:
                    yield resample(block)
        _, block = self.ring.read_new()
        yield resample(block, last=True)

    def stats(self) -> dict[str, int]:
        return {"overrun_samples": self.ring.overrun_samples, "input_overflows": self.input_overflows}
