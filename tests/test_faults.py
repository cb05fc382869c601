"""Faults on purpose: a receiver down for a long time, a full disk while spooling, the daemon killed with SIGKILL.
Nothing may be lost that could be kept, detection goes on, and the log says so once per interval, not per record.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import soundfile as sf
from fakes import HttpReceiver
from helpers import write_config
from test_webhook import options, rec

from streamdetect.sinks.base import FailureLog, SinkSet
from streamdetect.sinks.webhook import WebhookSink


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failures_are_counted_each_time_but_logged_once_per_interval(caplog):
    clock = FakeClock()
    failures = {"hook": 0, "db": 0}
    report = FailureLog(failures, interval_s=60.0, clock=clock)
    caplog.set_level("ERROR")
    for second in range(600):  # ten (simulated) minutes, two failing records a second on "hook"
        clock.now = float(second)
        report.failed("hook", rec(second), RuntimeError("connection refused"))
        report.failed("hook", rec(second, "end"), RuntimeError("connection refused"))
    report.failed("db", rec(0), OSError("disk full"))
    lines = [r.getMessage() for r in caplog.records]
    assert failures == {"hook": 1200, "db": 1}
    assert sum("sink hook failed" in line for line in lines) == 10  # at 0, 60, ..., 540 s
    assert sum("sink db failed" in line for line in lines) == 1  # one sink's noise does not mute another
    assert "119 not logged since the last message" in lines[1] and "(1200 failures so far" not in lines[0]


def test_receiver_down_for_a_long_outage_loses_nothing(tmp_path, caplog):
    """An hour-long outage, simulated by volume: 500 records (a busy station's hour) while the port refuses
    connections, with the threaded sink set the daemon uses. Then the receiver comes back on the same port."""
    receiver = HttpReceiver()
    url, port = receiver.url, receiver.port
    receiver.stop()
    caplog.set_level("WARNING")
    sinks = SinkSet([("hook", WebhookSink(options(url, tmp_path, retries=0, timeout_s=1.0)))], threaded=True)
    for i in range(500):
        sinks.emit(rec(i))
    sinks.close()
    assert sinks.failures["hook"] == 0 and sinks.sinks[0][1].spooled == 500  # kept for later: not failures
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1  # one line for the outage, not 500
    spool = next((tmp_path / "spool").glob("webhook-*.jsonl"))
    assert [json.loads(line)["id"] for line in spool.read_text().splitlines()] == [f"e{i}" for i in range(500)]

    back = HttpReceiver(port=port)
    try:
        sink = WebhookSink(options(url, tmp_path))  # a restart: the spool goes out before anything new
        sink.emit(rec(500))
        sink.close()
    finally:
        back.stop()
    assert [r["id"] for r in back.records()] == [f"e{i}" for i in range(501)]  # each once, in order
    assert spool.read_text() == ""


FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, logging, resource, signal, sys
    sys.path[:0] = [sys.argv[3], sys.argv[4]]
    from helpers import collecting_sink
    from streamdetect.sinks.base import SinkSet
    from streamdetect.sinks.webhook import WebhookOptions, WebhookSink
    from test_webhook import rec

    logging.basicConfig(level=logging.ERROR, format="LOG %(message)s", stream=sys.stdout)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as a full disk would
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    collect = collecting_sink()
    hook = WebhookSink(WebhookOptions(url=sys.argv[1], spool_dir="spool", retries=0, timeout_s=1.0))
    sinks = SinkSet([("hook", hook), ("collect", collect)])
    for i in range(200):
        sinks.emit(rec(i))
    print("RESULT", json.dumps({"failures": sinks.failures, "collected": len(collect.records)}))
""")


def test_disk_full_while_spooling(tmp_path):
    """RLIMIT_FSIZE caps the spool at 4000 bytes in a child process: a real short write, then EFBIG from the
    kernel. Detection (here: the other sink) goes on, each lost record is counted, the log says it once, and the
    spool keeps only whole records that are re-sent later."""
    receiver = HttpReceiver()
    url = receiver.url
    receiver.stop()
    tests = os.path.dirname(__file__)
    result = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, url, "4000", tests,
                             os.path.dirname(tests)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    logged = [line for line in result.stdout.splitlines() if line.startswith("LOG ")]
    assert len(logged) == 1 and "Traceback" not in result.stderr
    spool = next((tmp_path / "spool").glob("webhook-*.jsonl"))
    content = spool.read_bytes()
    assert 0 < len(content) <= 4000 and content.endswith(b"\n")  # cut back to whole lines
    spooled = [json.loads(line)["id"] for line in content.splitlines()]
    assert spooled == [f"e{i}" for i in range(len(spooled))]
    # every record that could not be kept is counted as lost; the spooled ones are not failures
    assert out == {"failures": {"hook": 200 - len(spooled), "collect": 0}, "collected": 200}

    back = HttpReceiver(port=int(url.rsplit(":", 1)[1].split("/")[0]))
    try:
        WebhookSink(options(url, tmp_path)).close()
    finally:
        back.stop()
    assert [r["id"] for r in back.records()] == spooled


def test_disk_full_then_record_lost_message_names_the_spool(tmp_path):
    """The error a lost record raises says it is lost and where it could not go (logged by FailureLog)."""
    receiver = HttpReceiver()
    url = receiver.url
    receiver.stop()
    sink = WebhookSink(options(url, tmp_path, retries=0))
    sink.spool.mkdir()  # the spool path is unusable: writing it fails like a full or read-only disk would
    try:
        sink.emit(rec(0))
    except Exception as e:  # noqa: BLE001 - the type and message are the subject
        assert type(e).__name__ == "SinkError"
        assert str(sink.spool) in str(e) and "record lost" in str(e)
    else:
        raise AssertionError("a record that could not be spooled must be reported")
    finally:
        sink.close()


def test_sigkill_then_restart_resends_the_spool_once_and_the_store_is_intact(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "in.wav", (0.1 * rng.standard_normal(8 * 48_000)).astype(np.float32), 48_000)
    receiver = HttpReceiver()
    url, port = receiver.url, receiver.port
    receiver.stop()
    events = [{"label": label, "prompts": [label], "threshold": -1.0} for label in ("a", "b", "c")]
    sinks = [{"type": "sqlite", "path": str(tmp_path / "events.db")},
             {"type": "webhook", "url": url, "retries": 0, "timeout_s": 1.0, "spool_dir": str(tmp_path / "spool")},
             # keeps the daemon alive after the file ends: shutdown waits for this sink to drain
             {"type": "command", "argv": ["sleep", "20"], "timeout_s": 120}]
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, events, sinks, runtime={"device": "cpu"})
    daemon = subprocess.Popen([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input",
                               str(tmp_path / "in.wav")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    spool_dir = tmp_path / "spool"
    try:
        deadline = time.monotonic() + 120
        rows = spooled = []
        while time.monotonic() < deadline and daemon.poll() is None:
            spools = list(spool_dir.glob("webhook-*.jsonl")) if spool_dir.is_dir() else []
            spooled = spools[0].read_text().splitlines() if spools else []
            if (tmp_path / "events.db").is_file():
                db = sqlite3.connect(tmp_path / "events.db", timeout=5)
                try:
                    rows = db.execute("SELECT id, phase FROM records").fetchall()
                except sqlite3.OperationalError:  # created, schema not written yet
                    rows = []
                finally:
                    db.close()
            if len(rows) == 6 and len(spooled) == 6:  # 3 starts and 3 ends, written and spooled
                break
            time.sleep(0.05)
        assert daemon.poll() is None, daemon.communicate()[1].decode()[-2000:]
        assert len(rows) == 6 and len(spooled) == 6
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its `sleep`, as systemd kills a unit's group
        daemon.wait(30)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(30)
    assert daemon.returncode == -signal.SIGKILL

    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert sorted(db.execute("SELECT id, phase FROM records").fetchall()) == sorted(rows)
    db.close()

    # Restart with the receiver back: the six spooled records go out first, exactly once.
    back = HttpReceiver(port=port)
    try:
        restart_sinks = sinks[:2]
        cfg = write_config(tmp_path / "cfg.yaml", tiny_model, events, restart_sinks, runtime={"device": "cpu"})
        sf.write(tmp_path / "short.wav", np.zeros(48_000, np.float32), 48_000)
        result = subprocess.run([sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input",
                                 str(tmp_path / "short.wav")], capture_output=True, text=True, timeout=120)
    finally:
        back.stop()
    assert result.returncode == 0, result.stderr
    received = [(r["id"], r["phase"]) for r in back.records()]
    before = [(json.loads(line)["id"], json.loads(line)["phase"]) for line in spooled]
    assert received[:6] == before and len(set(received)) == len(received)  # spool first, nothing twice
    assert len(received) == 6 + 6  # and the new run's own 3 starts and 3 ends
    assert next(spool_dir.glob("webhook-*.jsonl")).read_text() == ""
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (12,)
    db.close()
