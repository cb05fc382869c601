"""A sink's records that wait on disk, oldest first, and the records a receiver refused for good.

``<dir>/<name>.jsonl`` holds one JSON record per line, in the order they were emitted; ``<dir>/<name>.dead.jsonl``
(the dead-letter file) holds, in the same format, the records the receiver refused permanently (HTTP 4xx other
than 408/429, or a redirect), so they are neither retried for ever nor lost: after fixing the receiver or the URL,
``cat <name>.dead.jsonl >> <name>.jsonl`` sends them again at the next start. The spool is locked for as long as
its sink runs (``PathLock``): a second daemon on the same spool is refused at start-up instead of silently
dropping the lines the other appended while it rewrote the file.

Delivered records are cut off without needing free space. Cutting them off means rewriting the rest of the file,
which needs about the spool's size free: on a nearly full disk that rewrite failed after every slice and the
same head went out again and again (tens of thousands of repeats in 20 s). Now the byte offset of the first
record not yet delivered is kept in this object at once, and made durable by whichever works: truncating the
spool to nothing once all of it is delivered (that frees space, it needs none), rewriting the rest where the
file system has room for it, or else saving the offset in ``.<name>.sent``, a 64-byte file written in place
(no new blocks, so it can be rewritten on a full disk). The mark names the spool's inode and carries a
checksum: a mark that does not fit the file (a torn write, a spool rewritten or replaced) is ignored, and the
whole spool is sent again, which is at least once, never a loss.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from streamdetect.sinks.base import SinkError
from streamdetect.util.backoff import Backoff
from streamdetect.util.files import atomic_write
from streamdetect.util.locks import PathInUse, PathLock
from streamdetect.util.ratelimit import OutageLog

log = logging.getLogger(__name__)

MARK_BYTES = 64  # the mark file's fixed size: rewritten in place, it never needs a new block


class Spool:
    """``who`` names the sink in log lines; ``free_bytes`` tells the room left on a folder's file system. A spool
    error (a read that fails, a mark that cannot be saved) is
    logged once per outage, and the spool is left alone for ``backoff``'s wait before it is tried again
    (``ready``), so a broken disk costs neither a log line nor a busy loop per attempt."""

    def __init__(self, folder: Path, name: str, who: str = "spool", backoff: Backoff | None = None,
                 free_bytes: Callable[[Path], int] | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.who = who
        self._free_bytes = free_bytes if free_bytes is not None else _free_bytes  # tests: a disk without room
        self._backoff = backoff if backoff is not None else Backoff(1.0, 60.0)
        self._retry_at = 0.0  # monotonic time before which the spool is not tried again after an error
        self._outage = OutageLog(log)
        self.path, self.dead_path = folder / f"{name}.jsonl", folder / f"{name}.dead.jsonl"
        self.mark_path = folder / f".{name}.sent"
        self._lock = PathLock(folder / f".{name}.lock", f"the spool {self.path}")
        self.mutex = threading.RLock()  # the sink's worker, its close and a shutdown hand-over all touch the file
        self.sent_offset = self._read_mark()  # bytes at the head already delivered (this run's truth)
        self.mark_saved = True  # False while the mark file lags behind ``sent_offset`` (it could not be written)

    # -- the delivery mark -------------------------------------------------------------------------------

    def _read_mark(self) -> int:
        """The saved offset if it fits the spool (same inode, within the file, at a line start), else 0."""
        try:
            text = self.mark_path.read_bytes().decode("ascii").split()
            inode, offset, crc = int(text[0]), int(text[1]), int(text[2], 16)
            stat = self.path.stat()
        except (OSError, ValueError, IndexError):
            return 0
        if crc != zlib.crc32(f"{inode} {offset}".encode()) or inode != stat.st_ino or not 0 < offset <= stat.st_size:
            return 0
        with open(self.path, "rb") as fh:
            fh.seek(offset - 1)
            return offset if fh.read(1) == b"\n" else 0

    def _write_mark(self, offset: int) -> None:
        """Write the mark in place (created at the spool's first append, while there was room for it)."""
        inode = self.path.stat().st_ino
        text = f"{inode} {offset}"
        data = f"{text} {zlib.crc32(text.encode()):08x}".encode().ljust(MARK_BYTES - 1) + b"\n"
        fd = os.open(self.mark_path, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            if os.pwrite(fd, data, 0) != len(data):
                raise OSError(28, "short write of the spool's delivery mark")
        finally:
            os.close(fd)

    def _settle(self) -> None:
        """Make ``sent_offset`` durable. Everything delivered: the spool is emptied. Otherwise, where the disk has
        room for it, the rest is rewritten into a new file (the spool then holds only what waits, as one
        reads it), else the mark is saved. Raises the ``OSError`` of a mark that could not be saved
        (``mark_saved`` stays False, and this run still never re-sends what it sent)."""
        self.mark_saved = False
        size = self.path.stat().st_size
        if self.sent_offset >= size:
            self._forget_mark()  # first: a crash now re-sends, never skips
            os.truncate(self.path, 0)  # frees space, needs none
        elif not self._compact(size):
            self._write_mark(self.sent_offset)
            self.mark_saved = True
            return
        self.sent_offset = 0
        self.mark_saved = True

    def _compact(self, size: int) -> bool:
        """Rewrite the records not yet delivered into a new spool file, if the file system has twice their size
        free (so a nearly full disk is not filled by the copy); False if it was not done."""
        rest = size - self.sent_offset
        try:
            if self._free_bytes(self.path.parent) < 2 * rest + (1 << 20):
                return False
            with open(self.path, "rb") as src:
                src.seek(self.sent_offset)
                atomic_write(self.path, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))
        except OSError:
            return False
        # A new inode: the old mark no longer fits it (and a crash before the next line is safe). It must not
        # stay, though: a later spool file could be given the old inode number back.
        self._forget_mark()
        return True

    def _forget_mark(self) -> None:
        try:
            self._write_mark(0)
        except OSError:
            self.mark_path.unlink(missing_ok=True)  # no mark means offset 0 as well; unlinking needs no space

    # -- errors ------------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """False during the back-off after a spool error."""
        return time.monotonic() >= self._retry_at

    def _failed(self, what: str, error: OSError) -> None:
        self._retry_at = time.monotonic() + self._backoff.next_delay()
        self._outage.failed("%s: %s the spool %s (%s); tried again with back-off, logged again when it works",
                            self.who, what, self.path, error.strerror or error)

    def _worked(self) -> None:
        self._backoff.reset()
        self._outage.recovered("%s: the spool %s works again", self.who, self.path)

    # -- the records -------------------------------------------------------------------------------------

    def empty(self) -> bool:
        try:
            return self.path.stat().st_size <= self.sent_offset
        except FileNotFoundError:
            return True

    def count(self) -> int:
        """Records not yet delivered."""
        with self.mutex:
            if not self.path.is_file():
                return 0
            with open(self.path, "rb") as fh:
                fh.seek(self.sent_offset)
                return sum(1 for line in fh if line.strip())

    def append(self, bodies: list[bytes]) -> None:
        """Add records behind the others. A full disk can cut a line short; it is cut back off, so the next
        record does not land on the same line and the file stays whole JSON lines. Raises the ``OSError``."""
        with self.mutex:
            if not self.path.is_file():
                self.sent_offset = 0  # removed by hand: a new file starts with nothing delivered
            self._append(self.path, bodies)
            if not self.mark_path.exists():
                try:
                    self._write_mark(self.sent_offset)  # claim the mark's block now, while there is room
                except OSError:
                    self.mark_path.unlink(missing_ok=True)  # tried again when something is delivered

    def dead_letter(self, bodies: list[bytes]) -> None:
        self._append(self.dead_path, bodies)

    def _append(self, path: Path, bodies: list[bytes]) -> None:
        with self.mutex:
            size = path.stat().st_size if path.is_file() else 0
            try:
                with open(path, "a+b") as fh:
                    torn = size > 0 and os.pread(fh.fileno(), 1, size - 1) != b"\n"  # a crash mid-write
                    fh.write((b"\n" if torn else b"") + b"".join(body + b"\n" for body in bodies))
            except OSError:
                try:
                    os.truncate(path, size)
                except OSError:
                    pass  # the caller reports the first error; a torn last line is skipped when read back
                raise

    def head(self, n: int) -> list[bytes]:
        """The oldest ``n`` records not yet delivered (whole lines only), without reading the rest."""
        lines: list[bytes] = []
        with self.mutex:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.sent_offset)
                    for line in fh:
                        if not line.endswith(b"\n"):
                            break  # cut short by a crash: the next append ends it, the receiver refuses it
                        if line.strip():
                            lines.append(line.rstrip(b"\n"))
                        if len(lines) >= n:
                            break
            except FileNotFoundError:
                return []
            except OSError as e:
                self._failed("cannot read", e)
                return []
        return lines

    def drop_head(self, n: int) -> None:
        """Mark the oldest ``n`` records (as returned by ``head``) delivered. The mark moves in memory at once,
        so this run never sends them again, and is then saved unless the spool is backing off after an error;
        a mark that cannot be saved is logged (a restart before a later save succeeds sends those again)."""
        if n <= 0:
            return
        with self.mutex:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.sent_offset)
                    skipped = 0
                    while skipped < n:
                        line = fh.readline()
                        if not line.endswith(b"\n"):
                            break
                        self.sent_offset += len(line)
                        skipped += line.strip() != b""
            except OSError as e:
                self._failed("cannot read", e)
                return
            self._save(force=False)

    def _save(self, force: bool) -> None:
        if not force and not self.ready():
            self.mark_saved = False
            return
        try:
            self._settle()
        except OSError as e:
            self._failed("cannot save the delivery mark of", e)
        else:
            self._worked()

    def close(self) -> None:
        """Save a mark that lags behind (one last try), and unlock."""
        with self.mutex:
            if not self.mark_saved:
                self._save(force=True)
        self._lock.release()


def _free_bytes(folder: Path) -> int:
    fs = os.statvfs(folder)
    return fs.f_bavail * fs.f_frsize


def open_spool(folder: str, kind: str, key: str, who: str, backoff: Backoff | None = None) -> Spool:
    """The spool of one sink (``<kind>-<hash of key>`` in ``folder``), or a one-line ``SinkError`` naming ``who``
    when another daemon holds it or the folder cannot be used."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    try:
        return Spool(Path(folder), f"{kind}-{digest}", who, backoff)
    except PathInUse as e:
        raise SinkError(f"{who}: {e} (sinks[].spool_dir)") from None
    except OSError as e:
        raise SinkError(f"{who}: cannot use spool_dir {folder}: {e}") from None
