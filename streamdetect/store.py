"""The event store: the sqlite schema and every query on it.

The sqlite sink writes records here; ``streamdetect events`` lists them, ``feedback`` marks them and ``refine``
learns from the marks. Keeping the schema and the SQL in one module means a new column or query is written once.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import sys
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
                 "interrupted": "INTEGER NOT NULL DEFAULT 0",  # 1: an end written at restart after a crash
                 "private": "INTEGER"}  # 1: the event overlapped speech (privacy filter); NULL: filter off
COLUMNS = ("time", "label", "phase", "stream", "start_s", "end_s", "peak_score", "peak_time_s", "id", "top",
           "interrupted")


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
            "time, top, embedding, private, interrupted) VALUES (:id, :phase, :label, :stream, :start_s, :end_s, "
            ":peak_score, :peak_time_s, :time, :top, :embedding, :private, :interrupted)",
            {"private": None, "interrupted": False, **row})


def open_starts(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """``start`` rows without an ``end`` row of the same id: events a crash left open."""
    columns = ("id", "label", "stream", "start_s", "peak_score", "peak_time_s", "time", "top")
    rows = db.execute(f"SELECT {', '.join('s.' + c for c in columns)} FROM records s WHERE s.phase = 'start' "
                      "AND NOT EXISTS (SELECT 1 FROM records e WHERE e.id = s.id AND e.phase = 'end') "
                      "ORDER BY s.time").fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]


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


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that also works for a user who may read the database but not write its folder.

    ``mode=ro`` on a WAL database needs its ``-shm`` file: while the daemon runs, ``-wal`` and ``-shm`` exist
    and a reader with read permission uses them (the unit's UMask 0027 makes them group-readable). After a
    clean stop SQLite has folded the log into the database and removed both, and a reader that cannot create
    ``-shm`` gets "attempt to write a readonly database"; then the file is opened ``immutable=1``, which reads
    the database file alone, and that file then holds every record. Only a ``-wal`` the reader cannot use
    (left by a crash, or unreadable for it) means recent records may be missing: that is said on stderr.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no event database at {path} (a `sqlite` sink writes one)")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"cannot read {path} as user {pwd.getpwuid(os.geteuid()).pw_name}: the service's group (the unit's "
                              "UMask makes its files group-readable) or root can")
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        print(f"warning: reading {path} without its write-ahead log {wal} (you cannot write {path.parent} or "
              "read the log): records written since the last checkpoint may be missing", file=sys.stderr)
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def query_events(path: Path, label: str | None = None, since: str | None = None, until: str | None = None,
                 limit: int | None = None) -> list[dict]:
    db = open_read_only(path)
    clauses, params = [], []
    for column, op, value in (("label", "=", label), ("time", ">=", since), ("time", "<=", until)):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    # a database written before a column existed (read-only here, so never upgraded) reads as its default
    selected = [c if c in have else f"{'0' if c == 'interrupted' else 'NULL'} AS {c}" for c in COLUMNS]
    sql = f"SELECT {', '.join(selected)} FROM records"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY time, label" + (f" LIMIT {int(limit)}" if limit else "")
    try:
        return [dict(zip(COLUMNS, row, strict=True)) for row in db.execute(sql, params)]
    finally:
        db.close()


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
