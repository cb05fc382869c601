"""The event store: the sqlite schema and every query on it.

The sqlite sink writes records here; ``streamdetect events`` lists them, ``feedback`` marks them and ``refine``
learns from the marks. Keeping the schema and the SQL in one module means a new column or query is written once.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from streamdetect.util.times import datetime_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT NOT NULL, phase TEXT NOT NULL, label TEXT NOT NULL, stream TEXT NOT NULL,
    start_s REAL NOT NULL, end_s REAL, peak_score REAL NOT NULL, peak_time_s REAL NOT NULL,
    time TEXT NOT NULL, top TEXT NOT NULL,
    PRIMARY KEY (id, phase)
);
CREATE INDEX IF NOT EXISTS records_time ON records (time);
CREATE INDEX IF NOT EXISTS records_label_time ON records (label, time);
CREATE INDEX IF NOT EXISTS records_phase_time ON records (phase, time);
CREATE INDEX IF NOT EXISTS records_stream_time ON records (stream, time);
"""
# Added after the first release; ``connect`` adds them to older databases.
EXTRA_COLUMNS = {"embedding": "BLOB", "feedback": "TEXT", "feedback_time": "TEXT", "sounds_like": "TEXT",
                 "relabel": "TEXT",
                 "private": "INTEGER",  # 1: the event overlapped speech (privacy filter); NULL: filter off
                 "interrupted": "INTEGER NOT NULL DEFAULT 0"}  # 1: an end written at restart after a crash
COLUMNS = ("time", "label", "phase", "stream", "start_s", "end_s", "peak_score", "peak_time_s", "id", "top",
           "feedback", "interrupted")


def connect(path: Path, page_cache_kib: int | None = None, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """``page_cache_kib`` bounds this connection's page cache (SQLite's default is 2000 KiB). The cache only
    fills once the file outgrows it, so a daemon's RSS keeps rising for as long as that takes: about 1,300
    records, 5 hours of the soak (docs/operations/reliability.md). An append-only writer reads almost nothing
    back and can make that bound small, and so reach it within minutes."""
    db = sqlite3.connect(path, check_same_thread=False, timeout=busy_timeout_s)
    if page_cache_kib is not None:
        db.execute(f"PRAGMA cache_size = -{int(page_cache_kib)}")  # negative: a size in KiB, not in pages
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    with db:
        for name, kind in EXTRA_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE records ADD COLUMN {name} {kind}")
    return db


# Which file is the store a sink opened. ``application_id`` says "a streamdetect store" and ``user_version`` holds
# a random number drawn when a sink first opens the file: a store copied over ours (another station's, say) has
# our application_id but not our number. Both sit in the file's first 100 bytes, read without SQLite.
APPLICATION_ID = 0x53446574  # "SDet"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class StoreHeader:
    """What the first 100 bytes of a file say: ``sqlite`` (the magic string), ``application_id``,
    ``user_version``; ``size`` is the file's length (0: an empty file, which any SQLite store may become)."""

    size: int
    sqlite: bool
    application_id: int
    user_version: int


def read_header(path: Path) -> StoreHeader | None:
    """The header of the file at ``path``, or None if there is none. Never for a file this process has open in
    SQLite: closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included
    (sqlite.org/howtocorrupt.html, 2.2); a writer reads its own file's header with ``header_of``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return header_of(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def header_of(fd: int) -> StoreHeader:
    """The header of the file open as ``fd`` (read in place: no descriptor opened or closed)."""
    head, size = os.pread(fd, 100, 0), os.fstat(fd).st_size
    whole = len(head) == 100 and head.startswith(SQLITE_MAGIC)
    return StoreHeader(size, whole, int.from_bytes(head[68:72], "big") if whole else 0,
                       int.from_bytes(head[60:64], "big") if whole else 0)


def foreign_store(path: Path) -> str | None:
    """Why the non-empty file at ``path`` is not a store a sink may write into, or None if it may: not SQLite, an
    SQLite file of another application, or one with tables but no ``records``."""
    header = read_header(path)
    if header is None or header.size == 0:
        return None
    if not header.sqlite:
        return "it is not an SQLite database"
    if header.application_id not in (0, APPLICATION_ID):
        return f"it is the SQLite database of another application (application_id {header.application_id:#x})"
    if header.application_id == 0:
        db = connect_readonly(path)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            return f"it cannot be read ({e})"
        finally:
            db.close()
        if tables and "records" not in tables:
            return f"it is an SQLite database with other tables ({', '.join(sorted(tables)[:5])})"
    return None


def claim(db: sqlite3.Connection, tag: int) -> None:
    """Mark the store a sink writes as a streamdetect store with ``tag`` (its ``user_version``, if it has none
    yet), and write the header to the file at once (a checkpoint), so that ``read_header`` finds it there."""
    if db.execute("PRAGMA user_version").fetchone()[0] == 0:
        db.execute(f"PRAGMA user_version = {int(tag)}")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    # PASSIVE: as far as readers allow, without waiting for them (TRUNCATE waited the whole busy timeout, 30 s,
    # for a reader such as the dashboard to finish, and held up the daemon's start); what a reader holds back
    # reaches the file at a later checkpoint
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def close_without_checkpoint(db: sqlite3.Connection) -> None:
    """Close a WAL connection without writing its log into the database file.

    Closing the last connection to a WAL database copies the log into the file by name of its open descriptor.
    When the file at the path is no longer the one the sink opened but was overwritten in place (``cp other.db
    events.db``, ``echo junk > events.db``), that copy would write this connection's pages into the new file
    and destroy it. ``SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`` turns that off: Python 3.12 offers it as
    ``setconfig``; on 3.11 it is called through ctypes on the connection's ``sqlite3*`` (the first field after
    the object header in CPython's connection object), in the libsqlite3 this process already uses."""
    setconfig = getattr(db, "setconfig", None)
    if setconfig is not None:
        setconfig(getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE"), True)  # noqa: B009 - Python 3.12+ only
    else:
        import _sqlite3
        import ctypes

        handle = ctypes.c_void_p.from_address(id(db) + object.__basicsize__).value
        done = ctypes.c_int(0)
        lib = ctypes.CDLL(_sqlite3.__file__)
        if lib.sqlite3_db_config(ctypes.c_void_p(handle), 1006, ctypes.c_int(1), ctypes.byref(done)) != 0 \
                or done.value != 1:
            raise sqlite3.OperationalError("cannot turn off the checkpoint on close")
    db.close()


def insert_record(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    """One record in its own transaction: a crash loses at most the record in flight."""
    with db:
        db.execute(
            "INSERT OR IGNORE INTO records (id, phase, label, stream, start_s, end_s, peak_score, peak_time_s, "
            "time, top, embedding, sounds_like, private, interrupted) VALUES (:id, :phase, :label, :stream, "
            ":start_s, :end_s, :peak_score, :peak_time_s, :time, :top, :embedding, :sounds_like, :private, "
            ":interrupted)", {"sounds_like": None, "private": None, "interrupted": False, **row})


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


def set_feedback(db: sqlite3.Connection, event_id: str, verdict: str, when: str, relabel: str | None = None) -> None:
    """Mark an event; ``relabel`` (with a ``rejected`` verdict) names the label it really is."""
    with db:
        db.execute("UPDATE records SET feedback = ?, feedback_time = ?, relabel = ? WHERE id = ?",
                   (verdict, when, relabel, event_id))


def marked_records(db: sqlite3.Connection, label: str) -> list[tuple[str, str, str, bytes | None]]:
    """(id, phase, verdict, embedding) of the marked records of a label, each event's ``end`` row last; an event
    of another label relabelled as this one counts as confirmed."""
    return db.execute("SELECT id, phase, CASE WHEN label = ? THEN feedback ELSE 'confirmed' END, embedding "
                      "FROM records WHERE (label = ? AND feedback IS NOT NULL) OR relabel = ? "
                      "ORDER BY id, phase = 'end'", (label, label, label)).fetchall()


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
        when = datetime_of(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO-8601 time nor an age like 7d, 12h, 30m") from None
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
    try:
        db = connect_readonly(path)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {path} ({e})") from None
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        # a database from before a column existed reads it as its default (a reader cannot upgrade it); no
        # columns at all: no records table, which the query below reports
        selected = [c if c in have or not have else f"{'0' if c == 'interrupted' else 'NULL'} AS {c}"
                    for c in COLUMNS]
        sql = f"SELECT {', '.join(selected)} FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY time DESC, label DESC" + (f" LIMIT {int(limit)}" if limit else "")
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
    """A read-only connection that also works for a user who may read the database but not write its folder.

    ``mode=ro`` on a WAL database needs its ``-shm`` file: while the daemon runs, ``-wal`` and ``-shm`` exist
    and a reader with read permission uses them (the unit's UMask 0027 makes them group-readable). After a
    clean stop SQLite has folded the log into the database and removed both, and a reader that cannot create
    ``-shm`` gets "attempt to write a readonly database"; then the file is opened ``immutable=1``, which reads
    the database file alone, and that file then holds every record. Only a ``-wal`` the reader cannot use
    (left by a crash, or unreadable for it) means recent records may be missing: that is said on stderr.
    """
    if path.is_file() and not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {path} as user {pwd.getpwuid(os.geteuid()).pw_name}: the service's group "
                         "(the unit's UMask makes its files group-readable) or root can")
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.DatabaseError as e:
        db.close()
        if "readonly" not in str(e):  # not the missing -shm: let the caller say what is wrong with the file
            return sqlite3.connect(f"{uri}?mode=ro", uri=True)
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        print(f"warning: reading {path} without its write-ahead log {wal} (you cannot write {path.parent} or "
              "read the log): records written since the last checkpoint may be missing", file=sys.stderr)
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


# One row per event for the dashboard: its ``start`` row, with the extent and peak of its ``end`` row once there
# is one. The (phase, time) index serves the newest-first listing; the primary key serves the join.
_EVENT_SELECT = (
    "SELECT s.id, s.label, s.stream, s.time, s.start_s, e.end_s, COALESCE(e.peak_score, s.peak_score), "
    "COALESCE(e.peak_time_s, s.peak_time_s), COALESCE(e.top, s.top), COALESCE(e.sounds_like, s.sounds_like), "
    "s.feedback, s.relabel, e.time FROM records s LEFT JOIN records e ON e.id = s.id AND e.phase = 'end' "
    "WHERE s.phase = 'start'")
EVENT_FIELDS = ("id", "label", "stream", "time", "start_s", "end_s", "peak_score", "peak_time_s", "top",
                "sounds_like", "feedback", "relabel", "end_time")
REVIEW_STATES = {"any": "", "unreviewed": "s.feedback IS NULL", "reviewed": "s.feedback IS NOT NULL",
                 "confirmed": "s.feedback = 'confirmed'", "rejected": "s.feedback = 'rejected'"}


@dataclass(frozen=True)
class EventFilter:
    """What the events list shows; ``before`` is the (time, id) of the last row of the previous page."""

    label: str | None = None
    stream: str | None = None
    since: str | None = None
    until: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    review: str = "any"
    before: tuple[str, str] | None = None


def _event_dict(row: tuple) -> dict[str, Any]:
    out = dict(zip(EVENT_FIELDS, row, strict=True))
    out["top"] = json.loads(out["top"]) if out["top"] else []
    out["sounds_like"] = json.loads(out["sounds_like"]) if out["sounds_like"] else []
    return out


def list_events(db: sqlite3.Connection, where: EventFilter, limit: int = 50) -> list[dict[str, Any]]:
    """Events newest first (keyset pages: an offset would make deep pages scan every row before them)."""
    if where.review not in REVIEW_STATES:
        raise ValueError(f"review must be one of {', '.join(REVIEW_STATES)}, found {where.review!r}")
    clauses, params = [REVIEW_STATES[where.review]] if where.review != "any" else [], []
    for sql, value in (("s.label = ?", where.label), ("s.stream = ?", where.stream), ("s.time >= ?", where.since),
                       ("s.time <= ?", where.until),
                       ("COALESCE(e.peak_score, s.peak_score) >= ?", where.min_score),
                       ("COALESCE(e.peak_score, s.peak_score) <= ?", where.max_score)):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    if where.before is not None:
        clauses.append("(s.time < ? OR (s.time = ? AND s.id < ?))")
        params += [where.before[0], where.before[0], where.before[1]]
    sql = _EVENT_SELECT + "".join(f" AND {c}" for c in clauses) + " ORDER BY s.time DESC, s.id DESC LIMIT ?"
    return [_event_dict(row) for row in db.execute(sql, [*params, int(limit)])]


def get_event(db: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    row = db.execute(_EVENT_SELECT + " AND s.id = ?", (event_id,)).fetchone()
    return _event_dict(row) if row is not None else None


def _distinct(db: sqlite3.Connection, column: str) -> list[str]:
    """The distinct values of an indexed column by hopping through the index (a few lookups per value), where
    ``SELECT DISTINCT`` would read every row."""
    sql = (f"WITH RECURSIVE v(x) AS (SELECT MIN({column}) FROM records UNION ALL SELECT (SELECT MIN({column}) "
           f"FROM records WHERE {column} > x) FROM v WHERE x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL")
    return [r[0] for r in db.execute(sql)]


def event_streams(db: sqlite3.Connection) -> tuple[list[str], list[str]]:
    """The labels and streams that occur in the store, for the filters."""
    return _distinct(db, "label"), _distinct(db, "stream")


def activity(db: sqlite3.Connection, since: str, offset_min: int = 0) -> list[tuple[str, str, int, int]]:
    """(label, local day, local hour, events) since ``since``, counting each event once and leaving out the
    ones a reviewer rejected (false positives must not show up as activity)."""
    shift = f"{int(offset_min):+d} minutes"
    return db.execute(
        "SELECT label, date(time, ?), CAST(strftime('%H', time, ?) AS INTEGER), COUNT(*) FROM records "
        "WHERE phase = 'start' AND time >= ? AND (feedback IS NULL OR feedback != 'rejected') "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", (shift, shift, since)).fetchall()


def events_overlapping(db: sqlite3.Connection, stream: str, since: str, until: str) -> list[str]:
    """Ids of the stream's events whose start lies in [since, until] (to link a found window to its clip)."""
    return [r[0] for r in db.execute("SELECT id FROM records WHERE phase = 'start' AND stream = ? AND time >= ? "
                                     "AND time <= ? ORDER BY time", (stream, since, until))]
