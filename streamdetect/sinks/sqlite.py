"""The sqlite sink: every record into the event store (``streamdetect.store``), which survives restarts.

The file at the path can change under a running sink: deleted (its folder removed, ``rm events.db``), replaced
(``mv other.db events.db``) or overwritten in place (``cp other.db events.db``, ``echo junk > events.db``). Before
every record the sink checks that the file there is still the one it opened (inode, and the header's
``application_id`` and ``user_version``, see ``store.claim``). If not, it copies its store as its connection
still sees it (records not yet checkpointed included: the backup API reads through the WAL) and closes that
connection without a checkpoint, so nothing of it is ever written into the new file, and removes its own
``-wal``/``-shm`` from beside it (a new connection would otherwise read them as the new file's log: before,
that lost records silently and destroyed a replacement). A deleted or emptied file is then created again
with the copy; a file that is not ours is left untouched and the sink goes on in a file beside it,
``<name>.displaced-<UTC time>.db``, with one error line saying so. Records that could not be stored are
counted (``lost``, and as sink failures); a write lock held past the busy timeout is waited out, not a loss.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import Field

from streamdetect.pipeline.events import EventRecord, LabelScore
from streamdetect.sinks.base import Sink, SinkError, SinkOptions
from streamdetect.store import (
    APPLICATION_ID,
    claim,
    close_without_checkpoint,
    connect,
    foreign_store,
    header_of,
    insert_record,
    open_starts,
)
from streamdetect.util.backoff import Backoff
from streamdetect.util.ratelimit import OutageLog
from streamdetect.util.writable import OutputPath

log = logging.getLogger(__name__)

# The sink only appends; the few reads (open events at start-up, a copy after the file was removed) are rare.
# SQLite's default 2000 KiB cache filled over the first 5 h of the full-size soak and showed there as RSS growth.
WRITER_PAGE_CACHE_KIB = 256
SIDE_FILES = ("-wal", "-shm")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class SqliteOptions(SinkOptions):
    path: str = Field("events/events.db", min_length=1, description="database file (created if missing); "
                      "the `events`, `feedback` and `refine` verbs read this path by default")


class SqliteSink(Sink[SqliteOptions]):
    """The sqlite sink: every record into the event store (``streamdetect.store``), which survives restarts.

    ``busy_timeout_s``: how long one write waits for another process's write lock before it is retried (with
    ``backoff`` between tries, until shutdown); tests make it short."""

    Options = SqliteOptions

    def __init__(self, options: SqliteOptions, busy_timeout_s: float = 30.0, backoff: Backoff | None = None):
        super().__init__(options)
        self.path = Path(options.path)
        self.busy_timeout_s = busy_timeout_s
        self._backoff = backoff if backoff is not None else Backoff(1.0, 30.0)
        self.reopened = 0  # times the file was found deleted or replaced and opened again
        self.lost = 0  # records that could not be stored (each also raised, so counted as a sink failure)
        self.lock_waits = 0  # writes that found the store locked past the busy timeout and were tried again
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._lock_log = OutageLog(log, logging.WARNING)
        why = foreign_store(self.path)
        if why is not None:
            raise SinkError(f"sqlite sink: {self.path} is not an event store ({why}); it is left untouched: give "
                            "the sink another path")
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path, page_cache_kib=WRITER_PAGE_CACHE_KIB, busy_timeout_s=self.busy_timeout_s)
        claim(self.db, random.SystemRandom().randrange(1, 2**31))
        # The header is read through this one descriptor, kept open as long as the connection: opening and
        # closing the file again before every record dropped SQLite's own POSIX locks on it (closing any
        # descriptor of a file does), and readers in other processes then saw none of the records written
        # since (a run's records appeared at its exit, 40 s late in test_faults).
        self._fd = os.open(self.path, os.O_RDONLY)
        self._identity = _identity(self.path)
        self._sides = {suffix: _identity(self._side(suffix)) for suffix in SIDE_FILES}
        header = header_of(self._fd)
        self._tag = self.db.execute("PRAGMA user_version").fetchone()[0]
        # the header as the file has it now, and as it has it once a checkpoint has written ours (a reader can
        # keep the first checkpoint from reaching page 1)
        self._headers = {(APPLICATION_ID, self._tag), (header.application_id, header.user_version)}
        self._since_open = 0  # records stored in this file by this sink

    def _side(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _changed(self) -> str | None:
        """None if the file at the path is still the one opened, else what happened to it."""
        try:
            stat = self.path.stat()
        except OSError:
            return "deleted"
        if stat.st_size == 0:
            return "emptied"
        if (stat.st_dev, stat.st_ino) != self._identity:
            return "replaced"
        header = header_of(self._fd)  # the same file as ours: read through our descriptor
        if not header.sqlite or (header.application_id, header.user_version) not in self._headers:
            return "overwritten"
        return None

    def _still_ours(self) -> int:
        """Move to a store of our own if the file at the path is no longer the one opened (module docstring);
        the number of earlier records that could not be carried over."""
        what = self._changed()
        if what is None:
            return 0
        self.reopened += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        copy = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.carry")
        carried = self._copy_out(copy)
        lost = self._since_open if carried is None else 0
        try:
            close_without_checkpoint(self.db)
            os.close(self._fd)
        except sqlite3.Error as e:  # never closed, so never checkpointed into the new file
            log.error("sqlite sink: cannot close the connection to the old %s safely (%s); left open", self.path, e)
        self._clear_sides(keep=carried is None)
        displaced = what in ("replaced", "overwritten")
        if not displaced and carried is not None:
            displaced = not self._claim_path(copy, what)  # False: something else appeared there meanwhile
        target = self.path
        if displaced:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            target = self.path.with_name(f"{self.path.stem}.displaced-{stamp}{self.path.suffix}")
            if carried is not None:
                os.replace(copy, target)
            log.error("sqlite sink: %s was %s by a file this sink did not write; it is left untouched, and this "
                      "sink writes to %s from now on (%s; merge them after stopping the daemon)", self.path, what,
                      target, f"{carried} earlier record(s) carried over" if carried is not None
                      else f"the earlier records could not be read: {lost} lost")
        else:
            log.error("sqlite sink: %s was %s while running (%d time(s) so far); created it again and copied the "
                      "%s record(s) of the removed file into it", self.path, what, self.reopened,
                      carried if carried is not None else f"0 (they could not be read: {lost} lost)")
        copy.unlink(missing_ok=True)
        self.path = target
        self.lost += lost
        self._open()
        return lost

    def _copy_out(self, copy: Path) -> int | None:
        """Copy the store as the old connection sees it into ``copy``; the number of records, or None."""
        try:
            dest = sqlite3.connect(copy)
            try:
                self.db.backup(dest)
                ok = dest.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                count = dest.execute("SELECT count(*) FROM records").fetchone()[0]
            finally:
                dest.close()
        except sqlite3.Error as e:
            log.error("sqlite sink: the records in the old %s could not be read back: %s", self.path, e)
            return None
        return count if ok else None

    def _clear_sides(self, keep: bool) -> None:
        """Take our ``-wal``/``-shm`` away from the path (only ours: same inode as when opened); ``keep``: the
        records could not be copied, so the log is kept beside, renamed, for a manual rescue."""
        for suffix, identity in self._sides.items():
            side = self._side(suffix)
            if identity is None or _identity(side) != identity:
                continue
            try:
                if keep:
                    side.rename(side.with_name(f"{side.name}.orphaned-{secrets.token_hex(4)}"))
                    continue
                if suffix == "-wal":
                    # Emptied first: another connection still open on the old file (the dashboard, a reader in
                    # another process) checkpoints its log when it closes, and an empty log writes nothing.
                    os.truncate(side, 0)
                side.unlink()
            except OSError as e:
                log.error("sqlite sink: cannot move %s away from %s: %s", side, self.path, e)

    def _claim_path(self, copy: Path, what: str) -> bool:
        """Put the copy at the path, unless something other than nothing (or an empty file) appeared there."""
        try:
            if what == "deleted":
                os.link(copy, self.path)  # fails if a file appeared in the meantime: never over another's
            else:
                os.replace(copy, self.path)
        except OSError:
            return False
        return True

    @classmethod
    def outputs(cls, options: SqliteOptions) -> list[OutputPath]:
        return [OutputPath("path", Path(options.path), "file", "sqlite database")]  # and its -wal, -shm files

    def shutting_down(self) -> None:
        self._closing.set()

    def emit(self, record: EventRecord) -> None:
        row = record.to_dict()
        row["top"] = json.dumps(row["top"])
        row["sounds_like"] = json.dumps(row["sounds_like"]) if "sounds_like" in row else None
        # The peak window's embedding (float16), so `streamdetect refine` can learn from feedback later.
        row["embedding"] = (None if record.embedding is None
                            else np.asarray(record.embedding, dtype=np.float16).tobytes())
        with self._lock:
            self._backoff.reset()
            lost = 0
            while True:
                try:
                    lost += self._still_ours()
                    insert_record(self.db, row)
                    self._since_open += 1
                    self._lock_log.recovered("sqlite sink: %s can be written again", self.path)
                    break
                except sqlite3.OperationalError as e:
                    locked = "locked" in str(e) or "busy" in str(e)
                    if not locked or self._closing.wait(self._backoff.next_delay()):
                        self.lost += 1
                        raise SinkError(f"sqlite sink: the {record.label} {record.phase} record could not be stored "
                                        f"in {self.path}: {e}") from None
                    self.lock_waits += 1  # another process holds the write lock: wait it out, do not drop
                    self._lock_log.failed("sqlite sink: %s stayed locked by another writer for over %g s; the "
                                          "record waits and is tried again", self.path, self.busy_timeout_s)
                except (sqlite3.Error, OSError) as e:
                    self.lost += 1
                    raise SinkError(f"sqlite sink: the {record.label} {record.phase} record could not be stored in "
                                    f"{self.path}: {e}") from None
            if lost:  # stored this one; the earlier ones that could not be carried over are counted here
                raise SinkError(f"sqlite sink: {lost} earlier record(s) could not be carried over from the old "
                                f"{self.path.name}", records=lost)

    def left_open(self) -> list[EventRecord]:
        with self._lock:
            rows = open_starts(self.db)
        return [EventRecord(id=r["id"], label=r["label"], phase="start", start_s=r["start_s"], end_s=None,
                            peak_score=r["peak_score"], peak_time_s=r["peak_time_s"], stream=r["stream"],
                            time=r["time"], top=tuple(LabelScore(**t) for t in json.loads(r["top"])))
                for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._changed() is not None:
                self._still_ours()  # never checkpoint into a file that is not ours
            self.db.close()
            os.close(self._fd)  # after the connection: closing it drops the connection's locks
