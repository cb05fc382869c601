"""The sqlite sink: every record into the event store (``streamdetect.store``), which survives restarts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from pydantic import Field

from streamdetect.pipeline.events import EventRecord, LabelScore
from streamdetect.sinks.base import Sink, SinkOptions
from streamdetect.store import connect, insert_record, open_starts


class SqliteOptions(SinkOptions):
    path: str = Field("events.db", min_length=1, description="database file (created if missing)")


class SqliteSink(Sink):
    Options = SqliteOptions

    def __init__(self, options: SqliteOptions):
        super().__init__(options)
        Path(options.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(Path(options.path))
        self._lock = threading.Lock()

    def emit(self, record: EventRecord) -> None:
        row = record.to_dict()
        row["top"] = json.dumps(row["top"])
        # The peak window's embedding (float16), so `streamdetect refine` can learn from feedback later.
        row["embedding"] = (None if record.embedding is None
                            else np.asarray(record.embedding, dtype=np.float16).tobytes())
        with self._lock:
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
