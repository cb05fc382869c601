"""The sink interface: consume ``EventRecord``s, never influence detection."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from streamdetect.events import EventRecord

log = logging.getLogger(__name__)


class SinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sink(ABC):
    """A destination for event records. ``Options`` validates the sink's keys in the config."""

    Options: ClassVar[type[SinkOptions]] = SinkOptions

    def __init__(self, options: SinkOptions):
        self.options = options

    @abstractmethod
    def emit(self, record: EventRecord) -> None:
        """Deliver one record; may raise, the caller counts and logs the failure and carries on."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources at shutdown."""


class SinkSet:
    """Fans records out to every sink; a sink that raises is logged and counted, the others still get the record."""

    def __init__(self, sinks: list[tuple[str, Sink]]):
        self.sinks = sinks
        self.failures: dict[str, int] = {name: 0 for name, _ in sinks}

    def emit(self, record: EventRecord) -> None:
        for name, sink in self.sinks:
            try:
                sink.emit(record)
            except Exception as e:  # noqa: BLE001 - a sink must never stop detection
                self.failures[name] += 1
                log.error("sink %s failed on %s %s record (%d failures so far): %s",
                          name, record.label, record.phase, self.failures[name], e)

    def close(self) -> None:
        for name, sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001
                log.error("sink %s failed to close: %s", name, e)


def build_sinks(entries) -> SinkSet:
    """Instantiate the configured sinks (``PluginConfig`` entries, already validated)."""
    from streamdetect.sinks import SINKS

    built = []
    for i, entry in enumerate(entries):
        cls = SINKS.get(entry.type)
        built.append((f"{entry.type}#{i}", cls(cls.Options.model_validate(entry.options))))
    return SinkSet(built)
