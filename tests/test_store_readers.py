"""The event store read by a second, real Unix user who may read the database but not write its folder (an
operator in the service's group, as the systemd unit's UMask 0027 lays the files out), while the daemon runs
and after it stopped; and the events a crash left open, closed at the next start."""

import grp
import io
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from helpers import event_record

from streamdetect.pipeline.events import LabelScore
from streamdetect.sinks.base import SinkSet
from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink

UNIT = Path(__file__).parent.parent / "deploy/systemd/streamdetect.service"


@pytest.fixture
def reader():
    """A throw-away system user with its own group: (uid, gid)."""
    if os.geteuid() != 0:
        pytest.fail("this test creates a Unix user (useradd) and switches to it: run the suite as root (CI does)")
    name = f"sdread{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name).pw_uid, grp.getgrnam(name).gr_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def events_as(uid, gid, db: Path) -> tuple[int, str, str]:
    """``streamdetect events --db DB`` run by the CLI's own code in a child that has become ``uid``.

    A fork that switches user rather than ``runuser``: this machine's interpreter lives under /root (0700),
    which another user cannot execute; the child keeps the loaded interpreter and the kernel checks every file
    access of it against ``uid``, as for any process of that user.
    """
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        rc, out, err = 99, io.StringIO(), io.StringIO()
        try:
            from streamdetect.cli import main  # imported as root: the modules need not be readable for uid

            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    rc = main(["events", "--db", str(db)])
                except SystemExit as e:
                    rc = e.code if isinstance(e.code, int) else 1
                except BaseException as e:  # noqa: BLE001 - reported to the parent
                    err.write(f"{type(e).__name__}: {e}")
                    rc = 98
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            err.write(f"child: {type(e).__name__}: {e}")
        finally:
            os.write(out_w, (out.getvalue() + "\0" + err.getvalue()).encode())
            os._exit(rc)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as fh:
        data = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    stdout, _, stderr = data.partition("\0")
    return os.waitstatus_to_exitcode(status), stdout, stderr


def rec(i, phase="end"):
    return event_record(phase, id=f"e{i}", label="dog", start_s=1.0, end_s=4.0 if phase == "end" else None,
                        stream="garden", time=f"2026-11-24T06:00:0{i}.000+00:00", top=(LabelScore("dog", 0.4),))


def test_a_reader_who_cannot_write_the_folder_reads_while_running_and_after_stop(reader):
    uid, gid = reader
    base = Path(tempfile.mkdtemp(prefix="sd-readers-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        data = base / "data"  # root:<reader's group> 0750, as /var/lib/streamdetect under the unit
        data.mkdir()
        os.chown(data, 0, gid)
        os.chmod(data, 0o750)
        umask = int(re.search(r"^UMask=(\d+)$", UNIT.read_text(), re.M).group(1), 8)
        assert umask == 0o027
        old = os.umask(umask)  # the systemd unit's
        try:
            sink = SqliteSink(SqliteOptions(path=str(data / "events.db")))
            for i in range(3):
                sink.emit(rec(i))
            files = sorted(p.name for p in data.iterdir())
            for p in data.iterdir():
                os.chown(p, 0, gid)  # the service user's group, which the operator is in
            # the daemon runs: the records are in the write-ahead log, -wal and -shm exist
            assert files == ["events.db", "events.db-shm", "events.db-wal"]
            rc, out, err = events_as(uid, gid, data / "events.db")
            assert rc == 0, err
            assert out.count("garden") == 3 and "3 records" in err
            sink.close()  # a clean stop folds the log into the database and removes -wal and -shm
        finally:
            os.umask(old)
        assert sorted(p.name for p in data.iterdir()) == ["events.db"]
        assert oct(os.stat(data / "events.db").st_mode & 0o777) == "0o640"
        rc, out, err = events_as(uid, gid, data / "events.db")
        assert rc == 0, err  # before: "attempt to write a readonly database" (mode=ro cannot create -shm)
        assert out.count("garden") == 3 and "missing" not in err
        os.chmod(data / "events.db", 0o600)  # and a reader who may not read it gets one line, no traceback
        rc, out, err = events_as(uid, gid, data / "events.db")
        assert rc == 2 and "cannot read" in err and "Error" not in err
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_events_left_open_by_a_crash_are_closed_as_interrupted_at_restart(tmp_path):
    db = tmp_path / "events.db"
    crashed = SqliteSink(SqliteOptions(path=str(db)))
    crashed.emit(rec(1, "start"))  # open when the daemon died
    crashed.emit(rec(2, "start"))
    crashed.emit(rec(2, "end"))  # this one ended
    other = rec(3, "start")
    crashed.emit(event_record("start", id="e9", label="dog", stream="another daemon's", start_s=1.0, end_s=None))
    crashed.close()
    restarted = SqliteSink(SqliteOptions(path=str(db)))
    sinks = SinkSet([("db", restarted)])
    ends = sinks.close_left_open({"garden"}, "2026-11-25T00:00:00.000+00:00")
    assert [(e.id, e.phase, e.interrupted, e.end_s) for e in ends] == [("e1", "end", True, 2.5)]
    assert ends[0].to_dict()["interrupted"] is True and "interrupted" not in other.to_dict()
    assert sinks.close_left_open({"garden"}, "later") == []  # closed once
    restarted.close()
    rows = restarted_rows(db)
    assert ("e1", "end", 1) in rows and ("e2", "end", 0) in rows and ("e9", "end", 0) not in rows


def restarted_rows(db):
    import sqlite3

    with sqlite3.connect(db) as c:
        return c.execute("SELECT id, phase, interrupted FROM records").fetchall()
