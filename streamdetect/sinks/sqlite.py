"""The sqlite sink: every record into the event store (``streamdetect.store``), which survives restarts."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np
from pydantic import Field

from streamdetect.pipeline.events import EventRecord, LabelScore
from streamdetect.sinks.base import Sink, SinkOptions
from streamdetect.store import connect, copy_records, insert_record, open_starts
from streamdetect.util.writable import OutputPath

log = logging.getLogger(__name__)

# The sink only appends; the few reads (open events at start-up, a copy after the file was removed) are rare.
# SQLite's default 2000 KiB cache filled over the first 5 h of the full-size soak and showed there as RSS growth.
WRITER_PAGE_CACHE_KIB = 256


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class SqliteOptions(SinkOptions):
    path: str = Field("events/events.db", min_length=1, description="database file (created if missing); "
                      "the `events`, `feedback` and `refine` verbs read this path by default")


class SqliteSink(Sink[SqliteOptions]):
    Options = SqliteOptions

    def __init__(self, options: SqliteOptions):
        super().__init__(options)
        self.path = Path(options.path)
        self.reopened = 0  # times the file was found deleted or replaced and opened again
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path, page_cache_kib=WRITER_PAGE_CACHE_KIB)
        self._identity = _identity(self.path)

    def _still_ours(self) -> None:
        """Open the file again if it was deleted or replaced under us (its folder removed mid-run, say).
        sqlite keeps writing to the unlinked file otherwise, and every record after that is lost unseen."""
        if _identity(self.path) == self._identity:
            return
        self.reopened += 1
        old = self.db
        self._open()
        try:
            saved = copy_records(old, self.db)
        except sqlite3.Error as e:
            saved = 0
            log.error("sqlite sink: the records in the removed %s could not be read back: %s", self.path, e)
        finally:
            old.close()
        log.error("sqlite sink: %s was deleted or replaced while running (%d time(s) so far); created it again "
                  "and copied the %d record(s) of the removed file into it", self.path, self.reopened, saved)

    @classmethod
    def outputs(cls, options: SqliteOptions) -> list[OutputPath]:
        return [OutputPath("path", Path(options.path), "file", "sqlite database")]  # and its -wal, -shm files

    def emit(self, record: EventRecord) -> None:
        row = record.to_dict()
        row["top"] = json.dumps(row["top"])
        row["sounds_like"] = json.dumps(row["sounds_like"]) if "sounds_like" in row else None
        # The peak window's embedding (float16), so `streamdetect refine` can learn from feedback later.
        row["embedding"] = (None if record.embedding is None
                            else np.asarray(record.embedding, dtype=np.float16).tobytes())
        with self._lock:
            self._still_ours()
            insert_record(self.db, row)

    def left_open(self) -> list[EventRecord]:
        with self._lock:
            rows = open_starts(self.db)
        return [EventRecord(id=r["id"], label=r["label"], phase="start", start_s=r["start_s"], end_s=None,
                            peak_score=r["peak_score"], peak_time_s=r["peak_time_s"], stream=r["stream"],
                            time=r["time"], top=tuple(LabelScore(**t) for t in json.loads(r["top"])))
                for r in rows]

    def close(self) -> None:
        self.db.close()
