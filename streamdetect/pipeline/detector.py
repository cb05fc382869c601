"""The streaming detector: audio -> windows -> scores -> event trackers -> records, and one result per window.

All streaming state lives in ``Detector`` and its ``StreamState`` objects, so two detectors can run side by
side in one process and one test. Its collaborators (encoder, prompt bank, outputs, observer, window listeners)
are handed in at construction (``streamdetect.daemon.build``). Audio enters by ``feed`` alone; whoever drives
it (the batching engine, replay) analyses the windows it returns.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from streamdetect.config import Config, GateConfig
from streamdetect.embed.encoder.base import AudioEncoder
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline import judge
from streamdetect.pipeline.events import Catalog, EventRecord, event_rules
from streamdetect.pipeline.gates import event_schedules, floor_of, listening
from streamdetect.pipeline.observers import DetectorObserver, Outputs
from streamdetect.pipeline.reconfigure import BankFor, retrack, warn_restart_only
from streamdetect.pipeline.registry import StreamRegistry
from streamdetect.pipeline.results import WindowListener, WindowResult
from streamdetect.pipeline.scorer import WindowScorer
from streamdetect.pipeline.scoring import Scores
from streamdetect.pipeline.streams import StreamState
from streamdetect.pipeline.windows import Window
from streamdetect.prompts.bank import PromptBank
from streamdetect.schedule import Clock, utc_now
from streamdetect.sources.base import Gap

log = logging.getLogger(__name__)


class Detector:
    """Runs configured events over any number of streams with one encoder and one prompt bank."""

    def __init__(self, config: Config, bundle: ModelBundle, outputs: Outputs, encoder: AudioEncoder,
                 bank: PromptBank, *, bank_for: BankFor | None = None, observer: DetectorObserver | None = None,
                 listeners: Sequence[WindowListener] = (), clock: Clock = utc_now):
        if config.windows.window_s > bundle.frontend_params.max_length_s:
            raise ValueError(f"windows.window_s is {config.windows.window_s} s but the model takes at most "
                             f"{bundle.frontend_params.max_length_s:g} s")
        self.config, self.bundle, self.sinks = config, bundle, outputs
        self.encoder, self.bank, self.bank_for, self.observer = encoder, bank, bank_for, observer
        self.listeners: list[WindowListener] = list(listeners)  # drivers add their own (the tap, a score log)
        self.scorer = WindowScorer(bundle, encoder, config.runtime.frontend_threads)
        self.rules = event_rules(config.events)
        self.clock = clock  # an aware datetime now: schedules, and the wall time of live streams
        self.schedules = event_schedules(config)
        self.registry = StreamRegistry()
        self.streams = self.registry.streams  # every stream opened, in order

    @property
    def filters_privacy(self) -> bool:
        """The privacy filter is on: audio may be shown only after its window was judged."""
        return self.bank.privacy is not None

    @property
    def frontend_seconds(self) -> float:
        return self.scorer.frontend_seconds

    @property
    def encoder_seconds(self) -> float:
        return self.scorer.encoder_seconds

    def expect_streams(self, streams: Mapping[str, Collection[str] | None]) -> None:
        """Name the streams about to be opened (with their label filters) before their sources start, so the
        sinks and metrics learn the whole catalog at once: MQTT discovery announces every entity at start-up,
        and clears those of labels gone since, only when it knows all of them."""
        self.registry.expect(streams)
        self._catalog_changed()

    def catalog(self) -> Catalog:
        return self.registry.catalog(self.bank.labels, self.config)

    def _catalog_changed(self) -> None:
        catalog = self.catalog()
        self.sinks.catalog_changed(catalog)
        if self.observer is not None:
            self.observer.catalog_changed(catalog)

    def open_stream(self, name: str, live: bool, gate: GateConfig | None = None,
                    labels: Collection[str] | None = None, schedule: Sequence[str] | None = None) -> StreamState:
        stream, grew = self.registry.open(name, live, self.config, self.bundle.sample_rate, self.bank.labels,
                                          self.rules, self.clock, gate, labels, schedule)
        if grew:
            self._catalog_changed()
        return stream

    def prepare(self, config: Config) -> PromptBank:
        """The prompt bank a reload to ``config`` switches to. Any thread may build it (embedding its audio
        examples takes seconds), so the thread that analyses never waits for it."""
        if self.bank_for is None:
            raise RuntimeError("this detector was built with a fixed prompt bank and cannot reload its events")
        return self.bank_for(config)

    def reload(self, config: Config, bank: PromptBank | None = None) -> list[EventRecord]:
        """Switch to a new config's events, gate and novelty without a restart (call from the thread that
        analyses), with ``bank`` from ``prepare`` (built here without); see ``pipeline.reconfigure``. Window,
        runtime, source and sink settings stay as they were."""
        warn_restart_only(self.config, config)
        bank, rules = bank if bank is not None else self.prepare(config), event_rules(config.events)
        records = [r for s in self.streams for r in self._emit(s, retrack(s, bank.labels, rules, config.novelty))]
        self.config, self.bank, self.rules = config.model_copy(update={
            "windows": self.config.windows, "runtime": self.config.runtime}), bank, rules
        self.schedules = event_schedules(self.config)
        log.info("config reloaded: events %s", ", ".join(bank.labels))
        self._catalog_changed()  # after the removed labels' ends, so a sink sees those before their entity goes
        return records

    def feed(self, stream: StreamState, block: np.ndarray | Gap | None) -> list[Window]:
        """The one way audio enters: a block in, the windows it completes out, for the caller to ``analyse``
        now or in a batch. A ``Gap`` (lost audio) moves stream time on and counts the windows it cost; None
        (the end of a finite stream) gives the windows it still owes."""
        if block is None:
            return list(stream.windower.finish())
        if not isinstance(block, Gap):
            return list(stream.windower.push(block))
        lost = stream.skip(block.n_samples)
        log.warning("%s: %.2f s of audio lost, %d window(s) not analysed", stream.name,
                    block.n_samples / self.bundle.sample_rate, lost)
        if self.observer is not None:
            self.observer.windows_dropped(stream.name, lost)
        return []

    def end_stream(self, stream: StreamState) -> list[EventRecord]:
        """No more audio will come: close the stream's open events, then tell the sinks that keep audio."""
        records = self.close_events(stream)
        self.sinks.stream_ended(stream.name)
        return records

    def close_events(self, stream: StreamState) -> list[EventRecord]:
        """Emit an ``end`` for every event of the stream that is still active."""
        wall = stream.wall(stream.seconds)
        novelty = [stream.novelty.tracker] if stream.novelty is not None else []
        return self._emit(stream, [r for tracker in stream.trackers + novelty for r in tracker.finish(wall)])

    def scores(self, windows: list[Window], floors: list[float | None] | None = None) -> Scores:
        """Scores of a batch of windows (also used by tools that need raw scores, not events); with an energy
        gate, windows quieter than their floor (``floors[i]``, else ``gate.min_dbfs``) skip the encoder."""
        return self.scorer.scores(windows, floors or [self.config.gate.min_dbfs] * len(windows), self.bank,
                                  self.config.scoring.mode, self.config.vocabulary.top_k)

    def analyse(self, items: list[tuple[StreamState, Window]]) -> list[EventRecord]:
        """Score windows of any streams in batches of ``runtime.batch_size``; apply them in order.

        A window in which no event of its stream is scheduled (or whose stream is not) never reaches the
        encoder: it only closes the events still open."""
        listening_to = [listening(stream, window, self.schedules) for stream, window in items]
        due = [item for item, on in zip(items, listening_to, strict=True) if any(on)]
        size = self.config.runtime.batch_size
        scored: list[tuple[Scores, int]] = []
        for offset in range(0, len(due), size):
            batch = due[offset : offset + size]
            scores = self.scores([w for _, w in batch], [floor_of(s, self.config.gate) for s, _ in batch])
            scored += [(scores, b) for b in range(len(batch))]
        records: list[EventRecord] = []
        next_scored = iter(scored)
        for (stream, window), on in zip(items, listening_to, strict=True):
            if any(on):
                records += self._apply(stream, window, on, *next(next_scored))
            else:
                records += self._scheduled_out(stream, window)
        return records

    def _scheduled_out(self, stream: StreamState, window: Window) -> list[EventRecord]:
        stream.scheduled_out_windows += 1
        result = judge.scheduled_out(stream, window, self.bank, self.rules, self.config.privacy.store_audio)
        self._publish(result)
        return self._emit(stream, [r for tracker in stream.trackers for r in tracker.finish(result.wall)])

    def _apply(self, stream: StreamState, window: Window, on: list[bool], scores: Scores,
               b: int) -> list[EventRecord]:
        result = judge.scored(stream, window, scores, b, self.bank, self.rules,
                              self.config.privacy.threshold, self.config.privacy.store_audio)
        stream.windows_processed += 1
        stream.gated_windows += result.gated
        stream.private_windows += bool(result.private)
        self._publish(result)
        records: list[EventRecord] = []
        for e, tracker in enumerate(stream.trackers):
            records += tracker.update(judge.tracker_input(result, e)) if on[e] else tracker.finish(result.wall)
        if stream.novelty is not None:
            records += stream.novelty.window(result.start_s, result.end_s, result.embedding,
                                             scores.closest[b] if scores.closest is not None else ("", -1.0),
                                             result.top, result.sounds_like, result.wall)
        return self._emit(stream, records)

    def _publish(self, result: WindowResult) -> None:
        for listener in self.listeners:
            listener.window(result)

    def _emit(self, stream: StreamState, records: list[EventRecord]) -> list[EventRecord]:
        if self.config.site.name:  # many stations, one broker: every record says where it was heard
            records = [dataclasses.replace(record, site=self.config.site.name) for record in records]
        for record in records:
            self.sinks.emit(record)
            if self.observer is not None:
                self.observer.record_emitted(record)
        stream.records_emitted += len(records)
        return records
