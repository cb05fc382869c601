"""Every analysed window's embedding on disk, so sounds that were never configured as events can be searched later.

The inference thread only appends to a bounded queue (a full queue drops the window and counts it); a writer
thread groups windows into chunk files ``<dir>/<model key>/<stream>/<YYYYMMDDTHH>-<n>.npz`` (float16
embeddings, stream start/end seconds, wall time as epoch seconds), written atomically, one per stream and
hour at most every ``flush_s`` seconds, and deletes chunks older than ``max_days``. The model key keeps
embeddings of different models apart: they are not comparable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from streamdetect.model.manifest import AUDIO_ENCODER, ModelBundle
from streamdetect.util.files import atomic_write
from streamdetect.util.locks import PathLock
from streamdetect.util.names import safe_name
from streamdetect.util.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)


def log_key(bundle: ModelBundle) -> str:
    """The model's fp32 audio encoder hash: the int8 encoder's embeddings are comparable (cosine >= 0.999)."""
    return bundle.manifest["files"][AUDIO_ENCODER]

_HOUR_FORMAT = "%Y%m%dT%H"


def _epoch(iso: str) -> float:
    when = datetime.fromisoformat(iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


@dataclass(frozen=True)
class _Row:
    stream: str
    start_s: float
    end_s: float
    wall: float
    embedding: np.ndarray


class EmbeddingLogWriter:
    """Background writer of window embeddings; ``add`` never blocks the inference thread."""

    def __init__(self, directory: Path, model_key: str, max_days: float = 30.0, queue_windows: int = 10_000,
                 flush_s: float = 60.0):
        self.root = Path(directory) / model_key[:16]
        self.root.mkdir(parents=True, exist_ok=True)
        # One writer per log: two would write chunk files of the same names over each other.
        self._lock = PathLock(Path(directory) / ".streamdetect-embedding-log.lock",
                              f"the embedding log {directory} (embedding_log.dir)")
        self.max_days, self.flush_s = max_days, flush_s
        self.queue: queue.Queue[_Row | None] = queue.Queue(maxsize=queue_windows)
        self.dropped = 0
        self.written = 0
        self._behind_log = RateLimitedLog(log, 60.0)  # a writer that is behind stays behind for many windows
        self._thread = threading.Thread(target=self._run, name="embedding-log", daemon=True)
        self._thread.start()

    def add(self, stream: str, start_s: float, end_s: float, wall_time: str, embedding: np.ndarray) -> None:
        try:
            self.queue.put_nowait(_Row(stream, start_s, end_s, _epoch(wall_time),
                                       np.asarray(embedding, dtype=np.float16)))
        except queue.Full:
            self.dropped += 1
            self._behind_log("embedding log: writer is behind, %d window(s) not logged", self.dropped)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        self.queue.put(None)
        self._thread.join(timeout_s)
        self._lock.release()

    def _run(self) -> None:
        pending: dict[tuple[str, str], list[_Row]] = {}
        last_flush = time.monotonic()
        self._prune()
        while True:
            try:
                row = self.queue.get(timeout=max(0.05, self.flush_s - (time.monotonic() - last_flush)))
            except queue.Empty:
                row = "tick"
            if row is None or row == "tick" or time.monotonic() - last_flush >= self.flush_s:
                for key, rows in pending.items():
                    self._write(key, rows)
                pending, last_flush = {}, time.monotonic()
                if row == "tick":
                    self._prune()
            if row is None:
                return
            if isinstance(row, _Row):
                hour = datetime.fromtimestamp(row.wall, timezone.utc).strftime(_HOUR_FORMAT)
                pending.setdefault((row.stream, hour), []).append(row)

    def _write(self, key: tuple[str, str], rows: list[_Row]) -> None:
        stream, hour = key
        # Readers take the stream's name from the chunk itself, so the folder only keeps streams apart: older
        # versions put "a b" and "a_b" into one folder, which read_log still reads correctly.
        folder = self.root / safe_name(stream)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / f"{hour}-{time.time_ns()}.npz", lambda fh: np.savez(
                fh, stream=np.array(stream), start_s=np.array([r.start_s for r in rows]),
                end_s=np.array([r.end_s for r in rows]), wall=np.array([r.wall for r in rows]),
                embeddings=np.stack([r.embedding for r in rows])))
            self.written += len(rows)
        except OSError as e:  # a full disk must not stop detection; say so and count the loss
            self.dropped += len(rows)
            log.error("embedding log: cannot write %d window(s) to %s (%s)", len(rows), folder, e)

    def _prune(self) -> None:
        cutoff = time.time() - self.max_days * 86400
        for path in self.root.glob("*/*.npz"):
            if _chunk_hour(path) + 3600 < cutoff:
                path.unlink(missing_ok=True)


def _chunk_hour(path: Path) -> float:
    try:
        return datetime.strptime(path.name[:11], _HOUR_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return float("inf")  # not ours: never deleted


@dataclass
class LoggedWindows:
    streams: np.ndarray  # (n,) stream names
    starts_s: np.ndarray
    ends_s: np.ndarray
    wall: np.ndarray  # epoch seconds
    embeddings: np.ndarray  # (n, dim) float16


def read_log(directory: Path, model_key: str, since: float | None = None, until: float | None = None,
             ) -> LoggedWindows:
    """Logged windows of this model whose wall time lies in ``[since, until]`` (epoch seconds)."""
    root = Path(directory) / model_key[:16]
    if not root.is_dir():
        others = sorted(p.name for p in Path(directory).glob("*") if p.is_dir())
        raise FileNotFoundError(f"no embedding log of this model in {directory}"
                                + (f" (there are logs of other models: {', '.join(others)})" if others else ""))
    parts: list[LoggedWindows] = []
    for path in sorted(root.glob("*/*.npz")):
        hour = _chunk_hour(path)
        if (since is not None and hour + 3600 < since) or (until is not None and hour > until):
            continue  # the whole chunk lies outside the range
        with np.load(path, allow_pickle=False) as data:
            keep = np.ones(data["wall"].shape, bool)
            if since is not None:
                keep &= data["wall"] >= since
            if until is not None:
                keep &= data["wall"] <= until
            parts.append(LoggedWindows(np.full(int(keep.sum()), str(data["stream"]), dtype=object),
                                       data["start_s"][keep], data["end_s"][keep], data["wall"][keep],
                                       data["embeddings"][keep]))
    if not parts:
        return LoggedWindows(np.zeros(0, object), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0), np.float16))
    return LoggedWindows(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("streams", "starts_s", "ends_s", "wall", "embeddings")))


@dataclass(frozen=True)
class Stretch:
    """A run of adjacent logged windows of one stream that match the query."""

    stream: str
    score: float  # best window's cosine
    start_s: float
    end_s: float
    time_from: str  # ISO wall time of the first window's end and the last window's end
    time_to: str
    windows: int


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def stretches(logged: LoggedWindows, scores: np.ndarray, top: int = 10, drop: float = 0.5) -> Iterator[Stretch]:
    """Best windows first, each grown over its stream's neighbouring windows that score above
    ``best - drop * (best - median score)``.

    The margin is relative to how far the best window stands out from a typical one, because the spread of
    cosine scores differs a lot between models and queries. Neighbours are windows of the same stream that
    overlap or touch in stream time; a window used by one stretch is not reported again.
    """
    typical = float(np.median(scores)) if scores.size else 0.0
    used = np.zeros(scores.shape[0], bool)
    order: dict[str, np.ndarray] = {}
    for name in set(logged.streams.tolist()):
        idx = np.flatnonzero(logged.streams == name)
        order[name] = idx[np.lexsort((logged.starts_s[idx], logged.wall[idx]))]
    found = 0
    for best in np.argsort(-scores, kind="stable"):
        if found >= top:
            return
        if used[best]:
            continue
        name = logged.streams[best]
        seq = order[name]
        pos = int(np.flatnonzero(seq == best)[0])
        lo = hi = pos
        floor = scores[best] - drop * max(float(scores[best]) - typical, 0.0)

        def fits(k: int, floor: float = floor) -> bool:
            return not used[k] and scores[k] >= floor

        def adjacent(earlier: int, later: int) -> bool:
            return logged.starts_s[earlier] <= logged.starts_s[later] <= logged.ends_s[earlier] + 1e-6

        while lo > 0 and fits(seq[lo - 1]) and adjacent(seq[lo - 1], seq[lo]):
            lo -= 1
        while hi + 1 < len(seq) and fits(seq[hi + 1]) and adjacent(seq[hi], seq[hi + 1]):
            hi += 1
        members = seq[lo : hi + 1]
        used[members] = True
        found += 1
        yield Stretch(str(name), round(float(scores[best]), 6), float(logged.starts_s[members].min()),
                      float(logged.ends_s[members].max()), _iso(float(logged.wall[members].min())),
                      _iso(float(logged.wall[members].max())), int(members.size))
