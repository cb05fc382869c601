"""One value per judged window, handed to every listener: the metrics, the embedding log, the live view, the
audio tap's privacy marks and the offline tools' score log all read the same ``WindowResult``.

Records (``EventRecord``) still go to the outputs; a result is what one window was, whether or not an event
changed. The detector makes it once, so the listeners never see the window in different shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streamdetect.pipeline.events import LabelScore


@dataclass(frozen=True)
class WindowResult:
    """One window of one stream as the detector judged it.

    ``scheduled_out``: no event of the stream was listened for in this window, so it never reached the encoder
    (its ``scores`` are empty). ``gated``: the energy gate scored it -1 without the encoder. ``private``: the
    privacy filter found speech (None: the filter is off; a scheduled-out window counts as private while the
    filter is on, since nothing judged it free of speech). ``embedding`` is None for gated and private windows;
    ``store_audio`` is the config's ``privacy.store_audio``: a listener that writes to disk keeps nothing
    derived from audio when it is False.
    """

    stream: str
    start_s: float  # stream seconds
    end_s: float
    start_sample: int  # absolute sample positions in the stream (the audio tap's coordinates)
    end_sample: int
    wall: float  # wall-clock time of the window's end, epoch seconds (formatted only at the edges)
    labels: tuple[str, ...]
    scores: np.ndarray  # (labels,) this window's score per label; empty when scheduled out
    suppressed_by: tuple[str | None, ...]  # per label: the negative prompt that outscored it, if any
    thresholds: tuple[float, ...]
    top: tuple[LabelScore, ...] = ()
    sounds_like: tuple[LabelScore, ...] = ()
    gated: bool = False
    private: bool | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    store_audio: bool = True
    scheduled_out: bool = False


class WindowListener(Protocol):
    """Sees every judged window. Called on the inference thread: copy what is needed and return."""

    def window(self, result: WindowResult) -> None: ...


@dataclass
class ScoreLog:
    """Every scored window's scores of one stream, for the tools that look at raw scores (scan, evaluate,
    calibrate); a listener of the detector while replay drives that stream."""

    stream: str = ""
    starts_s: list[float] = field(default_factory=list)
    ends_s: list[float] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)  # one (events,) row per window
    vetoed: list[np.ndarray] = field(default_factory=list)  # one (events,) bool row: a negative won

    def window(self, result: WindowResult) -> None:
        if result.stream != self.stream or result.scheduled_out:
            return
        self.starts_s.append(result.start_s)
        self.ends_s.append(result.end_s)
        self.scores.append(result.scores)
        self.vetoed.append(np.array([v is not None for v in result.suppressed_by]))

    def arrays(self, n_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.scores:
            empty = np.zeros((0, n_events))
            return np.zeros(0), np.zeros(0), empty, empty.astype(bool)
        return (np.array(self.starts_s), np.array(self.ends_s), np.stack(self.scores), np.stack(self.vetoed))
