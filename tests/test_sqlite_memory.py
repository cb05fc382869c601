"""The sqlite sink's memory is bounded early: SQLite's page cache was the growth of the full-size soak's first 5 h.

SQLite's own counter (``sqlite3_memory_used``, of the library the ``sqlite3`` module is linked to) measures it
exactly, where RSS would mix it with everything else the process does.
"""

import ctypes
import sqlite3  # noqa: F401  (loads the library whose counter is read)
from pathlib import Path

import numpy as np

from streamdetect.pipeline.events import EventRecord, LabelScore
from streamdetect.sinks import sqlite as sqlite_sink
from streamdetect.sinks.sqlite import WRITER_PAGE_CACHE_KIB, SqliteOptions, SqliteSink

RECORDS = 1500  # about 6 h of the soak's events; the file grows past 2 MB, SQLite's default cache


def loaded_sqlite() -> ctypes.CDLL:
    """The libsqlite3 this process already has mapped: a second copy would count other allocations."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "libsqlite3" in path:
            lib = ctypes.CDLL(path)
            lib.sqlite3_memory_used.restype = ctypes.c_int64
            return lib
    raise AssertionError("the sqlite3 module is not linked to a shared libsqlite3; this test reads its counter")


def record(i: int, rng: np.random.Generator) -> EventRecord:
    return EventRecord(id=f"ev{i // 2:06d}", label="tone", phase=("start", "end")[i % 2], start_s=float(i),
                       end_s=None if i % 2 == 0 else i + 1.0, peak_score=0.5, peak_time_s=float(i), stream="soak",
                       time=f"2026-12-01T00:00:{i:06d}", top=(LabelScore("tone", 0.5),),
                       embedding=rng.standard_normal(512).astype(np.float32))


def growth_kib(lib: ctypes.CDLL, emit, rng: np.random.Generator) -> float:
    emit(record(0, rng))
    before = lib.sqlite3_memory_used()
    for i in range(1, RECORDS):
        emit(record(i, rng))
    return (lib.sqlite3_memory_used() - before) / 1024


def test_sqlite_sink_page_cache_stops_growing_at_its_bound(tmp_path, monkeypatch):
    lib, rng = loaded_sqlite(), np.random.default_rng(0)

    # the same sink with SQLite's default cache: it keeps growing with the file, up to about 2 MB
    with monkeypatch.context() as m:
        m.setattr(sqlite_sink, "WRITER_PAGE_CACHE_KIB", None)
        default = SqliteSink(SqliteOptions(path=str(tmp_path / "default.db")))
    try:
        unbounded = growth_kib(lib, default.emit, rng)
    finally:
        default.close()
    assert unbounded > 1500, f"the default cache grew only {unbounded:.0f} KiB: the counter does not see it"

    sink = SqliteSink(SqliteOptions(path=str(tmp_path / "events.db")))
    try:
        bounded = growth_kib(lib, sink.emit, rng)
        assert sink.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == RECORDS
    finally:
        sink.close()
    assert (tmp_path / "events.db").stat().st_size > 2 * 2**20  # the file did outgrow the default cache
    assert bounded < WRITER_PAGE_CACHE_KIB + 64, f"the sink's SQLite memory grew {bounded:.0f} KiB"
