"""The audio tap: each block of a stream shown to the sinks that keep audio (clips) and to the live view, before
it is windowed, and the privacy filter's verdicts passed on to both.

The tap belongs to whoever drives audio into the detector (the daemon's batching engine, or replay in the
calling thread), not to the detector: the detector turns audio into windows and results, and the tap listens
to those results (``window``) for the privacy marks only.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamdetect.pipeline.results import WindowResult
from streamdetect.pipeline.streams import StreamState


class AudioOutputs(Protocol):
    """The sinks' side of the tap (``SinkSet``)."""

    @property
    def wants_audio(self) -> bool: ...

    def audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int) -> None: ...

    def window_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None: ...


class LiveAudio(Protocol):
    """The live view's side of the tap (the web dashboard's ``LiveHub``); called on the feeding threads and the
    inference thread, so it only copies what it needs and returns."""

    def live_audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int,
                   held: bool = False) -> None:
        """Incoming audio; ``held``: the privacy filter is on, so none of it may be shown or played before
        ``live_privacy`` has judged it."""

    def live_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:
        """With the privacy filter on: the window over samples ``start_sample``..``end_sample`` was judged, and
        holds speech if ``private`` (its audio must then be blanked)."""


class AudioTap:
    """Blocks to the sinks that keep audio and to the live view; privacy verdicts after them (a listener)."""

    def __init__(self, outputs: AudioOutputs, live: LiveAudio | None = None):
        self.outputs, self.live = outputs, live

    def block(self, stream: StreamState, block: np.ndarray, held: bool) -> None:
        """Show a block at its absolute sample index, before the detector windows it (a ``Gap`` is never shown:
        it advances that index without audio, which the sinks see as a jump). ``held``: the privacy filter is
        on, so the live view keeps the audio back until it is judged."""
        at, rate = stream.position, stream.sample_rate
        if self.outputs.wants_audio:
            recorded = stream.recorded(at)  # outside its schedule a stream keeps its timing, not its audio
            self.outputs.audio(stream.name, at, block if recorded else np.zeros_like(block), rate)
        if self.live is not None:
            self.live.live_audio(stream.name, at, block, rate, held=held)

    def window(self, result: WindowResult) -> None:
        if result.private is None:  # the privacy filter is off: nothing is held back
            return
        if self.outputs.wants_audio:
            self.outputs.window_privacy(result.stream, result.start_sample, result.end_sample, result.private)
        if self.live is not None:
            self.live.live_privacy(result.stream, result.start_sample, result.end_sample, result.private)
