"""The sink interface: consume ``EventRecord``s, never influence detection."""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import numpy as np

from streamdetect.config.plugins import SinkConfig, SinkOptions
from streamdetect.pipeline.events import Catalog, EventRecord
from streamdetect.report import DaySummary
from streamdetect.schedule import Site
from streamdetect.util.ratelimit import RateLimitedLog
from streamdetect.util.writable import OutputPath

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A sink that cannot start (bad settings, missing secret) or could not deliver a record; ``records``: how
    many records the failure concerns (a spool flush can find several refused at once)."""

    def __init__(self, message: str, records: int = 1):
        super().__init__(message)
        self.records = records


__all__ = ["FailureLog", "Sink", "SinkContext", "SinkError", "SinkOptions", "SinkSet", "SinkWorker", "build_sinks"]

OptionsT = TypeVar("OptionsT", bound=SinkOptions)


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need from the rest of the config: the site (time zone, coordinates) for quiet hours, and
    its name (MQTT topics and ids of one station among many)."""

    site: Site = field(default_factory=Site)
    site_name: str = ""  # the config's site.name: many stations on one broker (MQTT topics and ids)


class Sink(ABC, Generic[OptionsT]):
    """A destination for event records. ``Options`` validates the sink's keys in the config, and its instance
    is what the sink reads: ``class MySink(Sink[MyOptions])`` types ``self.options`` as ``MyOptions``."""

    Options: ClassVar[type[SinkOptions]] = SinkOptions
    # True: the sink also gets the audio itself through ``audio``/``stream_ended`` (the clips sink).
    wants_audio: ClassVar[bool] = False
    # True: the sink can send the daily summary (``summary``), so the config's ``summary`` may name it.
    sends_summaries: ClassVar[bool] = False

    def __init__(self, options: OptionsT):
        self.options: OptionsT = options

    @classmethod
    def create(cls, options: OptionsT, context: SinkContext) -> Sink[OptionsT]:
        """Build the sink for the daemon; a sink that needs the site overrides this."""
        return cls(options)

    def summary(self, summary: DaySummary, chart: Path | None) -> None:
        """Send a daily summary (and its hourly chart PNG); only sinks with ``sends_summaries``."""
        raise SinkError(f"{type(self).__name__} cannot send summaries")

    @abstractmethod
    def emit(self, record: EventRecord) -> None:
        """Deliver one record; may raise, the caller counts and logs the failure and carries on."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources at shutdown."""

    @classmethod
    def outputs(cls, options: OptionsT) -> list[OutputPath]:
        """The files and folders this sink will write (``key``: the option naming each), checked for
        writability at start-up before any audio is opened."""
        return []

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

    def catalog_changed(self, catalog: Catalog) -> None:  # noqa: B027
        """The streams and labels records may come for, at start-up and after each reload (in the sink's own
        thread, in order with the records): sinks that announce entities (MQTT discovery) do it here."""

    def left_open(self) -> list[EventRecord]:
        """``start`` records of events this sink saw start but never end: a crash (SIGKILL, power loss) left
        them open. Called once at start-up; the daemon sends each one's ``interrupted`` end to every sink."""
        return []

    def window_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:  # noqa: B027
        """With the privacy filter on: that stretch has been judged, and holds speech if ``private`` (then it
        must not be stored). Runs in the inference thread: record it and return."""


class SinkWorker:
    """One sink behind its own bounded queue and thread: a slow or failing sink never holds up detection or
    the other sinks. A full queue drops the new record and counts it; shutdown drains what is queued."""

    def __init__(self, name: str, sink: Sink, report: FailureLog):
        self.name, self.sink, self.report = name, sink, report
        self.queue: queue.Queue[EventRecord | Catalog] = queue.Queue(maxsize=sink.options.queue_size)
        self.dropped = 0
        self._drop_log = RateLimitedLog(log, 60.0, logging.ERROR)  # a full queue stays full for many records
        self._closing = threading.Event()  # set at shutdown: deliver what is queued, then end
        # a catalog that found the queue full waits here (the latest only) until the queue has drained: never
        # dropped, and never blocking the inference thread behind a slow sink
        self._pending_catalog: Catalog | None = None
        self._pending_lock = threading.Lock()
        self._abandon = threading.Event()  # set at the shutdown deadline: take nothing more from the queue
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._thread.start()

    def put(self, record: EventRecord | Catalog) -> None:
        if isinstance(record, Catalog):
            try:
                self.queue.put_nowait(record)
            except queue.Full:
                with self._pending_lock:
                    self._pending_catalog = record
            return
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
                with self._pending_lock:
                    pending, self._pending_catalog = self._pending_catalog, None
                if pending is not None:
                    _deliver(self.name, self.sink, pending, self.report)
                elif self._closing.is_set():
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
        left: list[EventRecord | Catalog] = []
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

    def _hand_over(self, queued: list[EventRecord | Catalog]) -> None:
        records = [r for r in queued if isinstance(r, EventRecord)]  # a catalog is sent again at the next start
        if not records:
            return
        try:
            kept = self.sink.keep_undelivered(records)
        except Exception as e:  # noqa: BLE001
            log.error("sink %s: cannot keep the records left at shutdown: %s", self.name, e)
            kept = 0
        if kept < len(records):  # only the lost ones are failures; the kept ones are delivered by the next run
            self.report.failed(self.name, f"{len(records)} record(s) queued at the shutdown deadline",
                               SinkError(f"{kept} kept for the next run, {len(records) - kept} lost"),
                               count=len(records) - kept)
        else:
            log.warning("sink %s: the %d record(s) queued at the shutdown deadline are kept for the next run",
                        self.name, kept)


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


def _deliver(name: str, sink: Sink, record: EventRecord | Catalog, report: FailureLog) -> None:
    try:
        if isinstance(record, Catalog):
            sink.catalog_changed(record)
        else:
            sink.emit(record)
    except Exception as e:  # noqa: BLE001 - a sink must never stop detection
        what = record if isinstance(record, EventRecord) else "the stream/label catalog"
        report.failed(name, what, e, e.records if isinstance(e, SinkError) else 1)


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

    def window_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:
        for name, sink in self.audio_sinks:
            try:
                sink.window_privacy(stream, start_sample, end_sample, private)
            except Exception as e:  # noqa: BLE001
                self.report.failed(name, f"{stream} privacy mark", e)

    def emit(self, record: EventRecord) -> None:
        for name, sink in self.sinks:
            if not sink.wants(record):
                continue
            if self.workers:
                self.workers[name].put(record)
            else:
                _deliver(name, sink, record, self.report)

    def catalog_changed(self, catalog: Catalog) -> None:
        for name, sink in self.sinks:
            if self.workers:
                self.workers[name].put(catalog)
            else:
                _deliver(name, sink, catalog, self.report)

    def close_left_open(self, streams: Collection[str], wall_time: str) -> list[EventRecord]:
        """Close what a crash left open on ``streams`` (this daemon's; another daemon sharing the store keeps
        its own): the ``interrupted`` end of every event some sink saw start and never end goes to every sink,
        so the store gets its end row and MQTT its OFF. Call before the first record."""
        ends: dict[tuple[str, str], EventRecord] = {}
        for name, sink in self.sinks:
            try:
                for start in sink.left_open():
                    if start.stream in streams:
                        ends.setdefault((start.id, start.stream), start.interrupted_end(wall_time))
            except Exception as e:  # noqa: BLE001 - a sink that cannot say still gets the others' ends
                self.report.failed(name, "the events left open by a crash", e)
        for end in ends.values():
            log.warning("%s: the %s event started at %.1f s (id %s) was left open by a crash; closed as "
                        "interrupted", end.stream, end.label, end.start_s, end.id)
            self.emit(end)
        return list(ends.values())

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


def build_sinks(entries: Sequence[SinkConfig], keep_audio: bool = True, context: SinkContext | None = None,
                ) -> SinkSet:
    """Instantiate the configured sinks, each with a worker, from their validated options.

    ``keep_audio`` false (``privacy.store_audio: false``): the sinks that keep audio (clips) are left out."""
    from streamdetect.sinks import SINKS

    built = []
    for i, entry in enumerate(entries):
        cls = SINKS.get(entry.type)
        if cls.wants_audio and not keep_audio:
            log.warning("privacy.store_audio is false: sink %s#%d keeps audio and is not started", entry.type, i)
            continue
        built.append((f"{entry.type}#{i}", cls.create(entry.options, context or SinkContext())))
    return SinkSet(built, threaded=True)
