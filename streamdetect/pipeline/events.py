"""Per-label event state machine: window scores in, ``start``/``end`` records out. Pure logic, no I/O.

Times are stream seconds taken from the windows, so the same audio always gives the same events whatever the
wall clock does. An event starts at the start of the first window of the run that fired it and ends at the end
of its last window that stayed above ``threshold - hysteresis``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class EventRules:
    threshold: float
    hysteresis: float = 0.02
    min_windows: int = 1
    cooldown_s: float = 2.0


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class WindowScore:
    """What the tracker needs to know about one window for one label."""

    start_s: float
    end_s: float
    score: float
    suppressed_by: str | None  # the negative prompt that outscored the event in this window, if any
    top: tuple[LabelScore, ...]  # best labels of this window, for the record
    wall_time: str  # ISO-8601 wall-clock time of this window, supplied by the caller
    embedding: Any = None  # the window's audio embedding, kept for the peak so feedback can refine prompts
    sounds_like: tuple[LabelScore, ...] = ()  # closest vocabulary names of this window, if a vocabulary is set
    private: bool | None = None  # speech heard (privacy filter); None: the filter is off


@dataclass(frozen=True)
class EventRecord:
    """One record handed to the sinks: a ``start`` as soon as an event fires, an ``end`` with its extent."""

    id: str
    label: str
    phase: str  # "start" or "end"
    start_s: float
    end_s: float | None
    peak_score: float
    peak_time_s: float
    stream: str
    time: str
    top: tuple[LabelScore, ...]
    # The peak window's embedding (numpy array) for stores that keep it; never part of ``to_dict``.
    embedding: Any = field(default=None, compare=False, repr=False)
    sounds_like: tuple[LabelScore, ...] = ()  # vocabulary names closest to the peak window (empty without one)
    site: str = ""  # the station's config ``site.name`` (empty: one station; records then look as they always did)
    # True: the event overlaps a window the privacy filter found speech in (its audio is not stored); None: the
    # filter is off, and the key is left out of ``to_dict`` so records of configs without it are unchanged.
    private: bool | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embedding"}
        out["top"] = [asdict(t) for t in self.top]
        if self.sounds_like:  # only with a vocabulary, so records of configs without one are unchanged
            out["sounds_like"] = [asdict(t) for t in self.sounds_like]
        else:
            del out["sounds_like"]
        if not self.site:
            del out["site"]
        if self.private is None:
            del out["private"]
        return out


class Phase(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"


@dataclass
class _Peak:
    score: float = float("-inf")
    time_s: float = 0.0
    top: tuple[LabelScore, ...] = ()
    embedding: Any = None
    sounds_like: tuple[LabelScore, ...] = ()

    def update(self, window: WindowScore) -> None:
        if window.score > self.score:
            self.score = window.score
            self.time_s = round((window.start_s + window.end_s) / 2, 6)
            self.top = window.top
            self.embedding = window.embedding
            self.sounds_like = window.sounds_like


@dataclass
class EventTracker:
    """State of one label on one stream. Create one per (stream, label); ``reset()`` starts over."""

    label: str
    rules: EventRules
    stream: str = "default"
    phase: Phase = Phase.IDLE
    _run: int = 0
    _run_start_s: float = 0.0
    _active_end_s: float = 0.0
    _not_before_s: float = float("-inf")  # cooldown: a new run may start only with windows ending after this
    _last_end_s: float = float("-inf")  # end of the previous event: a new one never starts before it
    _peak: _Peak = field(default_factory=_Peak)
    _id: str = ""
    _private: bool | None = None  # the current event overlaps a private window (None: privacy filter off)
    _private_until_s: float = float("-inf")  # end of the latest private window seen

    def reset(self) -> None:
        self.phase, self._run = Phase.IDLE, 0
        self._not_before_s, self._last_end_s = float("-inf"), float("-inf")
        self._peak = _Peak()
        self._private, self._private_until_s = None, float("-inf")

    def update(self, window: WindowScore) -> list[EventRecord]:
        if window.private:
            self._private_until_s = max(self._private_until_s, window.end_s)
        if self.phase is Phase.ACTIVE:
            return self._update_active(window)
        return self._update_idle(window)

    def finish(self, wall_time: str) -> list[EventRecord]:
        """Close an event still active when the stream ends or the detector stops."""
        if self.phase is Phase.ACTIVE:
            return [self._end(self._active_end_s, wall_time)]
        self._run = 0
        return []

    def _update_idle(self, window: WindowScore) -> list[EventRecord]:
        fires = window.score >= self.rules.threshold and window.suppressed_by is None
        if not fires or window.end_s < self._not_before_s:
            self._run = 0
            return []
        if self._run == 0:
            self._run_start_s = max(window.start_s, self._last_end_s)
            self._peak = _Peak()
            # an earlier private window may reach into this event's start
            self._private = None if window.private is None else self._private_until_s > self._run_start_s
        self._private = self._private or window.private
        self._run += 1
        self._peak.update(window)
        self._active_end_s = window.end_s
        if self._run < self.rules.min_windows:
            return []
        self.phase, self._run = Phase.ACTIVE, 0
        self._id = uuid.uuid4().hex
        return [self._record("start", None, window.wall_time)]

    def _update_active(self, window: WindowScore) -> list[EventRecord]:
        holds = window.score >= self.rules.threshold - self.rules.hysteresis and window.suppressed_by is None
        if holds:
            self._active_end_s = window.end_s
            self._peak.update(window)
            self._private = self._private or window.private
            return []
        if window.private and window.start_s < self._active_end_s:  # the window that ends it overlaps it
            self._private = True
        record = self._end(self._active_end_s, window.wall_time)
        self._not_before_s = window.end_s + self.rules.cooldown_s
        return [record]

    def _end(self, end_s: float, wall_time: str) -> EventRecord:
        self.phase = Phase.IDLE
        self._last_end_s = end_s
        return self._record("end", end_s, wall_time)

    def _record(self, phase: str, end_s: float | None, wall_time: str) -> EventRecord:
        return EventRecord(
            id=self._id,
            label=self.label,
            phase=phase,
            start_s=round(self._run_start_s, 6),
            end_s=None if end_s is None else round(end_s, 6),
            peak_score=round(self._peak.score, 6),
            peak_time_s=self._peak.time_s,
            stream=self.stream,
            time=wall_time,
            top=self._peak.top,
            embedding=self._peak.embedding,
            sounds_like=self._peak.sounds_like,
            private=self._private,
        )


def event_rules(events: Iterable[Any]) -> list[EventRules]:
    """The state-machine rules of each configured event (``EventConfig``), in order."""
    return [EventRules(e.threshold, e.hysteresis, e.min_windows, e.cooldown_s) for e in events]
