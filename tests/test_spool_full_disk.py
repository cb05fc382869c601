"""Spools on a full disk: the webhook's and the Apprise sink's spools, written while both receivers were away, are
sent once both answer again on a file system with no byte free. Before, each slice of the spool was cut off by
rewriting the rest of the file (which needs about the spool's size free): the rewrite failed, and the same head
went out again and again (19,242 POSTs of 256 records in 20 s; this test on the old code: 5,503 POSTs of the
first 256 of its 300 records in 3 s, the other 44 never). Every record must arrive exactly once.

The file system is a real 256 KiB tmpfs, mounted by the test (``small_fs``). Where mounting is refused (not
root), the delivery runs in a child process under ``RLIMIT_FSIZE``, which refuses every write that needs new
room in any file (EFBIG, as ENOSPC would) while writes within a file's first bytes still succeed: the same
conditions for the spool as a full disk.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from fakes import HttpReceiver
from helpers import event_record, fill

from streamdetect.sinks.apprise import AppriseOptions, AppriseSink
from streamdetect.sinks.spool import MARK_BYTES, Spool
from streamdetect.sinks.webhook import BATCH_LINES, WebhookOptions, WebhookSink
from streamdetect.util.backoff import Backoff

# More than the webhook sends per slice (BATCH_LINES) and than Apprise sends per idle call (16): the old code had
# to rewrite a non-empty rest after the first slice, and that rewrite is what a full disk refused.
HOOK_RECORDS, NOTIFICATIONS = BATCH_LINES + 44, 30


def record(i: int):
    return event_record("end", id=f"r{i:04d}", label="dog", start_s=float(i), end_s=float(i) + 1, stream="s",
                        time="2026-06-01T04:00:00.000+00:00")


def sinks(spool_dir: Path, hook_url: str, notify_port: int, backoff_s: float) -> tuple[WebhookSink, AppriseSink]:
    hook = WebhookSink(WebhookOptions(url=hook_url, spool_dir=str(spool_dir), retries=0, timeout_s=2.0,
                                      backoff_s=backoff_s, max_backoff_s=backoff_s))
    notifier = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{notify_port}/x"], retries=0, body="{id}",
                                          min_interval_s=0, backoff_s=backoff_s, max_backoff_s=backoff_s,
                                          spool_dir=str(spool_dir)))
    return hook, notifier


def deliver(spool_dir: Path, hook_url: str, notify_port: int, timeout_s: float = 20.0) -> None:
    """A restart: both sinks send their spools from the worker's idle hook until both are empty."""
    hook, notifier = sinks(spool_dir, hook_url, notify_port, backoff_s=0.01)
    try:
        deadline = time.monotonic() + timeout_s
        while not (hook._spool.empty() and notifier._spool.empty()) and time.monotonic() < deadline:
            hook.idle()
            notifier.idle()
    finally:
        hook.close()
        notifier.close()


CHILD = textwrap.dedent("""
    import logging, resource, signal, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import test_spool_full_disk as t

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (t.MARK_BYTES, resource.RLIM_INFINITY))  # the disk is full
    t.deliver(Path(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
""")


def test_spools_on_a_full_disk_deliver_every_record_exactly_once(small_fs, caplog):
    folder, mounted = small_fs
    spool_dir = folder / "spool"
    hook_rx, notify_rx = HttpReceiver(500), HttpReceiver(500)  # both away: everything is spooled
    caplog.set_level(logging.INFO)
    try:
        hook, notifier = sinks(spool_dir, hook_rx.url, notify_rx.port, backoff_s=60.0)
        for i in range(HOOK_RECORDS):
            hook.emit(record(i))
        for i in range(NOTIFICATIONS):
            notifier.emit(record(i))
        hook.close()
        notifier.close()
        assert (hook.spooled, notifier.spooled) == (HOOK_RECORDS, NOTIFICATIONS)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        # one line per outage and sink, and Apprise's own warning once, not once per failed attempt
        assert sum("unreachable" in r.getMessage() for r in warnings) == 1
        assert sum("not delivered" in r.getMessage() for r in warnings) == 1
        assert sum(r.name == "apprise" for r in warnings) == 1
        spooled = sum(p.stat().st_size for p in spool_dir.glob("*.jsonl"))
        assert spooled > 40_000  # far more than the rewrite of the rest would have found free below

        hook_rx.mode = notify_rx.mode = "ok"
        caplog.clear()
        if mounted:
            fill(folder)
            assert os.statvfs(folder).f_bavail == 0
            deliver(spool_dir, hook_rx.url, notify_rx.port)
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        else:
            tests = os.path.dirname(__file__)
            child = subprocess.run([sys.executable, "-c", CHILD, tests, os.path.dirname(tests), str(spool_dir),
                                    hook_rx.url, str(notify_rx.port)], capture_output=True, text=True, timeout=60)
            assert child.returncode == 0, child.stderr
            errors = [line for line in child.stdout.splitlines() if line.startswith(("ERROR", "CRITICAL"))]
    finally:
        hook_rx.stop()
        notify_rx.stop()

    assert errors == []
    hook_ids = Counter(r["id"] for r in hook_rx.records())
    notified = Counter(json.loads(body)["message"] for body in notify_rx.bodies)
    assert hook_ids == Counter(f"r{i:04d}" for i in range(HOOK_RECORDS))  # each exactly once
    assert notified == Counter(f"r{i:04d}" for i in range(NOTIFICATIONS))
    assert all(p.stat().st_size == 0 for p in spool_dir.glob("*-*.jsonl") if ".dead." not in p.name)


def test_a_mark_that_cannot_be_saved_sends_nothing_twice_and_is_logged_once(tmp_path, caplog):
    """No room to rewrite the rest, and the delivery mark's file cannot be written either (a folder stands in its
    place). This run still
    never hands out a delivered record again, the failure is one log line for the whole outage, the spool is
    retried only after its back-off, and the next start (mark never saved) sends everything again rather than
    skip anything."""
    spool = Spool(tmp_path, "hook", "test sink", Backoff(0.01, 0.01), free_bytes=no_room)
    spool.append([b'{"n": %d}' % i for i in range(5)])
    spool.mark_path.unlink()
    spool.mark_path.mkdir()
    caplog.set_level(logging.INFO)
    sent = []
    while not spool.empty():
        head = spool.head(2)
        sent += head
        spool.drop_head(len(head))
    assert sent == [b'{"n": %d}' % i for i in range(5)] and not spool.mark_saved
    assert not spool.ready()  # backing off after the failed save
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot save the delivery mark" in errors[0]
    spool.close()  # one last try: still failing, still the same outage
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1

    spool.mark_path.rmdir()
    again = Spool(tmp_path, "hook")
    assert again.head(10) == sent  # at least once: nothing skipped
    again.drop_head(5)
    assert again.empty() and again.path.stat().st_size == 0 and again.mark_saved
    assert any("works again" in r.getMessage() for r in caplog.records) is False  # a new object, a new outage log
    again.close()
    assert Spool(tmp_path, "hook").head(10) == []


def no_room(folder: Path) -> int:
    return 0


def test_the_mark_survives_a_restart_and_a_mark_that_does_not_fit_is_ignored(tmp_path):
    spool = Spool(tmp_path, "hook", free_bytes=no_room)
    spool.append([b"a", b"b", b"c"])
    spool.drop_head(2)
    assert spool.mark_path.stat().st_size == MARK_BYTES
    spool.close()
    spool = Spool(tmp_path, "hook", free_bytes=no_room)
    assert spool.head(10) == [b"c"] and spool.count() == 1  # delivered ones are not sent again after a restart
    spool.close()
    (tmp_path / "new").write_bytes(b"x\ny\nz\n")
    os.replace(tmp_path / "new", spool.path)  # replaced by hand: another inode, the mark does not fit it
    spool = Spool(tmp_path, "hook", free_bytes=no_room)
    assert spool.head(10) == [b"x", b"y", b"z"]
    spool.drop_head(1)
    spool.close()
    inode, offset, crc = spool.mark_path.read_bytes().split()
    assert int(offset) == 2
    spool.mark_path.write_bytes(b" ".join([inode, b"4", crc]).ljust(MARK_BYTES))  # torn or edited: bad checksum
    assert Spool(tmp_path, "hook").head(3) == [b"x", b"y", b"z"]
