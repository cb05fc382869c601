"""Can this process write there? Asked once at start-up for every path the daemon will write.

``os.access`` answers for the real user id and says yes to root on a read-only mount, so the check does what
the daemon will do: create the folder, create (and remove) a file in it, open an existing file for appending.
The answer names the user the process runs as: "permission denied" is only useful with whose permission.
"""

from __future__ import annotations

import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class OutputPath:
    """A file or folder a component will write; ``key`` is where the config sets it (``sinks[0].path``)."""

    key: str
    path: Path
    kind: Literal["file", "dir"]
    what: str


def current_user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def write_problem(path: Path, kind: Literal["file", "dir"]) -> str | None:
    """Why this process cannot write the file (or into the folder) ``path``, or None when it can. The folder
    is created if missing, as the writer would."""
    folder = path if kind == "dir" else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the folder {e.filename or folder} ({e.strerror})"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".streamdetect-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot create files in {folder} ({e.strerror})"
    if kind == "file" and path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            return f"cannot write {path} ({e.strerror})"
    return None


def output_problems(outputs: list[OutputPath]) -> list[str]:
    """One line per output this process cannot write: the config key, the path, the reason and the user."""
    lines = []
    for out in outputs:
        why = write_problem(out.path, out.kind)
        if why is not None:
            lines.append(f"{out.key}: {out.what} {out.path}: {why}; streamdetect runs as {current_user()}: give it "
                         "write access or choose another path")
    return lines
