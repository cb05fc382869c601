"""The sqlite sink: every record into the event store (``streamdetect.store``), which survives restarts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from pydantic import Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkOptions
from streamdetect.store import connect, insert_record


class SqliteOptions(SinkOptions):
    path: str = Field("events/events.db", min_length=1, description="database file (created if missing); "
                      "the `events`, `feedback` and `refine` verbs read this path by default")


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

    def close(self) -> None:
        self.db.close()
