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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from streamdetect.analysis.embedding_log import HOUR_FORMAT, chunk_hour
from streamdetect.pipeline.results import WindowResult
from streamdetect.util.files import atomic_write
from streamdetect.util.locks import PathLock
from streamdetect.util.names import safe_name
from streamdetect.util.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class _Row:
    stream: str
    start_s: float
    end_s: float
    wall: float
    embedding: np.ndarray


class EmbeddingLogWriter:
    """Background writer of window embeddings; ``window`` never blocks the inference thread."""

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

    def window(self, result: WindowResult) -> None:
        """A listener of the detector: logs each encoded window's embedding (none of gated or private windows,
        and none at all where ``privacy.store_audio`` is off)."""
        if result.embedding is None or not result.store_audio:
            return
        try:
            self.queue.put_nowait(_Row(result.stream, result.start_s, result.end_s, result.wall,
                                       np.asarray(result.embedding, dtype=np.float16)))
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
                row: _Row | str | None = self.queue.get(
                    timeout=max(0.05, self.flush_s - (time.monotonic() - last_flush)))
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
                hour = datetime.fromtimestamp(row.wall, timezone.utc).strftime(HOUR_FORMAT)
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
            if chunk_hour(path) + 3600 < cutoff:
                path.unlink(missing_ok=True)

