"""The streams a detector runs, and the labels each can report there (its catalog).

Streams named before their sources start (``expect``) and streams opened later both belong to the catalog,
which the sinks (MQTT discovery) and the metrics learn whole, before the first record and again after a reload.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from streamdetect.config import Config, GateConfig
from streamdetect.pipeline.events import Catalog, EventRules, EventTracker
from streamdetect.pipeline.novelty import NoveltyState
from streamdetect.pipeline.streams import StreamState
from streamdetect.pipeline.windows import Windower
from streamdetect.schedule import Clock, Schedule


class StreamRegistry:
    def __init__(self) -> None:
        self.streams: list[StreamState] = []
        self._expected: dict[str, frozenset[str] | None] = {}  # stream -> its label filter, for ``catalog``

    def expect(self, streams: Mapping[str, Collection[str] | None]) -> None:
        self._expected.update({name: frozenset(labels) if labels is not None else None
                               for name, labels in streams.items()})

    def catalog(self, labels: tuple[str, ...], config: Config) -> Catalog:
        novelty = (config.novelty.label,) if config.novelty.enabled else ()
        return Catalog(tuple((name, tuple(x for x in labels if only is None or x in only) + novelty)
                             for name, only in self._expected.items()))

    def open(self, name: str, live: bool, config: Config, sample_rate: int, labels: tuple[str, ...],
             rules: list[EventRules], clock: Clock, gate: GateConfig | None, only: Collection[str] | None,
             schedule: Sequence[str] | None) -> tuple[StreamState, bool]:
        """A new stream with one idle tracker per label; also whether the catalog grew (a name not expected)."""
        windower = Windower(config.windows.window_s, config.windows.hop_s, sample_rate)
        trackers = [EventTracker(label, rule, stream=name) for label, rule in zip(labels, rules, strict=True)]
        stream = StreamState(name=name, live=live, windower=windower, trackers=trackers, gate=gate,
                             labels=frozenset(only) if only is not None else None, clock=clock,
                             schedule=Schedule.of(schedule, config.site.site()))
        if config.novelty.enabled:
            stream.novelty = NoveltyState.create(config.novelty, name)
        self.streams.append(stream)
        if name in self._expected:
            return stream, False
        self._expected[name] = stream.labels
        return stream, True
