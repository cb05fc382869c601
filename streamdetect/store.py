"""The event store: the sqlite schema and every query on it.

The sqlite sink writes records here; ``streamdetect events`` lists them, ``feedback`` marks them and ``refine``
learns from the marks. Keeping the schema and the SQL in one module means a new column or query is written once.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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
EXTRA_COLUMNS = {"embedding": "BLOB", "feedback": "TEXT", "feedback_time": "TEXT",
                 "private": "INTEGER"}  # 1: the event overlapped speech (privacy filter); NULL: filter off
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


def insert_record(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    """One record in its own transaction: a crash loses at most the record in flight."""
    with db:
        db.execute(
            "INSERT OR IGNORE INTO records (id, phase, label, stream, start_s, end_s, peak_score, peak_time_s, "
            "time, top, embedding, private) VALUES (:id, :phase, :label, :stream, :start_s, :end_s, :peak_score, "
            ":peak_time_s, :time, :top, :embedding, :private)", {"private": None, **row})


def events_matching(db: sqlite3.Connection, id_prefix: str) -> list[tuple[str, str]]:
    """(id, label) of every event whose id starts with ``id_prefix``."""
    return db.execute("SELECT DISTINCT id, label FROM records WHERE id LIKE ? || '%'", (id_prefix,)).fetchall()


def set_feedback(db: sqlite3.Connection, event_id: str, verdict: str, when: str) -> None:
    with db:
        db.execute("UPDATE records SET feedback = ?, feedback_time = ? WHERE id = ?", (verdict, when, event_id))


def marked_records(db: sqlite3.Connection, label: str) -> list[tuple[str, str, str, bytes | None]]:
    """(id, phase, verdict, embedding) of the marked records of a label, each event's ``end`` row last."""
    return db.execute("SELECT id, phase, feedback, embedding FROM records WHERE label = ? AND feedback IS NOT "
                      "NULL ORDER BY id, phase = 'end'", (label,)).fetchall()


def parse_when(text: str, now: datetime | None = None) -> str:
    """'7d', '12h', '30m' (ago) or an ISO-8601 time -> ISO-8601 UTC string comparable with stored times.

    Raises ``ValueError`` with a message for the user, also for ages no calendar holds (``99999999999d``,
    ``1e400h``, ``nand``)."""
    now = now or datetime.now(timezone.utc)
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        amount = float(text[:-1])
        try:
            return (now - timedelta(**{units[text[-1]]: amount})).isoformat(timespec="milliseconds")
        except (OverflowError, ValueError):
            raise ValueError(f"{text!r} reaches back before the year 1; give a shorter age or an ISO-8601 time"
                             ) from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO-8601 time nor an age like 7d, 12h, 30m") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


class StoreError(RuntimeError):
    """An event database that is missing, is not SQLite, or was not written by a `sqlite` sink."""


def query_events(path: Path, label: str | None = None, since: str | None = None, until: str | None = None,
                 limit: int | None = None, newest_first: bool = False) -> list[dict]:
    """Records in time order (``newest_first``: the other way); ``limit`` keeps the newest ``limit`` of them."""
    if not path.is_file():
        raise StoreError(f"no event database at {path} (a `sqlite` sink writes one)")
    if limit is not None and limit < 1:
        raise StoreError(f"--limit must be at least 1 (found {limit}); leave it out for every record")
    clauses, params = [], []
    for column, op, value in (("label", "=", label), ("time", ">=", since), ("time", "<=", until)):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    sql = f"SELECT {', '.join(COLUMNS)} FROM records"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY time DESC, label DESC" + (f" LIMIT {int(limit)}" if limit else "")
    try:
        db = connect_readonly(path)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {path} ({e})") from None
    try:
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in db.execute(sql, params)]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e) or "no such column" in str(e):
            raise StoreError(f"{path} is an SQLite database but holds no streamdetect records table ({e}); "
                             "give the `path` of a `sqlite` sink") from None
        raise StoreError(f"cannot read {path} ({e})") from None
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not an SQLite database ({e}); give the `path` of a `sqlite` sink") from None
    finally:
        db.close()
    return rows if newest_first else rows[::-1]


def records_between(path: Path, since: str, until: str) -> list[dict]:
    """Every record with ``since <= time <= until`` (ISO-8601 strings), with its feedback and privacy mark."""
    if not path.is_file():
        raise FileNotFoundError(f"no event database at {path} (a `sqlite` sink writes one)")
    db = connect_readonly(path)
    names = ("id", "phase", "label", "stream", "time", "peak_score", "feedback", "private")
    have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    columns = [n if n in have else f"NULL AS {n}" for n in names]  # a store from before these columns
    try:
        rows = db.execute(f"SELECT {', '.join(columns)} FROM records WHERE time >= ? AND time <= ? ORDER BY time",
                          (since, until)).fetchall()
    finally:
        db.close()
    return [dict(zip(names, row, strict=True)) for row in rows]


def connect_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
