"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every file streamdetect rewrites while something may read it (the prompt cache, refinement vectors, the search
index, embedding-log chunks, the webhook spool, saved clips) is written through ``atomic_write``, so a crash, a
full disk or a kill in the middle of a write can leave at worst a stray temp file, never a truncated target.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# What a temp file of ``atomic_write`` is called: hidden, named after its target, with a random part so that
# two writers of one target never share a temp file. A crash leaves one behind; cleanups find it by this.
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{8}\.tmp$")
_MAX_TARGET_CHARS = 200  # of the target's name inside the temp name: the whole must stay within NAME_MAX (255)

Writer = Callable[[BinaryIO], object]


def file_problem(path: Path | str) -> str | None:
    """Why ``path`` cannot be read as a regular file, in words that finish "<path> ...": "does not exist", "is a
    folder", "is not a regular file (a FIFO)", "is a symlink loop"; None when it is one. A FIFO or ``/dev/zero``
    opened as audio would block or never end, and "does not exist" for a folder sends the user looking for a
    file that is there."""
    try:
        mode = os.stat(path).st_mode  # through links
    except FileNotFoundError:
        return "is a link to nothing" if os.path.islink(path) else "does not exist"
    except OSError as e:
        return "is a symlink loop" if e.errno == errno.ELOOP else f"cannot be checked ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder"
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "special")
    return f"is not a regular file ({kind})"


def temp_path(path: Path) -> Path:
    """A fresh temp file name for ``path``, in the same folder (``os.replace`` is atomic only within one
    file system, and the folder is the one place certain to be on the target's)."""
    return path.with_name(f".{path.name[:_MAX_TARGET_CHARS]}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: Path | str, data: bytes | str | Writer, *, fsync: bool = True, encoding: str = "utf-8",
                 ) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.

    ``data`` is bytes, text (written in ``encoding``) or a callable that writes to the open binary file handle
    it is given (``np.save``, ``np.savez``, ``soundfile.write``; the handle is readable too, as some encoders
    seek back and read their header). With ``fsync`` the data reach the disk before the rename, so a power cut
    cannot leave an empty file under the new name (the rename itself may still be lost: then the old file
    stays, which is whole too). On any failure the temp file is removed and the error raised; the target is
    untouched. The temp file is created with the ordinary permissions (0666 less the umask), not mkstemp's
    0600, so a replaced file keeps the mode any other file written here would get.
    """
    path = Path(path)
    while True:
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # 32 random bits taken: practically never, but never overwrite another's
            continue
    try:
        with os.fdopen(fd, "w+b") as fh:
            if isinstance(data, str):
                fh.write(data.encode(encoding))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
