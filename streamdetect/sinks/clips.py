"""Saves each event's audio, with pre- and post-roll, as a FLAC or WAV clip; keeps the clip folder bounded.

The feeding thread copies every block into a per-stream preallocated ring (``audio``, cheap, no I/O); the sink's
worker thread, on an ``end`` record, waits until the post-roll has been heard (or the stream ended, or a
wall-clock timeout passed), copies the clip out of the ring and writes it atomically (``atomic_write``).

Retention only ever touches files whose names this sink writes, so nothing else in ``dir`` is at risk. It runs
at start-up (so it survives restarts), after every clip and hourly: clips older than ``max_age_days`` go first,
then the lowest-scoring clips while the folder exceeds ``max_total_mb``; the best clip of every label is kept
(``keep_best``), which is what a user most wants to keep and what peers' cleanups tend to throw away.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from pydantic import Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkError, SinkOptions
from streamdetect.sinks.clip_ring import StreamAudio
from streamdetect.util.files import atomic_write
from streamdetect.util.locks import PathInUse, PathLock
from streamdetect.util.names import safe_name, short_id
from streamdetect.util.writable import OutputPath

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%dT%H-%M-%SZ"
CLIP_NAME = re.compile(r"^(?P<time>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)_(?P<stream>[A-Za-z0-9._-]+)_"
                       r"(?P<score>-?\d+\.\d+)_(?P<id>[0-9A-Za-z]{1,8})\.(?:flac|wav)$")
# The temp file of an interrupted clip write: atomic_write's ".<clip>.<8 hex>.tmp", or ".<clip>.tmp" as
# versions before it named theirs (such leftovers are still cleaned up).
TEMP_NAME = re.compile(r"^\.(?P<clip>.+)\.(?:flac|wav|png)(?:\.[0-9a-f]{8})?\.tmp$")
RETENTION_INTERVAL_S = 3600.0
# A file is read ahead of detection by up to 4 x batch_size windows (engine.BatchingEngine.finite_queue_windows).
LAG_HINT = "a file run reads up to 4 x runtime.batch_size x windows.hop_s seconds ahead of detection"


class ClipsOptions(SinkOptions):
    dir: str = Field(..., min_length=1, description="folder for the clips, one sub-folder per label")
    format: Literal["flac", "wav"] = Field("flac", description="flac (lossless, about half the size) or wav")
    pre_roll_s: float = Field(3.0, ge=0, le=60, description="seconds kept before the event starts")
    post_roll_s: float = Field(3.0, ge=0, le=60, description="seconds kept after the event ends")
    max_clip_s: float = Field(60.0, gt=0, le=600, description="longest stretch of an event kept (around its "
                                                               "peak); pre- and post-roll come on top")
    buffer_slack_s: float = Field(30.0, ge=0, le=600, description="extra audio held per stream for the time "
                                                                  "detection lags behind the audio")
    wait_timeout_s: float = Field(60.0, gt=0, le=3600, description="longest wait for the post-roll to be "
                                                                   "heard (a stalled stream); then the clip is "
                                                                   "written with what arrived")
    max_age_days: float | None = Field(None, gt=0, le=36_500, description="delete clips older than this "
                                       "(default: keep; at most 100 years)")
    max_total_mb: float | None = Field(None, gt=0, le=1e9, description="delete the lowest-scoring clips while the "
                                                                "folder holds more (default: unbounded)")
    keep_best: bool = Field(True, description="never delete the highest-scoring clip of a label, whatever the "
                                              "age and size limits")
    spectrogram: bool = Field(False, description="also write <clip>.png, a spectrogram with the event marked "
                              "(pip install 'streamdetect[plot]'); retention treats clip and image as one")
    spectrogram_max_hz: float | None = Field(None, gt=0, le=96_000, description="top of the image's frequency "
                                             "axis (default: half the sample rate)")
    private: Literal["silence", "skip"] = Field("silence", description="with privacy.enabled, audio found to "
                                                "hold speech is written as silence, or the clip (and image) "
                                                "of an event touching it is not written at all (skip)")


@dataclass(frozen=True)
class ClipFile:
    """A clip on disk, described by its name (so nothing but the folder is needed after a restart)."""

    path: Path
    label: str  # the label's folder name
    time: datetime
    score: float
    size: int  # of the clip and its image together
    event_id8: str = ""  # the event's ``short_id`` (what `streamdetect refine --clips` looks up)


def scan_clips(root: Path) -> list[ClipFile]:
    """Every clip this sink could have written under ``root``; stale temp files of a crash are removed."""
    clips: list[ClipFile] = []
    if not root.is_dir():
        return clips
    for folder in root.iterdir():
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in os.scandir(folder):
            if not entry.is_file(follow_symlinks=False):
                continue
            temp = TEMP_NAME.match(entry.name)
            if temp and (CLIP_NAME.match(temp["clip"] + ".flac") or CLIP_NAME.match(temp["clip"] + ".wav")):
                log.warning("clips: removing %s, left by an interrupted write", entry.path)
                Path(entry.path).unlink(missing_ok=True)
                continue
            m = CLIP_NAME.match(entry.name)
            if m is None:
                _remove_orphan_image(Path(entry.path))
                continue
            try:
                when = datetime.strptime(m["time"], TIME_FORMAT).replace(tzinfo=timezone.utc)
            except ValueError:  # a name that only looks like ours (month 13): not ours to delete
                continue
            image = image_path(Path(entry.path))
            size = entry.stat(follow_symlinks=False).st_size + (image.stat().st_size if image.is_file() else 0)
            clips.append(ClipFile(Path(entry.path), folder.name, when, float(m["score"]), size, m["id"]))
    return clips


def image_path(clip: Path) -> Path:
    """``<clip>.png``: the spectrogram next to its clip, kept and deleted with it."""
    return clip.with_suffix(".png")


def _remove_orphan_image(path: Path) -> None:
    """An image whose clip is gone (a crash between the two deletions) goes too; other files are not ours."""
    if path.suffix == ".png" and not path.is_symlink() and any(
            CLIP_NAME.match(path.stem + ext) for ext in (".flac", ".wav")) and not any(
            path.with_suffix(ext).exists() for ext in (".flac", ".wav")):
        log.info("clips: removing %s, whose clip is gone", path)
        path.unlink(missing_ok=True)


def select_for_deletion(clips: list[ClipFile], now: datetime, max_age_days: float | None,
                        max_total_bytes: float | None, keep_best: bool = True) -> list[tuple[ClipFile, str]]:
    """Which clips retention deletes, each with the reason: age first, then the lowest-scoring (oldest on
    ties) while over the size cap; with ``keep_best`` the highest-scoring clip of each label never goes."""
    ranked = sorted(clips, key=lambda c: (c.score, c.time, c.path.name))  # deletion order
    protected: set[Path] = set()
    if keep_best:
        best: dict[str, ClipFile] = {}
        for clip in ranked:  # later entries rank higher
            best[clip.label] = clip
        protected = {c.path for c in best.values()}
    doomed: list[tuple[ClipFile, str]] = []
    kept: list[ClipFile] = []
    cutoff = None if max_age_days is None else now - timedelta(days=max_age_days)
    for clip in ranked:
        if cutoff is not None and clip.time < cutoff and clip.path not in protected:
            doomed.append((clip, f"older than {max_age_days:g} days"))
        else:
            kept.append(clip)
    if max_total_bytes is not None:
        total = sum(c.size for c in kept)
        for clip in kept:
            if total <= max_total_bytes:
                break
            if clip.path in protected:
                continue
            doomed.append((clip, f"folder over {max_total_bytes / 1e6:g} MB, score {clip.score:g}"))
            total -= clip.size
    return doomed


class ClipsSink(Sink[ClipsOptions]):
    Options = ClipsOptions
    wants_audio = True

    def __init__(self, options: ClipsOptions):
        super().__init__(options)
        self.root = Path(options.dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # One daemon per folder: retention would take another daemon's half-written clip for a crash's.
            self._lock = PathLock(self.root / ".streamdetect-clips.lock", f"the clips folder {self.root}")
        except PathInUse as e:
            raise SinkError(f"clips sink: {e} (sinks[].dir)") from None
        except OSError as e:
            raise SinkError(f"clips sink: cannot create the folder {self.root} (sinks[].dir): {e}") from e
        self._cond = threading.Condition()  # guards _streams; notified when audio arrives or a stream ends
        self._streams: dict[str, StreamAudio] = {}
        self._closing = False
        self._retention_lock = threading.Lock()
        if options.spectrogram:
            from streamdetect.sinks.spectrogram import require_matplotlib

            require_matplotlib(f"clips sink {self.root} (spectrogram: true)")
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None
        self.apply_retention()  # also removes the temp files of writes a crash interrupted
        if options.max_age_days is not None or options.max_total_mb is not None:
            self._janitor = threading.Thread(target=self._janitor_loop, name="clips-retention", daemon=True)
            self._janitor.start()

    # -- feeding thread ------------------------------------------------------------------------------------

    @classmethod
    def outputs(cls, options: ClipsOptions) -> list[OutputPath]:
        return [OutputPath("dir", Path(options.dir), "dir", "clips folder")]

    def audio(self, stream: str, start_sample: int, block: np.ndarray, sample_rate: int) -> None:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        with self._cond:
            buf = self._streams.get(stream)
            if buf is None or buf.ended or start_sample < buf.written:  # new stream, or one started over
                if buf is not None:
                    buf.ended = True  # a clip still waiting on the old run takes what it has
                seconds = (self.options.pre_roll_s + self.options.max_clip_s + self.options.post_roll_s
                           + self.options.buffer_slack_s)
                origin = datetime.now(timezone.utc) - timedelta(seconds=start_sample / sample_rate)
                buf = StreamAudio(int(np.ceil(seconds * sample_rate)), sample_rate, origin)
                buf.written = start_sample
                self._streams[stream] = buf
            buf.feeder = threading.get_ident()
            buf.write(start_sample, block)
            self._cond.notify_all()

    def stream_ended(self, stream: str) -> None:
        with self._cond:
            if stream in self._streams:
                self._streams[stream].ended = True
            self._cond.notify_all()

    # -- inference thread ----------------------------------------------------------------------------------

    def window_privacy(self, stream: str, start_sample: int, end_sample: int, private: bool) -> None:
        with self._cond:
            buf = self._streams.get(stream)
            if buf is not None:
                buf.mark(start_sample, end_sample, private)
                self._cond.notify_all()

    # -- worker thread -------------------------------------------------------------------------------------

    def emit(self, record: EventRecord) -> None:
        if record.phase != "end" or record.end_s is None:
            return
        samples, sample_rate, origin, first = self._take_clip(record, record.end_s)
        if samples is None:
            return
        name = (f"{(origin + timedelta(seconds=record.start_s)).strftime(TIME_FORMAT)}_{safe_name(record.stream)}_"
                f"{record.peak_score:.4f}_{short_id(record.id)}.{self.options.format}")
        folder = self.root / safe_name(record.label)
        path = folder / name
        if path.resolve().parent.parent != self.root.resolve():  # safe_name makes this impossible; be sure
            raise SinkError(f"clips sink: refusing to write {path} outside {self.root}")
        try:
            # Encoded in memory, then written: libsndfile writes a file through cffi callbacks, and an OSError
            # raised inside one (a full disk) was printed as a cffi traceback and came back as an error with an
            # empty message. A clip is a few MB at most; its samples are in memory already.
            encoded = io.BytesIO()
            sf.write(encoded, samples, sample_rate, format=self.options.format.upper(), subtype="PCM_16")
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, encoded.getvalue())
        except (OSError, sf.LibsndfileError) as e:
            raise SinkError(f"clips sink: cannot write {path}: {e or type(e).__name__} (free some space, lower "
                            f"max_total_mb, or check the permissions of {self.root})") from e
        log.info("clip %s: %.1f s", path, samples.shape[0] / sample_rate)
        if self.options.spectrogram:
            self._write_image(path, record, record.end_s, samples, sample_rate, first / sample_rate)
        if self.options.max_age_days is not None or self.options.max_total_mb is not None:
            self.apply_retention()

    def _write_image(self, clip: Path, record: EventRecord, event_end_s: float, samples: np.ndarray,
                     sample_rate: int, clip_start_s: float) -> None:
        from streamdetect.sinks.spectrogram import Marked, spectrogram_png

        mark = Marked(record.start_s - clip_start_s, event_end_s - clip_start_s, record.label)
        title = f"{record.label} on {record.stream}, {record.time[:19]}, peak {record.peak_score:.3f}"
        png = spectrogram_png(samples, sample_rate, [mark], title, self.options.spectrogram_max_hz)
        try:
            atomic_write(image_path(clip), png)
        except OSError as e:
            raise SinkError(f"clips sink: cannot write the image of {clip}: {e}") from e

    def _take_clip(self, record: EventRecord, event_end_s: float) -> tuple[np.ndarray | None, int, datetime, int]:
        """Wait for the audio up to the end of the post-roll, then copy the clip out of the ring (``event_end_s``:
        the end record's ``end_s``)."""
        opts = self.options
        start_s, end_s = record.start_s, event_end_s
        if end_s - start_s > opts.max_clip_s:  # keep the stretch around the peak
            start_s = min(max(record.peak_time_s - opts.max_clip_s / 2, start_s), end_s - opts.max_clip_s)
            end_s = start_s + opts.max_clip_s
        with self._cond:
            buf = self._streams.get(record.stream)
            if buf is None:
                raise SinkError(f"clips sink: no audio was fed for stream {record.stream!r}, so its "
                                f"{record.label} clip cannot be written")
            sr = buf.sample_rate
            want_a = max(0, int(round((start_s - opts.pre_roll_s) * sr)))
            want_b = int(round((end_s + opts.post_roll_s) * sr))
            def heard() -> bool:
                judged = buf.judged is None or buf.judged >= want_b  # speech in the post-roll is known
                return (buf.written >= want_b and judged) or buf.ended or self._closing

            if heard():
                pass
            elif buf.feeder == threading.get_ident():  # waiting here would wait for ourselves
                log.warning("clips sink: records are delivered in the thread that feeds %s, so the post-roll "
                            "cannot be awaited (use a threaded SinkSet)", record.stream)
            elif not self._cond.wait_for(heard, opts.wait_timeout_s):
                log.warning("clips sink: %s stalled; the %s clip ends %.1f s short of its post-roll",
                            record.stream, record.label, (want_b - buf.written) / sr)
            a, b = want_a, min(want_b, buf.written)
            if a < buf.oldest:  # overwritten already: the stretch nearest to it that is still held
                if buf.oldest >= int(round(event_end_s * sr)):
                    raise SinkError(f"clips sink: the audio of the {record.label} event at {record.start_s:.1f}-"
                                    f"{event_end_s:.1f} s of {record.stream} has left the buffer (detection "
                                    f"lagged behind the audio; raise buffer_slack_s: {LAG_HINT})")
                log.warning("clips sink: the %s clip of %s misses %.1f s that had left the buffer (detection "
                            "lagged behind the audio; raise buffer_slack_s: %s)", record.label, record.stream,
                            (buf.oldest - a) / sr, LAG_HINT)
                event_limit = int(round((event_end_s + opts.post_roll_s) * sr))
                a, b = buf.oldest, min(buf.oldest + (b - a), event_limit, buf.written)
            if b <= a:
                raise SinkError(f"clips sink: no audio of the {record.label} event at {record.start_s:.1f} s of "
                                f"{record.stream} was heard")
            samples = buf.read(a, b)
            lost = buf.lost_seconds(a, b)
            origin = buf.origin
            private = buf.private_in(a, b)
        if private and opts.private == "skip":
            log.info("clips sink: no clip of the %s event at %.1f s of %s: it touches %.1f s of speech",
                     record.label, record.start_s, record.stream, sum(e - s for s, e in private) / sr)
            return None, sr, origin, a
        for start, end in private:
            samples[start - a : end - a] = 0
        if lost > 0:
            log.warning("clips sink: the %s clip of %s has %.2f s of lost audio, written as silence",
                        record.label, record.stream, lost)
        return samples, sr, origin, a

    # -- retention -----------------------------------------------------------------------------------------

    def apply_retention(self, now: datetime | None = None) -> list[Path]:
        """Delete what the age and size rules say; returns the deleted paths. Safe from any thread."""
        opts = self.options
        max_bytes = None if opts.max_total_mb is None else opts.max_total_mb * 1e6
        deleted: list[Path] = []
        with self._retention_lock:
            clips = scan_clips(self.root)
            for clip, reason in select_for_deletion(clips, now or datetime.now(timezone.utc), opts.max_age_days,
                                                    max_bytes, opts.keep_best):
                try:
                    clip.path.unlink()
                except FileNotFoundError:
                    continue
                image_path(clip.path).unlink(missing_ok=True)
                deleted.append(clip.path)
                log.info("clips: deleted %s (%s)", clip.path, reason)
            if max_bytes is not None:
                gone = set(deleted)
                total = sum(c.size for c in clips if c.path not in gone)
                if total > max_bytes:
                    log.warning("clips: %s holds %.1f MB, over max_total_mb %g, but only the best clip of each "
                                "label is left (keep_best)", self.root, total / 1e6, opts.max_total_mb)
        return deleted

    def _janitor_loop(self) -> None:
        """Age limits hold even while no event happens (peers only clean up when they write)."""
        while not self._stop.wait(RETENTION_INTERVAL_S):
            try:
                self.apply_retention()
            except OSError as e:
                log.error("clips: retention in %s failed: %s", self.root, e)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        if self._janitor is not None:
            self._janitor.join(5.0)
        self._lock.release()
