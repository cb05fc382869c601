"""An advisory lock on a folder (or file) that one running daemon owns: its spool, clips or embedding log.

Two daemons writing one spool, one clips folder or one embedding log lose each other's data (a spool
rewrite drops the lines the other appended, retention takes the other's half-written clip for an interrupted
write). Sharing is refused instead: the owner holds ``flock`` on a lock file next to the data for as long as it
runs, and a second owner fails at start-up with one line naming the path and the holder's pid. ``flock`` is
released by the kernel when the holder exits, however it exits (SIGKILL, a crash), so a stale lock file
never blocks a restart. It is advisory and local: an NFS folder shared between machines is not covered.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class PathInUse(RuntimeError):
    """Another process (or another part of this one) holds the lock."""


class PathLock:
    """Holds ``flock(LOCK_EX | LOCK_NB)`` on ``lock_file`` until ``release``; ``what`` names the guarded
    data in the error ("the webhook spool /var/lib/streamdetect/spool/webhook-ab12.jsonl").

    The lock belongs to the open file, so a second ``PathLock`` on the same file fails in the same process
    too: two sinks of one config pointed at one spool clash just as two daemons do.
    """

    def __init__(self, lock_file: Path, what: str):
        self.path = Path(lock_file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if holder == str(os.getpid()):
                raise PathInUse(f"{what} is configured twice in this daemon (lock {self.path}): give each its own "
                                "folder") from None
            raise PathInUse(f"{what} is in use by another running streamdetect (pid {holder}; lock {self.path}): "
                            "give each daemon its own folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock (the lock file stays: removing it would race with the next owner's open)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
