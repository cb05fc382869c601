"""The streaming detector: windows -> front end -> encoder -> scores -> event trackers -> outputs.

All streaming state lives in ``Detector`` and its ``StreamState`` objects, so two detectors (or two streams)
can run side by side in one process and one test. Its collaborators (encoder, prompt bank, outputs, observers)
are handed in when it is built; ``streamdetect.daemon.build`` builds them from a config.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from streamdetect.config import Config, GateConfig
from streamdetect.embed.encoder.base import AudioEncoder
from streamdetect.embed.frontend import ParallelFrontend
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.events import Catalog, EventRecord, EventTracker, WindowScore, event_rules
from streamdetect.pipeline.novelty import NoveltyState
from streamdetect.pipeline.observers import (
    DetectorObserver,
    EmbeddingObserver,
    LiveObserver,
    Outputs,
    WindowView,
)
from streamdetect.pipeline.scoring import Scores, gated_scores, score
from streamdetect.pipeline.streams import StreamState
from streamdetect.pipeline.windows import Window, Windower
from streamdetect.prompts.bank import PromptBank
from streamdetect.schedule import Clock, Schedule, utc_now
from streamdetect.sources.base import Gap

log = logging.getLogger(__name__)

BankFor = Callable[[Config], PromptBank]  # a reloaded config -> its prompt bank


def rms_dbfs(samples: np.ndarray) -> float:
    """Level of a window in dB relative to full scale (a full-scale square wave is 0 dBFS)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-10))


def frontend_threads(configured: int, encoder: AudioEncoder) -> int:
    """``runtime.frontend_threads`` made concrete: 0 gives one thread when the encoder runs on the CPU, and all
    cores but two (for the sources and sinks) when it runs on a GPU, where one thread's ~780 log-mel windows per
    second would be the limit on streams."""
    if configured:
        return configured
    return max(1, (os.cpu_count() or 1) - 2) if encoder.on_gpu else 1


class Detector:
    """Runs configured events over any number of streams with one encoder and one prompt bank."""

    def __init__(
        self,
        config: Config,
        bundle: ModelBundle,
        outputs: Outputs,
        encoder: AudioEncoder,
        bank: PromptBank,
        *,
        bank_for: BankFor | None = None,
        observer: DetectorObserver | None = None,
        embedding_log: EmbeddingObserver | None = None,
        clock: Clock = utc_now,
        live: LiveObserver | None = None,
    ):
        if config.windows.window_s > bundle.frontend_params.max_length_s:
            raise ValueError(
                f"windows.window_s is {config.windows.window_s} s but the model takes at most "
                f"{bundle.frontend_params.max_length_s:g} s"
            )
        self.config, self.bundle, self.sinks = config, bundle, outputs
        self.encoder, self.bank, self.bank_for = encoder, bank, bank_for
        self.observer, self.embedding_log, self.live = observer, embedding_log, live
        self.frontend = ParallelFrontend(bundle.frontend_params,
                                         frontend_threads(config.runtime.frontend_threads, encoder))
        self.rules = event_rules(config.events)
        self.clock = clock  # an aware datetime now: schedules, and the wall time of live streams
        self.schedules = event_schedules(config)
        self.encoder_seconds = 0.0
        self.frontend_seconds = 0.0
        self.streams: list[StreamState] = []
        self._expected: dict[str, frozenset[str] | None] = {}  # stream -> its label filter, for ``catalog``

    def expect_streams(self, streams: Mapping[str, Collection[str] | None]) -> None:
        """Name the streams about to be opened (with their label filters) before their sources start, so the
        sinks and metrics learn the whole catalog at once: MQTT discovery announces every entity at start-up,
        and clears those of labels gone since, only when it knows all of them."""
        self._expected.update({name: frozenset(labels) if labels is not None else None
                               for name, labels in streams.items()})
        self._catalog_changed()

    def catalog(self) -> Catalog:
        novelty = (self.config.novelty.label,) if self.config.novelty.enabled else ()
        return Catalog(tuple((name, tuple(x for x in self.bank.labels if only is None or x in only) + novelty)
                             for name, only in self._expected.items()))

    def _catalog_changed(self) -> None:
        catalog = self.catalog()
        self.sinks.catalog_changed(catalog)
        if self.observer is not None:
            self.observer.catalog_changed(catalog)

    def open_stream(self, name: str, live: bool, gate: GateConfig | None = None,
                    labels: Collection[str] | None = None, schedule: Sequence[str] | None = None) -> StreamState:
        windower = Windower(self.config.windows.window_s, self.config.windows.hop_s, self.bundle.sample_rate)
        trackers = [EventTracker(label, rules, stream=name) for label, rules in zip(self.bank.labels, self.rules, strict=True)]
        stream = StreamState(name=name, live=live, windower=windower, trackers=trackers, gate=gate,
                             labels=frozenset(labels) if labels is not None else None, clock=self.clock,
                             schedule=Schedule.of(schedule, self.config.site.site()))
        if self.config.novelty.enabled:
            stream.novelty = NoveltyState.create(self.config.novelty, name)
        self.streams.append(stream)
        if name not in self._expected:
            self._expected[name] = stream.labels
            self._catalog_changed()
        return stream

    def reload(self, config: Config) -> list[EventRecord]:
        """Switch to a new config's events and gate without a restart (call from the thread that analyses).

        Kept labels keep their state (an active event stays active under the new threshold); removed labels
        have their open events closed; new labels start idle. Window, runtime, source and sink settings need
        a restart and are left as they were.
        """
        for key in ("windows", "runtime", "sources", "source", "sinks", "model", "metrics", "control",
                    "embedding_log", "summary", "web"):
            if getattr(config, key) != getattr(self.config, key):
                log.warning("config reload: %s changed, which takes effect only after a restart", key)
        if self.bank_for is None:
            raise RuntimeError("this detector was built with a fixed prompt bank and cannot reload its events")
        bank = self.bank_for(config)
        rules = event_rules(config.events)
        records: list[EventRecord] = []
        for stream in self.streams:
            old = {t.label: t for t in stream.trackers}
            for label in set(old) - set(bank.labels):
                wall = stream.wall_time(stream.windower.total_samples / self.bundle.sample_rate)
                records += self._emit(stream, old[label].finish(wall))
            stream.trackers = []
            for label, rule in zip(bank.labels, rules, strict=True):
                tracker = old.get(label) or EventTracker(label, rule, stream=stream.name)
                tracker.rules = rule
                stream.trackers.append(tracker)
            records += self._reload_novelty(stream, config)
        self.config, self.bank, self.rules = config.model_copy(update={
            "windows": self.config.windows, "runtime": self.config.runtime}), bank, rules
        self.schedules = event_schedules(self.config)
        log.info("config reloaded: events %s", ", ".join(bank.labels))
        self._catalog_changed()  # after the removed labels' ends, so a sink sees those before their entity goes
        return records

    def _reload_novelty(self, stream: StreamState, config: Config) -> list[EventRecord]:
        novelty = config.novelty
        if stream.novelty is not None and (not novelty.enabled or novelty.label != stream.novelty.config.label):
            wall = stream.wall_time(stream.windower.total_samples / self.bundle.sample_rate)
            records = self._emit(stream, stream.novelty.tracker.finish(wall))
            stream.novelty = None
        else:
            records = []
        if novelty.enabled and stream.novelty is None:
            stream.novelty = NoveltyState.create(novelty, stream.name)
        elif novelty.enabled:
            stream.novelty.reconfigure(novelty)
        return records

    def push(self, stream: StreamState, block: np.ndarray | Gap) -> list[EventRecord]:
        """Feed audio; live streams are analysed at once, files in batches of ``runtime.batch_size``."""
        if isinstance(block, Gap):
            self.skip(stream, block)
            return []
        self.tap(stream, block)
        stream.pending.extend(stream.windower.push(block))
        if stream.live or len(stream.pending) >= self.config.runtime.batch_size:
            return self._flush(stream)
        return []

    def tap(self, stream: StreamState, block: np.ndarray) -> None:
        """Show a block to the sinks that keep audio (clips), before it is windowed, at its absolute sample
        index; a ``Gap`` advances that index without audio, which those sinks see as a jump."""
        if self.sinks.wants_audio:
            at = stream.windower.total_samples
            if stream.schedule is not None and not stream.schedule.active(
                    stream.wall_datetime(at / self.bundle.sample_rate)):
                block = np.zeros_like(block)  # not recorded: the sinks keep their timing, not the audio
            self.sinks.audio(stream.name, at, block, self.bundle.sample_rate)
        if self.live is not None:  # with the privacy filter on, audio is not shown before it has been judged
            self.live.live_audio(stream.name, stream.windower.total_samples, block, self.bundle.sample_rate,
                                 held=self.bank.privacy is not None)

    def skip(self, stream: StreamState, gap: Gap) -> None:
        """Lost audio: stream time moves on and the windows touching the gap are counted as dropped."""
        before = stream.windower.dropped_windows
        stream.windower.skip(gap.n_samples)
        lost = stream.windower.dropped_windows - before
        log.warning("%s: %.2f s of audio lost, %d window(s) not analysed", stream.name,
                    gap.n_samples / self.bundle.sample_rate, lost)
        if self.observer is not None:
            self.observer.windows_dropped(stream.name, lost)

    def finish(self, stream: StreamState) -> list[EventRecord]:
        """End of stream (or shutdown): analyse what is owed, then close active events."""
        stream.pending.extend(stream.windower.finish())
        records = self._flush(stream)
        return records + self.end_stream(stream)

    def end_stream(self, stream: StreamState) -> list[EventRecord]:
        """No more audio will come: close the stream's open events, then tell the sinks that keep audio."""
        records = self.close_events(stream)
        self.sinks.stream_ended(stream.name)
        return records

    def close_events(self, stream: StreamState) -> list[EventRecord]:
        """Emit an ``end`` for every event of the stream that is still active."""
        wall = stream.wall_time(stream.windower.total_samples / self.bundle.sample_rate)
        records: list[EventRecord] = []
        for tracker in stream.trackers:
            records += self._emit(stream, tracker.finish(wall))
        if stream.novelty is not None:
            records += self._emit(stream, stream.novelty.tracker.finish(wall))
        return records

    def scores(self, windows: list[Window], floors: list[float | None] | None = None) -> Scores:
        """Scores of a batch of windows (also used by tools that need raw scores, not events).

        With an energy gate, windows quieter than their floor (``floors[i]``, else the top-level
        ``gate.min_dbfs``) skip the encoder and score -1.
        """
        floors = floors or [self.config.gate.min_dbfs] * len(windows)
        if any(f is not None for f in floors):
            gated = np.array([f is not None and rms_dbfs(w.samples) < f for w, f in zip(windows, floors, strict=True)])
            if gated.any():
                open_windows = [w for w, g in zip(windows, gated, strict=True) if not g]
                return gated_scores(self.scores_ungated(open_windows) if open_windows else None, gated,
                                    self.bank.labels)
        return self.scores_ungated(windows)

    def scores_ungated(self, windows: list[Window]) -> Scores:
        t0 = time.perf_counter()
        feats = self.frontend([w.samples for w in windows])
        t1 = time.perf_counter()
        embeddings = self.encoder(feats)
        self.frontend_seconds += t1 - t0
        self.encoder_seconds += time.perf_counter() - t1
        return score(embeddings, self.bank, self.config.scoring.mode, self.bundle.logit_scale,
                     self.config.vocabulary.top_k)

    def _flush(self, stream: StreamState) -> list[EventRecord]:
        items = [(stream, window) for window in stream.pending]
        stream.pending = []
        return self.analyse(items)

    def analyse(self, items: list[tuple[StreamState, Window]]) -> list[EventRecord]:
        """Score windows of any streams in batches of ``runtime.batch_size``; apply them in order.

        A window in which no event of its stream is scheduled (or whose stream is not) never reaches the
        encoder: it only closes the events still open."""
        listening = [self._listening(stream, window) for stream, window in items]
        due = [item for item, on in zip(items, listening, strict=True) if any(on)]
        batch_size = self.config.runtime.batch_size
        scored: list[tuple[Scores, int]] = []
        for offset in range(0, len(due), batch_size):
            batch = due[offset : offset + batch_size]
            scores = self.scores([window for _, window in batch],
                                 [(stream.gate or self.config.gate).min_dbfs for stream, _ in batch])
            scored += [(scores, b) for b in range(len(batch))]
        records: list[EventRecord] = []
        next_scored = iter(scored)
        for (stream, window), on in zip(items, listening, strict=True):
            if any(on):
                records += self._apply(stream, window, on, *next(next_scored))
            else:
                records += self._scheduled_out(stream, window)
        return records

    def _listening(self, stream: StreamState, window: Window) -> list[bool]:
        """Per tracker: is its event listened for in this window (stream labels, event and stream schedules)."""
        at = None
        if stream.schedule is not None or any(s is not None for s in self.schedules):
            at = stream.wall_datetime(window.start_s)
            if stream.schedule is not None and not stream.schedule.active(at):
                return [False] * len(stream.trackers)
        return [(stream.labels is None or tracker.label in stream.labels)
                and (schedule is None or schedule.active(at))
                for tracker, schedule in zip(stream.trackers, self.schedules, strict=True)]

    def _scheduled_out(self, stream: StreamState, window: Window) -> list[EventRecord]:
        stream.scheduled_out_windows += 1
        if self.observer is not None:
            self.observer.windows_scheduled_out(stream.name, 1)
        self._judged(stream, window, True)  # never scored, so never known to be free of speech
        wall = stream.wall_time(window.end_s)
        records: list[EventRecord] = []
        for tracker in stream.trackers:
            records += self._emit(stream, tracker.finish(wall))
        return records

    def _judged(self, stream: StreamState, window: Window, private: bool) -> None:
        if self.bank.privacy is None:
            return
        end = window.start_sample + window.n_samples
        if self.sinks.wants_audio:
            self.sinks.window_privacy(stream.name, window.start_sample, end, private)
        if self.live is not None:
            self.live.live_privacy(stream.name, window.start_sample, end, private)

    def _apply(self, stream: StreamState, window: Window, on: list[bool], scores: Scores,
               b: int) -> list[EventRecord]:
        records: list[EventRecord] = []
        top = scores.top(b)
        wall = stream.wall_time(window.end_s)
        gated = scores.gated is not None and bool(scores.gated[b])
        emb = None if scores.embeddings is None or gated else scores.embeddings[b]
        private = None
        if self.bank.privacy is not None:
            private = emb is not None and float(emb @ self.bank.privacy) >= self.config.privacy.threshold
            stream.private_windows += private
            if private and self.observer is not None:
                self.observer.windows_private(stream.name, 1)
            self._judged(stream, window, private)
        if private:
            emb = None  # nothing derived from speech is kept: no logged embedding, none in the records
        if emb is not None and self.embedding_log is not None and self.config.privacy.store_audio:
            self.embedding_log.add(stream.name, window.start_s, window.end_s, wall, emb)
        kept = emb if self.config.privacy.store_audio else None
        sounds_like = scores.sounds_like[b] if scores.sounds_like is not None else ()
        for e, tracker in enumerate(stream.trackers):
            if not on[e]:
                records += self._emit(stream, tracker.finish(wall))
                continue
            ws = WindowScore(window.start_s, window.end_s, float(scores.event[b, e]),
                             scores.vetoed_by[b][e], top, wall, embedding=kept, sounds_like=sounds_like,
                             private=private)
            records += self._emit(stream, tracker.update(ws))
        if stream.novelty is not None:
            records += self._emit(stream, stream.novelty.window(
                window.start_s, window.end_s, emb,
                scores.closest[b] if scores.closest is not None else ("", -1.0), top, sounds_like, wall))
        if stream.score_log is not None:
            stream.score_log.starts_s.append(window.start_s)
            stream.score_log.ends_s.append(window.end_s)
            stream.score_log.scores.append(scores.event[b].copy())
            stream.score_log.vetoed.append(np.array([v is not None for v in scores.vetoed_by[b]]))
        stream.windows_processed += 1
        stream.gated_windows += gated
        if self.observer is not None:
            self.observer.window_scored(stream.name, self.bank.labels, scores.event[b], gated)
        if self.live is not None:
            self.live.live_window(WindowView(
                stream.name, window.start_s, window.end_s, wall, self.bank.labels, scores.event[b].copy(),
                tuple(r.threshold for r in self.rules), top, sounds_like, gated, emb, private=bool(private)))
        return records

    def _emit(self, stream: StreamState, records: list[EventRecord]) -> list[EventRecord]:
        if self.config.site.name:  # many stations, one broker: every record says where it was heard
            records = [dataclasses.replace(record, site=self.config.site.name) for record in records]
        for record in records:
            self.sinks.emit(record)
            if self.observer is not None:
                self.observer.record_emitted(record)
        stream.records_emitted += len(records)
        return records


def event_schedules(config: Config) -> list[Schedule | None]:
    """Each event's schedule at the config's site, in event order (None: always listened for)."""
    site = config.site.site()
    return [Schedule.of(e.schedule, site) for e in config.events]
