"""The sink interface: consume ``EventRecord``s, never influence detection."""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.util.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A sink that cannot start (bad settings, missing secret) or could not deliver a record; ``records``: how
    many records the failure concerns (a spool flush can find several refused at once)."""

    def __init__(self, message: str, records: int = 1):
        super().__init__(message)
        self.records = records


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

    def idle(self) -> None:  # noqa: B027 - optional hook
        """Called by the sink's worker thread whenever no record has waited for a tenth of a second: the place
        for background work that must not run while the sink is built (the webhook sends its spool here)."""

    def shutting_down(self) -> None:  # noqa: B027 - optional hook
        """Shutdown has begun (any thread): deliver what is queued quickly, stop retrying and waiting."""

    def keep_undelivered(self, records: list[EventRecord]) -> int:
        """Records still queued when the shutdown deadline passed (called from the closing thread, maybe while
        ``emit`` runs): keep them for the next run if the sink can (the webhook spools them) and return how
        many were kept; the others are counted as failures and logged as lost."""
        return 0

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

    def __init__(self, name: str, sink: Sink, report: FailureLog):
        self.name, self.sink, self.report = name, sink, report
        self.queue: queue.Queue[EventRecord] = queue.Queue(maxsize=sink.options.queue_size)
        self.dropped = 0
        self._drop_log = RateLimitedLog(log, 60.0, logging.ERROR)  # a full queue stays full for many records
        self._closing = threading.Event()  # set at shutdown: deliver what is queued, then end
        self._abandon = threading.Event()  # set at the shutdown deadline: take nothing more from the queue
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def put(self, record: EventRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            self._drop_log("sink %s is %d records behind; %d records dropped so far", self.name, self.queue.qsize(),
                           self.dropped)

    def _run(self) -> None:
        while not self._abandon.is_set():
            try:
                record = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                _call(self.name, "background work", self.sink.idle, self.report)
                continue
            if self._abandon.is_set():  # the deadline passed while we waited: the closing thread keeps it
                self._hand_over([record])
                return
            _deliver(self.name, self.sink, record, self.report)

    def start_closing(self) -> None:
        self._closing.set()
        try:
            self.sink.shutting_down()
        except Exception as e:  # noqa: BLE001 - a sink must never stop the shutdown
            log.error("sink %s: %s", self.name, e)

    def join(self, deadline: float, grace_s: float = 10.0) -> None:
        """Wait until the queue is delivered or the (shared, monotonic) deadline passes; then hand what is
        still queued to ``keep_undelivered`` and give the record in flight ``grace_s`` more to finish."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return
        self._abandon.set()
        left: list[EventRecord] = []
        while True:
            try:
                left.append(self.queue.get_nowait())
            except queue.Empty:
                break
        self._hand_over(left)
        self._thread.join(grace_s)
        if self._thread.is_alive():
            log.error("sink %s is still busy with one record after the shutdown deadline; closing it anyway",
                      self.name)

    def _hand_over(self, records: list[EventRecord]) -> None:
        if not records:
            return
        try:
            kept = self.sink.keep_undelivered(records)
        except Exception as e:  # noqa: BLE001
            log.error("sink %s: cannot keep the records left at shutdown: %s", self.name, e)
            kept = 0
        self.report.failed(self.name, f"{len(records)} record(s) queued at the shutdown deadline",
                           SinkError(f"{kept} kept for the next run, {len(records) - kept} lost"),
                           count=len(records))


class FailureLog:
    """Counts every failed record per sink but logs at most one line per sink per ``interval_s``: a receiver
    down for an hour, or a full disk, must not bury the log under one error per record."""

    def __init__(self, failures: dict[str, int], interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.failures, self.interval_s = failures, interval_s
        self._log = RateLimitedLog(log, interval_s, logging.ERROR, clock)  # one key per sink
        self._lock = threading.Lock()

    def failed(self, name: str, what: EventRecord | str, error: Exception, count: int = 1) -> None:
        """Count ``count`` failed records of sink ``name`` (a record, or another hook described by a string)."""
        with self._lock:
            self.failures[name] += count
            count = self.failures[name]
        if isinstance(what, EventRecord):
            what = f"{what.label} {what.phase} record"
        self._log("sink %s failed on %s (%d failures so far; next message in %.0f s at the earliest): %s",
                  name, what, count, self.interval_s, error, key=name)


def _deliver(name: str, sink: Sink, record: EventRecord, report: FailureLog) -> None:
    try:
        sink.emit(record)
    except Exception as e:  # noqa: BLE001 - a sink must never stop detection
        report.failed(name, record, e, e.records if isinstance(e, SinkError) else 1)


def _call(name: str, what: str, hook: Callable[[], None], report: FailureLog) -> None:
    try:
        hook()
    except SinkError as e:  # records the hook could not deliver
        report.failed(name, what, e, e.records)
    except Exception as e:  # noqa: BLE001 - a sink must never stop detection
        log.error("sink %s: %s failed: %s", name, what, e)


class SinkSet:
    """Fans records out to every sink that wants them. ``threaded``: each sink gets a ``SinkWorker``;
    otherwise records are delivered in the caller's thread (tests, tools). Failures are logged and counted."""

    def __init__(self, sinks: list[tuple[str, Sink]], threaded: bool = False, drain_timeout_s: float = 30.0,
                 failure_log_interval_s: float = 60.0):
        self.sinks = sinks
        self.failures: dict[str, int] = {name: 0 for name, _ in sinks}
        self.report = FailureLog(self.failures, failure_log_interval_s)
        self.drain_timeout_s = drain_timeout_s
        self.workers = {name: SinkWorker(name, sink, self.report) for name, sink in sinks} if threaded else {}
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
                self.report.failed(name, f"{stream} audio block", e)

    def stream_ended(self, stream: str) -> None:
        for name, sink in self.audio_sinks:
            try:
                sink.stream_ended(stream)
            except Exception as e:  # noqa: BLE001
                self.report.failed(name, f"{stream} end of stream", e)

    def emit(self, record: EventRecord) -> None:
        for name, sink in self.sinks:
            if not sink.wants(record):
                continue
            if self.workers:
                self.workers[name].put(record)
            else:
                _deliver(name, sink, record, self.report)

    @property
    def dropped(self) -> dict[str, int]:
        return {name: w.dropped for name, w in self.workers.items()}

    def close(self) -> None:
        """Drain every sink's queue at once within one shared ``drain_timeout_s`` (so several slow sinks
        cannot add up past a service manager's stop timeout), then close the sinks."""
        deadline = time.monotonic() + self.drain_timeout_s
        for name, sink in self.sinks:
            if name not in self.workers:
                sink.shutting_down()
        for worker in self.workers.values():
            worker.start_closing()
        for worker in self.workers.values():
            worker.join(deadline)
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
