"""What decides how far a window goes: the schedules (is any event listened for?), the energy gate (is it loud
enough to encode?) and the privacy filter (does it hold speech?). Pure functions of the window and the config,
so the detector only asks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamdetect.config import Config, GateConfig
from streamdetect.pipeline.streams import StreamState
from streamdetect.pipeline.windows import Window
from streamdetect.schedule import Schedule


def rms_dbfs(samples: np.ndarray) -> float:
    """Level of a window in dB relative to full scale (a full-scale square wave is 0 dBFS)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-10))


def event_schedules(config: Config) -> list[Schedule | None]:
    """Each event's schedule at the config's site, in event order (None: always listened for)."""
    site = config.site.site()
    return [Schedule.of(e.schedule, site) for e in config.events]


def listening(stream: StreamState, window: Window, schedules: Sequence[Schedule | None]) -> list[bool]:
    """Per tracker: is its event listened for in this window (stream labels, event and stream schedules)."""
    heard = [stream.labels is None or tracker.label in stream.labels for tracker in stream.trackers]
    if stream.schedule is None and all(s is None for s in schedules):
        return heard
    at = stream.wall_datetime(window.start_s)
    if stream.schedule is not None and not stream.schedule.active(at):
        return [False] * len(stream.trackers)
    return [listened and (schedule is None or schedule.active(at))
            for listened, schedule in zip(heard, schedules, strict=True)]


def floor_of(stream: StreamState, gate: GateConfig) -> float | None:
    """The energy gate's floor for a stream's windows: its own gate, else the config's top-level one."""
    return (stream.gate or gate).min_dbfs


def quiet(windows: Sequence[Window], floors: Sequence[float | None]) -> np.ndarray:
    """(windows,) True where a window is quieter than its floor (None: no gate) and skips the encoder."""
    return np.array([f is not None and rms_dbfs(w.samples) < f for w, f in zip(windows, floors, strict=True)],
                    dtype=bool)


def holds_speech(embedding: np.ndarray | None, privacy: np.ndarray, threshold: float) -> bool:
    """The privacy filter's verdict on one window; a window that was not encoded (gated) holds none."""
    return embedding is not None and float(embedding @ privacy) >= threshold
