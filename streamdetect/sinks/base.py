"""The sink interface: consume ``EventRecord``s, never influence detection."""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamdetect.events import EventRecord

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A sink that cannot start (bad settings, missing secret) or could not deliver a record."""


class SinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] | None = Field(None, description="only records of these event labels (default: all)")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="records waiting for this sink before "
                                                                   "new ones are dropped (and counted)")


class Sink(ABC):
    """A destination for event records. ``Options`` validates the sink's keys in the config."""

    Options: ClassVar[type[SinkOptions]] = SinkOptions
    # True: the sink also gets the audio itself through ``audio``/``stream_ended`` (the clips sink).
    wants_audio: ClassVar[bool] = False

    def __init__(self, options: SinkOptions):
        self.options = options

    @abstractmethod
    def emit(self, record: EventRecord) -> None:
        """Deliver one record; may raise, the caller counts and logs the failure and carries on."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources at shutdown."""

    def wants(self, record: EventRecord) -> bool:
        return self.options.labels is None or record.label in self.options.labels

    def audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int) -> None:  # noqa: B027
        """A block of a stream's audio; ``start_sample`` is the absolute index of its first sample (lost audio
        shows as a jump). Runs in the feeding thread: copy and return, never block or do I/O."""

    def stream_ended(self, stream: str) -> None:  # noqa: B027
        """The stream has ended and its events are closed: no more audio will come for it."""


class SinkWorker:
    """One sink behind its own bounded queue and thread: a slow or failing sink never holds up detection or
    the other sinks. A full queue drops the new record and counts it; shutdown drains what is queued."""

    def __init__(self, name: str, sink: Sink, failures: dict[str, int]):
        self.name, self.sink, self.failures = name, sink, failures
        self.queue: queue.Queue[EventRecord | None] = queue.Queue(maxsize=sink.options.queue_size)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def put(self, record: EventRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.error("sink %s is %d records behind; %d records dropped so far", self.name,
                          self.queue.qsize(), self.dropped)

    def _run(self) -> None:
        while (record := self.queue.get()) is not None:
            _deliver(self.name, self.sink, record, self.failures)

    def close(self, timeout_s: float) -> None:
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.error("sink %s did not drain within %.0f s; %d records not delivered", self.name, timeout_s,
                      self.queue.qsize())
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("sink %s still busy after %.0f s; %d records not delivered", self.name, timeout_s,
                      self.queue.qsize())


def _deliver(name: str, sink: Sink, record: EventRecord, failures: dict[str, int]) -> None:
    try:
        sink.emit(record)
    except Exception as e:  # noqa: BLE001 - a sink must never stop detection
        failures[name] += 1
        log.error("sink %s failed on %s %s record (%d failures so far): %s",
                  name, record.label, record.phase, failures[name], e)


class SinkSet:
    """Fans records out to every sink that wants them. ``threaded``: each sink gets a ``SinkWorker``;
    otherwise records are delivered in the caller's thread (tests, tools). Failures are logged and counted."""

    def __init__(self, sinks: list[tuple[str, Sink]], threaded: bool = False, drain_timeout_s: float = 30.0):
        self.sinks = sinks
        self.failures: dict[str, int] = {name: 0 for name, _ in sinks}
        self.drain_timeout_s = drain_timeout_s
        self.workers = {name: SinkWorker(name, sink, self.failures) for name, sink in sinks} if threaded else {}
        self.audio_sinks = [(name, sink) for name, sink in sinks if sink.wants_audio]

    @property
    def wants_audio(self) -> bool:
        return bool(self.audio_sinks)

    def audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int) -> None:
        """Hand a fed block to the sinks that keep audio, in the caller's (feeding) thread."""
        for name, sink in self.audio_sinks:
            try:
                sink.audio(stream, start_sample, block, sample_rate)
            except Exception as e:  # noqa: BLE001 - a sink must never stop detection
                self._audio_failed(name, "audio", e)

    def stream_ended(self, stream: str) -> None:
        for name, sink in self.audio_sinks:
            try:
                sink.stream_ended(stream)
            except Exception as e:  # noqa: BLE001
                self._audio_failed(name, "stream_ended", e)

    def _audio_failed(self, name: str, hook: str, error: Exception) -> None:
        self.failures[name] += 1
        if self.failures[name] in (1, 10, 100) or self.failures[name] % 1000 == 0:  # called per block: no flood
            log.error("sink %s failed in %s (%d failures so far): %s", name, hook, self.failures[name], error)

    def emit(self, record: EventRecord) -> None:
        for name, sink in self.sinks:
            if not sink.wants(record):
                continue
            if self.workers:
                self.workers[name].put(record)
            else:
                _deliver(name, sink, record, self.failures)

    @property
    def dropped(self) -> dict[str, int]:
        return {name: w.dropped for name, w in self.workers.items()}

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close(self.drain_timeout_s)
        for name, sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001
                log.error("sink %s failed to close: %s", name, e)


def build_sinks(entries) -> SinkSet:
    """Instantiate the configured sinks (``PluginConfig`` entries, already validated), each with a worker."""
    from streamdetect.sinks import SINKS

    built = []
    for i, entry in enumerate(entries):
        cls = SINKS.get(entry.type)
        built.append((f"{entry.type}#{i}", cls(cls.Options.model_validate(entry.options))))
    return SinkSet(built, threaded=True)
