"""A sink's records that wait on disk, oldest first, and the records a receiver refused for good.

``<dir>/<name>.jsonl`` holds one JSON record per line, in the order they were emitted; ``<dir>/<name>.dead.jsonl``
(the dead-letter file) holds, in the same format, the records the receiver refused permanently (HTTP 4xx other
than 408/429, or a redirect), so they are neither retried for ever nor lost: after fixing the receiver or the URL,
``cat <name>.dead.jsonl >> <name>.jsonl`` sends them again at the next start. The spool is locked for as long as
its sink runs (``PathLock``): a second daemon on the same spool is refused at start-up instead of silently
dropping the lines the other appended while it rewrote the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

from streamdetect.sinks.base import SinkError
from streamdetect.util.files import atomic_write
from streamdetect.util.locks import PathInUse, PathLock


class Spool:
    def __init__(self, folder: Path, name: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.path, self.dead_path = folder / f"{name}.jsonl", folder / f"{name}.dead.jsonl"
        self._lock = PathLock(folder / f".{name}.lock", f"the spool {self.path}")
        self.mutex = threading.RLock()  # the sink's worker, its close and a shutdown hand-over all touch the file

    def empty(self) -> bool:
        try:
            return self.path.stat().st_size == 0
        except FileNotFoundError:
            return True

    def count(self) -> int:
        with self.mutex:
            if not self.path.is_file():
                return 0
            with open(self.path, "rb") as fh:
                return sum(1 for line in fh if line.strip())

    def append(self, bodies: list[bytes]) -> None:
        """Add records behind the others. A full disk can cut a line short; it is cut back off, so the next
        record does not land on the same line and the file stays whole JSON lines. Raises the ``OSError``."""
        self._append(self.path, bodies)

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
        """The oldest ``n`` records (whole lines only), without reading the rest of the file."""
        lines: list[bytes] = []
        with self.mutex:
            if not self.path.is_file():
                return lines
            with open(self.path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # cut short by a crash: the next append ends it, the receiver refuses it
                    if line.strip():
                        lines.append(line.rstrip(b"\n"))
                    if len(lines) >= n:
                        break
        return lines

    def drop_head(self, n: int) -> None:
        """Remove the oldest ``n`` records, atomically: a crash leaves the old file or the new one. The rest is
        copied, not loaded, so a spool of a long outage costs no memory."""
        if n <= 0:
            return
        with self.mutex, open(self.path, "rb") as src:
            skipped = 0
            while skipped < n:
                line = src.readline()
                if not line:
                    break
                if line.strip() and line.endswith(b"\n"):
                    skipped += 1
            atomic_write(self.path, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))

    def close(self) -> None:
        self._lock.release()


def open_spool(folder: str, kind: str, key: str, who: str) -> Spool:
    """The spool of one sink (``<kind>-<hash of key>`` in ``folder``), or a one-line ``SinkError`` naming ``who``
    when another daemon holds it or the folder cannot be used."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    try:
        return Spool(Path(folder), f"{kind}-{digest}")
    except PathInUse as e:
        raise SinkError(f"{who}: {e} (sinks[].spool_dir)") from None
    except OSError as e:
        raise SinkError(f"{who}: cannot use spool_dir {folder}: {e}") from None
