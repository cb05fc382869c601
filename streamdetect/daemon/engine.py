"""One inference thread for many streams: windows that are due from all streams go through the encoder together.

Each source has a feeding thread that cuts its windows; the engine thread batches whatever windows are queued
(waiting at most ``max_wait_s`` for more, so a quiet stream never holds the others back), scores them, and
applies the scores to each stream's event trackers in order. Trackers are only touched by the engine thread.
Live streams never block: if the engine falls behind, the backlog is logged, and live windows are bounded twice
by one mechanism (``_bound``): each live stream keeps at most ``live_queue_windows`` windows queued (about half a
megabyte each), and with ``max_queue_windows`` (a remote encoder whose server may go away) all live streams
together keep at most that many, and one stream as many as that too (the documented wait for a server that is
away is ``runtime.triton.queue_windows``, not the per-stream bound). Beyond either bound the oldest live windows
are dropped, counted once
(``EngineStats.dropped_windows``, the stream's run summary, ``streamdetect_dropped_windows_total{stream}``) and
logged, so a machine that cannot keep up, a source faster than real time or a server that is away cannot fill
memory. Finite streams (files) wait for room instead.
Once a minute the inference thread gives the C heap's free pages back to the system (``NativeHeap.trim``).
An encoder that raises ``EncoderUnavailable`` gets its batch back at the head of the queue and is tried again
after the wait it asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamdetect.config import Config
from streamdetect.embed.encoder.base import EncoderUnavailable
from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.observers import EngineObserver
from streamdetect.pipeline.streams import RunSummary, StreamSettings, StreamState, summarize
from streamdetect.pipeline.tap import AudioTap
from streamdetect.pipeline.windows import Window
from streamdetect.prompts.bank import PromptBank
from streamdetect.sources.base import AudioSource, Gap
from streamdetect.util.memory import NativeHeap
from streamdetect.util.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """Counters for logs and metrics; latency is from a window being complete to its records being emitted,
    kept for the most recent 10,000 windows only (enough for a p99; a daemon must not grow for months)."""

    windows: int = 0
    batches: int = 0
    backlog: int = 0
    max_backlog: int = 0
    backlog_warnings: int = 0
    dropped_windows: int = 0  # live windows dropped unanalysed: over a queue bound, or left at stop
    encoder_waits: int = 0  # batches handed back by an unavailable encoder
    heap_trims: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=10_000))  # the most recent windows

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies_s), q) * 1000) if self.latencies_s else 0.0


@dataclass
class ReloadTicket:
    """Lets a caller (the control API) wait until the inference thread applied, or rejected, its reload."""

    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


@dataclass(frozen=True)
class _Item:
    stream: StreamState
    window: Window | None  # None: the stream ended, close its events
    submitted: float


class BatchingEngine:
    """The inference thread and its queue. It owns the audio tap (``tap``, default: the detector's outputs
    alone): ``feed`` shows each block to it, and it listens to the detector for the privacy verdicts."""

    def __init__(self, detector: Detector, max_wait_s: float = 0.02, backlog_warn_s: float = 10.0,
                 finite_queue_windows: int | None = None, observer: EngineObserver | None = None,
                 max_queue_windows: int | None = None, live_queue_windows: int = 32,
                 heap: NativeHeap | None = None, trim_every_s: float = 60.0, tap: AudioTap | None = None):
        self.detector = detector
        self.tap = tap if tap is not None else AudioTap(detector.sinks)
        if self.tap not in detector.listeners:
            detector.listeners.append(self.tap)
        self.observer = observer
        self.max_batch = detector.config.runtime.batch_size
        self.max_wait_s = max_wait_s
        self.backlog_warn_s = backlog_warn_s
        self.finite_queue_windows = finite_queue_windows or 4 * self.max_batch
        self.max_queue_windows = max_queue_windows
        self._drop_log = RateLimitedLog(log, backlog_warn_s)
        self.live_queue_windows = max(live_queue_windows, max_queue_windows or 0)
        self.heap, self.trim_every_s = heap, trim_every_s
        self._next_trim = time.monotonic() + trim_every_s
        self._queued: dict[int, int] = {}  # windows queued per live stream (by id: names may repeat in tests)
        self.stats = EngineStats()
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="streamdetect-inference", daemon=True)
        self._error: BaseException | None = None
        self._backlog_log = RateLimitedLog(log, backlog_warn_s)  # a backlog lasts: warn once per backlog_warn_s
        self._reload: tuple[Config, PromptBank] | None = None  # a validated config and its bank, to be applied
        self._tickets: list[ReloadTicket] = []

    def start(self) -> None:
        self._thread.start()

    def submit(self, stream: StreamState, windows: list[Window]) -> None:
        """Queue a stream's new windows; blocks only for finite streams while the queue is full."""
        now = time.monotonic()
        with self._cond:
            if not stream.live:
                self._cond.wait_for(lambda: len(self._queue) < self.finite_queue_windows or self._error is not None)
            self._raise_if_failed()
            self._queue.extend(_Item(stream, w, now) for w in windows)
            if stream.live and windows:
                self._queued[id(stream)] = self._queued.get(id(stream), 0) + len(windows)
                self._bound(stream)
            self._note_backlog()
            self._cond.notify_all()

    def _bound(self, stream: StreamState | None) -> None:
        """Drop the oldest live windows beyond ``stream``'s own bound and beyond the bound on all live streams
        (the lock is held). One pass, one counter: a window over both bounds is dropped once."""
        own = self._queued.get(id(stream), 0) - self.live_queue_windows if stream is not None else 0
        total = (sum(self._queued.values()) - self.max_queue_windows) if self.max_queue_windows is not None else 0
        if own <= 0 and total <= 0:
            return
        kept: deque[_Item] = deque()
        for item in self._queue:
            mine = item.stream is stream
            if item.window is not None and item.stream.live and ((mine and own > 0) or total > 0):
                self._lost(item, f"inference cannot keep up with {item.stream.name} (at most {self.live_queue_windows}"
                                 " windows are queued per live stream)" if mine and own > 0
                           else "the queue is full (runtime.triton.queue_windows)")
                self._queued[id(item.stream)] -= 1
                own -= mine
                total -= 1
            else:
                kept.append(item)
        self._queue = kept

    def close_stream(self, stream: StreamState) -> None:
        """Close the stream's open events once every window queued before this call is analysed."""
        with self._cond:
            self._queue.append(_Item(stream, None, time.monotonic()))
            self._cond.notify_all()

    def request_reload(self, config: Config) -> ReloadTicket:
        """Apply a new (already validated) config between two batches, on the inference thread. Its prompt bank
        (audio examples embedded: seconds) is built first, here, in the caller's thread: detection goes on
        meanwhile, and the inference thread only swaps it in."""
        ticket = ReloadTicket()
        try:
            bank = self.detector.prepare(config)
        except Exception as e:  # noqa: BLE001 - a failed reload must not stop detection; the gate logs one line
            log.debug("the prompt bank of the new config could not be built", exc_info=True)
            ticket.error = f"{type(e).__name__}: {e}"
            ticket.done.set()
            return ticket
        with self._cond:
            self._reload = (config, bank)
            self._tickets.append(ticket)
            self._cond.notify_all()
        return ticket

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish what is queued, then end the inference thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("inference thread did not finish within %.0f s; %d windows left", timeout_s, len(self._queue))
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError("the inference thread failed") from self._error

    def _note_backlog(self) -> None:
        backlog = sum(1 for item in self._queue if item.window is not None)
        self.stats.backlog = backlog
        self.stats.max_backlog = max(self.stats.max_backlog, backlog)
        if self.observer is not None:
            self.observer.backlog_changed(backlog)
        oldest = self._queue[0].submitted if self._queue else time.monotonic()
        behind_s = time.monotonic() - oldest
        if behind_s > self.backlog_warn_s and self._backlog_log(
                "inference is %.1f s behind: %d windows queued (the machine cannot keep up with these streams; "
                "use fewer streams, precision int8 or a GPU)", behind_s, backlog):
            self.stats.backlog_warnings += 1

    def _lost(self, item: _Item, why: str) -> None:
        self.stats.dropped_windows += 1
        item.stream.dropped_windows += 1
        if self.observer is not None:
            self.observer.windows_dropped(item.stream.name, 1)
        self._drop_log("windows are dropped: %s; %d so far", why, self.stats.dropped_windows, key=why)

    def _hand_back(self, batch: list[_Item], error: EncoderUnavailable) -> list[_Item]:
        """Put an unanalysed batch back at the head of the queue and wait as long as the encoder asked; when
        stopping, count its windows as lost instead. Returns the close markers to apply now."""
        self.stats.encoder_waits += 1
        with self._cond:
            if self._stopping:
                for item in batch:
                    if item.window is not None:
                        self._lost(item, f"stopping while {error}")
                return [item for item in batch if item.window is None]
            self._queue.extendleft(reversed(batch))
            for item in batch:  # queued again: _take had taken them off their stream's count
                if item.stream.live and item.window is not None:
                    self._queued[id(item.stream)] = self._queued.get(id(item.stream), 0) + 1
            self._bound(None)
            self._note_backlog()
            self._cond.wait_for(lambda: self._stopping, timeout=max(error.retry_in_s, 0.01))
        return []

    def _take(self) -> list[_Item] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._stopping or self._reload is not None)
            if self._reload is not None:
                return []  # the loop applies the reload first
            if not self._queue:
                return None
            # Bounded wait for the other streams' windows of this tick, so they share one encoder call.
            deadline = time.monotonic() + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    break
            batch: list[_Item] = []
            while self._queue and len(batch) < self.max_batch:
                item = self._queue.popleft()
                batch.append(item)
                if item.stream.live and item.window is not None:
                    self._queued[id(item.stream)] -= 1
                if item.window is None:
                    break  # a close marker ends the batch: later windows of that stream cannot exist
            self._note_backlog()
            self._cond.notify_all()
            return batch

    def _loop(self) -> None:
        try:
            while (batch := self._take()) is not None:
                with self._cond:
                    reload, self._reload = self._reload, None
                    tickets, self._tickets = self._tickets, []
                if reload is not None:
                    error = None
                    try:
                        self.detector.reload(*reload)
                    except Exception as e:  # noqa: BLE001 - a failed reload must not stop detection
                        # the gate logs the one-line error; the traceback only for a developer who asks
                        log.debug("config reload failed; the previous config keeps running", exc_info=True)
                        error = f"{type(e).__name__}: {e}"
                    for ticket in tickets:  # a superseded request counts as answered by the newest one
                        ticket.error = error
                        ticket.done.set()
                windows = [(item.stream, item.window) for item in batch if item.window is not None]
                if windows:
                    try:
                        self.detector.analyse(windows)
                    except EncoderUnavailable as e:
                        for item in self._hand_back(batch, e):
                            self.detector.end_stream(item.stream)
                        continue
                    done = time.monotonic()
                    latencies = [done - item.submitted for item in batch if item.window is not None]
                    self.stats.latencies_s.extend(latencies)
                    if self.observer is not None:
                        for latency in latencies:
                            self.observer.window_latency(latency)
                    self.stats.windows += len(windows)
                    self.stats.batches += 1
                for item in batch:
                    if item.window is None:
                        self.detector.end_stream(item.stream)
                        with self._cond:
                            self._queued.pop(id(item.stream), None)
                self._housekeeping()
        except BaseException as e:  # noqa: BLE001 - reported to the feeding threads and the caller
            log.exception("inference thread failed")
            with self._cond:
                self._error = e
                self._cond.notify_all()


    def _housekeeping(self) -> None:
        if self.heap is not None and time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + self.trim_every_s
            self.heap.trim()
            self.stats.heap_trims += 1


def feed(engine: BatchingEngine, source: AudioSource, stop: threading.Event,
         settings: StreamSettings | None = None) -> StreamState:
    """Cut a source's windows in the calling thread and hand them to the engine."""
    detector = engine.detector
    settings = settings or StreamSettings()
    stream = detector.open_stream(source.name, source.live, settings.gate, settings.labels, settings.schedule)
    metrics = engine.observer
    try:
        for block in source.blocks(stop):
            if metrics is not None:
                metrics.heard(stream.name, source.live)
            if not isinstance(block, Gap):
                engine.tap.block(stream, block, held=detector.filters_privacy)
            windows = detector.feed(stream, block)
            if windows:
                engine.submit(stream, windows)
        engine.submit(stream, detector.feed(stream, None))
        if metrics is not None and not source.live:
            metrics.forget(stream.name)  # a finished file is not a dead stream
    finally:
        engine.close_stream(stream)
    return stream


def run_sources(detector: Detector, sources: list[AudioSource], stop: threading.Event,
                engine: BatchingEngine | None = None, settings: Sequence[StreamSettings] | None = None,
                ) -> tuple[list[RunSummary], EngineStats]:
    """Run every source in its own feeding thread through one batching engine until all end or ``stop``;
    ``settings[i]`` holds source i's own detection settings (default: the config's)."""
    engine = engine or BatchingEngine(detector)
    detector.expect_streams({s.name: settings[i].labels if settings else None for i, s in enumerate(sources)})
    if engine.observer is not None:
        for source in sources:  # registered before any audio: a stream that never connects shows as stale
            engine.observer.expect(source.name, source.live)
    engine.start()
    results: dict[int, StreamState] = {}
    errors: list[BaseException] = []
    t0 = time.perf_counter()

    # Waited on instead of Thread.join: when a signal handler raises inside join(), CPython's clean-up of the
    # interrupted wait (added for bpo-45274) marks the thread as finished while it still runs, and every later
    # join() returns at once: the engine would stop before the streams closed their events.
    finished = [threading.Event() for _ in sources]

    def worker(i: int, source: AudioSource) -> None:
        try:
            results[i] = feed(engine, source, stop, settings[i] if settings else None)
        except BaseException as e:  # noqa: BLE001 - re-raised below after the others finished
            errors.append(e)
            stop.set()
        finally:
            finished[i].set()

    threads = [threading.Thread(target=worker, args=(i, s), name=f"feed-{s.name}", daemon=True)
               for i, s in enumerate(sources)]
    for t in threads:
        t.start()
    try:
        while not all(done.is_set() for done in finished):
            for done in finished:
                done.wait(0.2)  # short waits keep the main thread responsive to signals
    except BaseException:
        # Whatever ends the main thread here (a signal handler that raised, Ctrl-C), the open events still
        # get their ``end``: the feeding threads stop and close their streams, the engine analyses what is queued.
        stop.set()
        for done in finished:
            done.wait(30)
        engine.stop()
        raise
    engine.stop()
    if errors:
        raise errors[0]
    wall = time.perf_counter() - t0
    return [summarize(results[i], s, detector.bundle.sample_rate, wall) for i, s in enumerate(sources)], engine.stats
