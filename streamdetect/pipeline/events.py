"""Per-label event state machine: window scores in, ``start``/``end`` records out. Pure logic, no I/O.

Times are stream seconds taken from the windows, so the same audio always gives the same events whatever the
wall clock does. An event starts at the start of the first window of the run that fired it and ends at the end
of its last window that stayed above ``threshold - hysteresis``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from streamdetect.util.times import iso_of


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
    wall: float  # wall-clock time of this window (epoch seconds), supplied by the caller; records carry it as ISO
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
    # An ``end`` written at start-up for an event a crash (SIGKILL, power cut) left open: its real end is
    # unknown, so ``end_s`` is the last time known of it (its peak) and ``time`` the moment of the restart.
    interrupted: bool = False
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
        if not self.interrupted:  # only on the rare closing records, so ordinary records are unchanged
            del out["interrupted"]
        if not self.site:
            del out["site"]
        if self.private is None:
            del out["private"]
        return out

    def interrupted_end(self, wall_time: str) -> EventRecord:
        """The ``end`` that closes this ``start`` after a crash (see ``interrupted``)."""
        return replace(self, phase="end", end_s=max(self.peak_time_s, self.start_s), time=wall_time,
                       interrupted=True, embedding=None)


@dataclass(frozen=True)
class Catalog:
    """Every stream the detector runs with the labels it can report there (novelty's included): sinks that
    announce entities up front (MQTT discovery) and the metrics (series at zero, removed labels dropped) need
    to know them before the first record, and again after a reload."""

    streams: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def pairs(self) -> set[tuple[str, str]]:
        return {(stream, label) for stream, labels in self.streams for label in labels}

    @property
    def labels(self) -> set[str]:
        return {label for _, labels in self.streams for label in labels}


class State(enum.Enum):
    """Where one label's tracker stands: the states of the event state machine.

    IDLE: no event, and windows above the threshold may start a run. ARMING: a run of windows above the
    threshold has begun but is shorter than ``min_windows``. ACTIVE: an event is open (its ``start`` was
    emitted). COOLDOWN: an event just ended on a window below ``threshold - hysteresis``; windows ending before
    ``cooldown_s`` after that window are ignored.
    """

    IDLE = "idle"
    ARMING = "arming"
    ACTIVE = "active"
    COOLDOWN = "cooldown"


Phase = State  # the name ``streamdetect.events`` has exported since the tracker had two states


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
    state: State = State.IDLE
    _armed_windows: int = 0  # ARMING: windows in the run so far
    _run_start_s: float = 0.0
    _active_end_s: float = 0.0
    _cooldown_until_s: float = float("-inf")  # COOLDOWN: a new run may start only with windows ending after this
    _last_end_s: float = float("-inf")  # end of the previous event: a new one never starts before it
    _peak: _Peak = field(default_factory=_Peak)
    _id: str = ""
    _private: bool | None = None  # the current event overlaps a private window (None: privacy filter off)
    _private_until_s: float = float("-inf")  # end of the latest private window seen

    def reset(self) -> None:
        self.state, self._armed_windows = State.IDLE, 0
        self._cooldown_until_s, self._last_end_s = float("-inf"), float("-inf")
        self._peak = _Peak()
        self._private, self._private_until_s = None, float("-inf")

    def update(self, window: WindowScore) -> list[EventRecord]:
        if window.private:
            self._private_until_s = max(self._private_until_s, window.end_s)
        if self.state is State.COOLDOWN and window.end_s >= self._cooldown_until_s:
            self.state = State.IDLE
        if self.state is State.ACTIVE:
            return self._update_active(window)
        if self.state is State.COOLDOWN:
            return []
        return self._update_arming(window)

    def finish(self, wall: float) -> list[EventRecord]:
        """Close an event still active when the stream ends or the detector stops (``wall``: epoch seconds)."""
        if self.state is State.ACTIVE:
            return [self._end(self._active_end_s, wall)]
        if self.state is State.ARMING:
            self.state = State.IDLE
        return []

    def _update_arming(self, window: WindowScore) -> list[EventRecord]:
        """IDLE or ARMING: a window above the threshold starts or extends a run; ``min_windows`` of them fire."""
        if window.score < self.rules.threshold or window.suppressed_by is not None:
            self.state = State.IDLE
            return []
        if self.state is State.IDLE:
            self.state, self._armed_windows = State.ARMING, 0
            self._run_start_s = max(window.start_s, self._last_end_s)
            self._peak = _Peak()
            # an earlier private window may reach into this event's start
            self._private = None if window.private is None else self._private_until_s > self._run_start_s
        self._private = self._private or window.private
        self._armed_windows += 1
        self._peak.update(window)
        self._active_end_s = window.end_s
        if self._armed_windows < self.rules.min_windows:
            return []
        self.state = State.ACTIVE
        self._id = uuid.uuid4().hex
        return [self._record("start", None, window.wall)]

    def _update_active(self, window: WindowScore) -> list[EventRecord]:
        holds = window.score >= self.rules.threshold - self.rules.hysteresis and window.suppressed_by is None
        if holds:
            self._active_end_s = window.end_s
            self._peak.update(window)
            self._private = self._private or window.private
            return []
        if window.private and window.start_s < self._active_end_s:  # the window that ends it overlaps it
            self._private = True
        record = self._end(self._active_end_s, window.wall)
        self.state, self._cooldown_until_s = State.COOLDOWN, window.end_s + self.rules.cooldown_s
        return [record]

    def _end(self, end_s: float, wall: float) -> EventRecord:
        self.state = State.IDLE
        self._last_end_s = end_s
        return self._record("end", end_s, wall)

    def _record(self, phase: str, end_s: float | None, wall: float) -> EventRecord:
        return EventRecord(
            id=self._id,
            label=self.label,
            phase=phase,
            start_s=round(self._run_start_s, 6),
            end_s=None if end_s is None else round(end_s, 6),
            peak_score=round(self._peak.score, 6),
            peak_time_s=self._peak.time_s,
            stream=self.stream,
            time=iso_of(wall),
            top=self._peak.top,
            embedding=self._peak.embedding,
            sounds_like=self._peak.sounds_like,
            private=self._private,
        )


def event_rules(events: Iterable[Any]) -> list[EventRules]:
    """The state-machine rules of each configured event (``EventConfig``), in order."""
    return [EventRules(e.threshold, e.hysteresis, e.min_windows, e.cooldown_s) for e in events]
