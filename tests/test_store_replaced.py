"""The event store's file deleted, replaced or overwritten under a running sqlite sink. Before, the new connection
reused the old ``-wal``/``-shm`` by name: after ``rm events.db`` 4 of 14 records were missing with 0 counted,
another store copied over it lost all its 500 events (this test's scenario on the old code: 7 of 14 at
the path after the deletion, the other store's records all gone after the copy), and junk then an empty file lost 9 of 18 records. Now
every record is in a store or counted as lost, and a file the sink did not write is never written into.

A reader holds the store open throughout, as the dashboard does, so the sink's log is not folded into the file
when its connection closes: the records written since the last checkpoint live only in that log.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import CliRun, event_record, write_config

from streamdetect.sinks.base import SinkError, SinkSet
from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink
from streamdetect.util.backoff import Backoff


def ids(path: Path) -> list[str]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return sorted(row[0] for row in db.execute("SELECT id FROM records"))
    finally:
        db.close()


def emit(sinks: SinkSet, first: int, count: int) -> None:
    for i in range(first, first + count):
        sinks.emit(event_record("start", id=f"e{i:03d}"))


def stored(folder: Path) -> list[str]:
    """Every record in every store the sink may have written in ``folder`` (the path and displaced files)."""
    found = []
    for path in sorted(folder.glob("events*.db")):
        try:
            found += ids(path)
        except sqlite3.DatabaseError:
            continue  # junk written by the test
    return sorted(found)


@pytest.fixture
def store(tmp_path):
    """(sink set, sink, path, reader): a reader connection is held open on the store until the test closes it."""
    path = tmp_path / "events.db"
    sink = SqliteSink(SqliteOptions(path=str(path)))
    reader = sqlite3.connect(path)
    reader.execute("SELECT count(*) FROM records").fetchone()
    sinks = SinkSet([("db", sink)])
    yield sinks, sink, path, reader
    reader.close()


def test_deleting_the_file_keeps_every_record(store, caplog):
    sinks, sink, path, reader = store
    emit(sinks, 0, 7)
    path.unlink()  # its -wal and -shm stay, holding those 7 records
    emit(sinks, 7, 7)
    sinks.close()
    reader.close()
    assert ids(path) == [f"e{i:03d}" for i in range(14)]
    assert (sink.lost, sinks.failures["db"], sink.reopened) == (0, 0, 1)
    assert "copied the 7 record(s) of the removed file" in caplog.text


@pytest.mark.parametrize("how", ["cp", "mv"])
def test_another_store_put_in_its_place_is_left_untouched(store, tmp_path, how, caplog):
    sinks, sink, path, reader = store
    other_path = tmp_path / "other" / "station.db"
    other = SqliteSink(SqliteOptions(path=str(other_path)))
    for i in range(100):
        other.emit(event_record("start", id=f"other{i:03d}"))
    other.close()
    original = hashlib.sha256(other_path.read_bytes()).hexdigest()
    emit(sinks, 0, 7)
    if how == "cp":  # written into our file (same inode)
        shutil.copyfile(other_path, path)
    else:  # a new file renamed over ours
        shutil.copyfile(other_path, tmp_path / "new.db")
        (tmp_path / "new.db").rename(path)
    emit(sinks, 7, 7)
    sinks.close()
    reader.close()  # the last connection to the old file: its close must not fold our log into theirs
    assert hashlib.sha256(path.read_bytes()).hexdigest() == original  # not one byte of it written
    assert not path.with_name("events.db-wal").exists()  # nor a log of ours left for it to pick up
    assert ids(path) == [f"other{i:03d}" for i in range(100)]
    [displaced] = tmp_path.glob("events.displaced-*.db")
    assert ids(displaced) == [f"e{i:03d}" for i in range(14)]
    assert (sink.lost, sinks.failures["db"]) == (0, 0)
    assert "left untouched" in caplog.text and str(displaced) in caplog.text


def test_junk_then_an_empty_file_loses_nothing_uncounted(store, tmp_path):
    sinks, sink, path, reader = store
    emit(sinks, 0, 6)
    path.write_bytes(b"junk\n" * 100)  # in place
    emit(sinks, 6, 6)
    path.write_bytes(b"")  # emptied in place
    emit(sinks, 12, 6)
    sinks.close()
    reader.close()
    kept = stored(tmp_path)
    assert len(kept) + sink.lost == 18 and len(set(kept)) == len(kept)
    assert sinks.failures["db"] == sink.lost  # every record not stored is counted
    assert set(kept) >= {f"e{i:03d}" for i in range(6, 18)}  # everything after the junk is stored


def test_a_store_of_another_kind_is_refused_at_start_untouched(tmp_path):
    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(SinkError, match=r"is not an event store \(it is an SQLite database with other tables"):
        SqliteSink(SqliteOptions(path=str(path)))
    path.write_bytes(b"not a database at all")
    with pytest.raises(SinkError, match="it is not an SQLite database"):
        SqliteSink(SqliteOptions(path=str(path)))
    assert before != path.read_bytes() == b"not a database at all"


def test_a_write_lock_held_past_the_busy_timeout_is_waited_out(tmp_path):
    path = tmp_path / "events.db"
    sink = SqliteSink(SqliteOptions(path=str(path)), busy_timeout_s=0.05, backoff=Backoff(0.02, 0.05))
    sinks = SinkSet([("db", sink)])
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    writer = threading.Thread(target=emit, args=(sinks, 0, 1))
    writer.start()
    waited = threading.Event()
    while sink.lock_waits < 2 and writer.is_alive():  # past the busy timeout twice, still waiting
        waited.wait(0.01)
    blocker.execute("COMMIT")
    writer.join(10)
    blocker.close()
    sinks.close()
    assert ids(path) == ["e000"] and sink.lock_waits >= 2
    assert (sink.lost, sinks.failures["db"]) == (0, 0)


def test_records_are_seen_by_another_process_while_the_sink_writes(tmp_path):
    """The sink checks its file before every record without opening and closing it again: closing any descriptor
    of a file drops the process's POSIX locks on it, SQLite's included, and a reader in another process then saw
    none of the records written since (they appeared when the writer exited: 40 s late in test_faults)."""
    path = tmp_path / "events.db"
    sink = SqliteSink(SqliteOptions(path=str(path)))
    try:
        for i in range(3):
            sink.emit(event_record("start", id=f"e{i:03d}"))
        count = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=5)\n"
                 "print(db.execute('SELECT count(*) FROM records').fetchone()[0])")
        seen = subprocess.run([sys.executable, "-c", count, str(path)], capture_output=True, text=True, timeout=60)
        assert seen.stdout.strip() == "3", seen.stderr
        sink.emit(event_record("start", id="e003"))  # the reader's visit took nothing from the writer either
        seen = subprocess.run([sys.executable, "-c", count, str(path)], capture_output=True, text=True, timeout=60)
        assert seen.stdout.strip() == "4", seen.stderr
    finally:
        sink.close()


@pytest.mark.parametrize("how", ["rm", "cp"])
def test_a_running_daemon_keeps_every_record_when_its_store_is_removed_or_overwritten(tiny_model, tmp_path, how):
    """The same under `streamdetect run` with a live stream: four events start, the file is removed (``rm``) or
    another station's store is copied over it (``cp``), and the four ends are written at shutdown. Every record
    the daemon emitted (its jsonl sink says which) is in a store of ours, once; another station's store is left
    as it was, byte for byte."""
    path, out = tmp_path / "events.db", tmp_path / "out.jsonl"
    events = [{"label": f"e{i}", "prompts": [f"sound {i}"], "threshold": -1.0} for i in range(4)]  # always on
    live = {"type": "ffmpeg", "name": "tone", "url": "sine=frequency=1000:sample_rate=48000",
            "input_args": ["-re", "-f", "lavfi"], "live": True}
    cfg = write_config(tmp_path / "c.yaml", tiny_model, events, runtime={"device": "cpu"}, sources=[live],
                       sinks=[{"type": "sqlite", "path": str(path)}, {"type": "jsonl", "path": str(out)}])
    other = tmp_path / "other" / "events.db"  # another station's store, three records
    other_sinks = SinkSet([("db", SqliteSink(SqliteOptions(path=str(other))))])
    emit(other_sinks, 100, 3)
    other_sinks.close()
    run = CliRun("run", "--config", str(cfg))
    try:
        deadline = time.monotonic() + 120
        while len(out.read_text().splitlines() if out.is_file() else []) < 4:
            assert run.proc.poll() is None and time.monotonic() < deadline, run.log
            time.sleep(0.05)
        if how == "rm":
            path.unlink()
        else:
            shutil.copyfile(other, path)  # in place: the same inode, another store's bytes
        status = run.stop(timeout_s=60)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert status == 0, run.log
    emitted = sorted(json.loads(line)["id"] for line in out.read_text().splitlines())
    assert len(emitted) == 8  # four starts, four ends at shutdown
    assert stored(tmp_path) == sorted(emitted + (["e100", "e101", "e102"] if how == "cp" else []))
    if how == "cp":
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(other.read_bytes()).digest()
        assert ids(path) == ["e100", "e101", "e102"]
    assert "lost" not in run.log and "Traceback" not in run.log
