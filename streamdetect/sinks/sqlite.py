"""An event store that survives restarts: one SQLite table of records (WAL mode), indexed by time and label,
and the query behind ``streamdetect events``."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from pydantic import Field

from streamdetect.events import EventRecord
from streamdetect.sinks.base import Sink, SinkOptions

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT NOT NULL, phase TEXT NOT NULL, label TEXT NOT NULL, stream TEXT NOT NULL,
    start_s REAL NOT NULL, end_s REAL, peak_score REAL NOT NULL, peak_time_s REAL NOT NULL,
    time TEXT NOT NULL, top TEXT NOT NULL,
    PRIMARY KEY (id, phase)
);
CREATE INDEX IF NOT EXISTS records_time ON records (time);
CREATE INDEX IF NOT EXISTS records_label_time ON records (label, time);
"""
# Added after the first release; ``connect`` adds them to older databases.
EXTRA_COLUMNS = {"embedding": "BLOB", "feedback": "TEXT", "feedback_time": "TEXT"}
COLUMNS = ("time", "label", "phase", "stream", "start_s", "end_s", "peak_score", "peak_time_s", "id", "top")


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    with db:
        for name, kind in EXTRA_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE records ADD COLUMN {name} {kind}")
    return db


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
        with self._lock, self.db:  # one transaction per record: a crash loses at most the record in flight
            self.db.execute(
                "INSERT OR IGNORE INTO records (id, phase, label, stream, start_s, end_s, peak_score, peak_time_s, "
                "time, top, embedding) VALUES (:id, :phase, :label, :stream, :start_s, :end_s, :peak_score, "
                ":peak_time_s, :time, :top, :embedding)", row)

    def close(self) -> None:
        self.db.close()


def parse_when(text: str, now: datetime | None = None) -> str:
    """'7d', '12h', '30m' (ago) or an ISO-8601 time -> ISO-8601 UTC string comparable with stored times."""
    now = now or datetime.now(timezone.utc)
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return (now - timedelta(**{units[text[-1]]: float(text[:-1])})).isoformat(timespec="milliseconds")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO-8601 time nor an age like 7d, 12h, 30m") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def query_events(path: Path, label: str | None = None, since: str | None = None, until: str | None = None,
                 limit: int | None = None) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"no event database at {path} (a `sqlite` sink writes one)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    clauses, params = [], []
    for column, op, value in (("label", "=", label), ("time", ">=", since), ("time", "<=", until)):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM records"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY time, label" + (f" LIMIT {int(limit)}" if limit else "")
    try:
        return [dict(zip(COLUMNS, row, strict=True)) for row in db.execute(sql, params)]
    finally:
        db.close()
