"""The folder of audio examples the dashboard stores (uploads and "use as example"), and the only way into it.

The browser never names a path. An upload is decoded to check it is audio, then written under
``<root>/<safe_name(label)>/<content hash>_<safe_name(file stem)>.<format>``: every part is made here, the
label and stem through ``safe_name`` (no separator, never ``.``/``..``, no leading dot), and the folder must
resolve inside the root. Examples are named in requests by an opaque id (a digest of the path), looked up among
the paths the running config lists and the files found in this folder; a symlink or anything resolving outside
the root is never read, served or removed. A file is removed only when it is one of ours (its name has our
pattern) and no event lists it any more (also an upload that no save listed within a day).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from streamdetect.config import Config
from streamdetect.embed.clip import MAX_EXAMPLE_S
from streamdetect.util.files import atomic_write
from streamdetect.util.names import safe_name
from streamdetect.util.paths import state_dir

# What libsndfile calls the formats accepted, and the suffix the stored file gets (never the browser's).
FORMATS = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}
FILE_NAME = re.compile(r"^(?P<hash>[0-9a-f]{16})(?:_[A-Za-z0-9._-]{1,80})?\.(?:wav|flac|ogg|mp3)$")
EXAMPLE_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_STEM_CHARS = 40
ABANDONED_AFTER_S = 86_400.0  # an upload no save has listed after a day is taken for abandoned


class ExampleError(ValueError):
    """The upload is not an audio file this daemon can use; the message says what to send instead."""


def example_id(path: str | Path) -> str:
    """The id a request names an example by: a digest of its absolute path, so it says nothing a browser could
    turn into another path."""
    return hashlib.sha256(os.path.abspath(path).encode("utf-8")).hexdigest()[:16]


def checked_audio(data: bytes, max_s: float = MAX_EXAMPLE_S) -> tuple[str, float]:
    """(suffix, duration in seconds) of an uploaded file, decoded in full (a block at a time, and only up to
    ``max_s``: a small file may decode to hours); ``ExampleError`` if it is not audio or lasts longer."""
    if not data:
        raise ExampleError("the file is empty; send WAV, FLAC, OGG or MP3")
    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            kind, rate, frames = fh.format, fh.samplerate, 0
            while True:
                block = fh.read(65536, dtype="float32", always_2d=True)
                frames += block.shape[0]
                if block.shape[0] < 65536 or frames > max_s * max(rate, 1):
                    break
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).rsplit(": ", 1)[-1][:120]  # libsndfile's reason, without the name of the buffer
        raise ExampleError(f"not an audio file that can be decoded ({reason}); send WAV, FLAC, OGG or MP3") from None
    if kind not in FORMATS:
        raise ExampleError(f"{kind} audio is not accepted here; send WAV, FLAC, OGG or MP3")
    if frames == 0 or rate <= 0:
        raise ExampleError("the file holds no audio; send WAV, FLAC, OGG or MP3")
    if frames > max_s * rate:
        raise ExampleError(f"the file lasts more than {max_s:g} s; an audio example may last at most {max_s:g} s "
                           "(cut it to the sound)")
    return FORMATS[kind], frames / rate


def examples_root(config_path: Path | None) -> Path:
    """Next to the config file (relative example paths are taken from its folder, so they move together);
    without a config file, in the state directory."""
    return Path(os.path.abspath((config_path.parent if config_path is not None else state_dir()) / "examples"))


@dataclass(frozen=True)
class ExampleFolder:
    root: Path

    def _inside(self, path: Path) -> bool:
        try:
            return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.root))
        except OSError:
            return False

    def owns(self, path: str | Path) -> bool:
        """A regular file (not a symlink) of our name pattern in a label folder of this root."""
        path = Path(os.path.abspath(path))
        folder = path.parent
        return (FILE_NAME.match(path.name) is not None and folder.parent == Path(os.path.abspath(self.root))
                and not folder.is_symlink() and not path.is_symlink() and path.is_file() and self._inside(path))

    def files(self) -> list[Path]:
        """Our files on disk, stored but perhaps not yet listed by an event (an upload before its save)."""
        found: list[Path] = []
        if self.root.is_dir():
            for folder in os.scandir(self.root):
                if folder.is_dir(follow_symlinks=False):
                    found += [Path(f.path) for f in os.scandir(folder.path)
                              if FILE_NAME.match(f.name) and f.is_file(follow_symlinks=False)]
        return found

    def store(self, label: str, data: bytes, name: str = "") -> Path:
        """Check ``data`` is audio and write it for ``label``; the same sound stored twice is one file.
        ``name`` (the browser's file name) only lends its stem, through ``safe_name``, to the stored name."""
        suffix, _ = checked_audio(data)
        digest = hashlib.sha256(data).hexdigest()[:16]
        folder = self.root / safe_name(label)
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not self._inside(folder):
            raise ExampleError(f"the examples folder {folder} is a link or lies outside {self.root}; remove it")
        same = next((p for p in self.files() if p.parent == folder and p.name.startswith(digest)), None)
        if same is not None:
            return same
        stem = Path(name).stem[:MAX_STEM_CHARS] if name else ""
        stem = safe_name(stem) if stem else ""
        path = folder / (f"{digest}_{stem}.{suffix}" if stem else f"{digest}.{suffix}")
        atomic_write(path, data)
        return path

    def abandoned(self, max_age_s: float = ABANDONED_AFTER_S) -> list[str]:
        """Our files older than ``max_age_s``: with ``discard``, uploads that no save ever listed are cleared."""
        now = time.time()
        return [str(p) for p in self.files() if now - p.stat(follow_symlinks=False).st_mtime > max_age_s]

    def discard(self, paths: Iterable[str], still_used: set[str]) -> list[Path]:
        """Remove those of ``paths`` that are our files and not in ``still_used`` (absolute paths)."""
        removed = []
        for text in paths:
            path = Path(os.path.abspath(text))
            if str(path) not in still_used and self.owns(path):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def describe(path: str, folder: ExampleFolder) -> dict:
    """What the settings form shows of one example: its name and length, and whether it can be played (only
    files in the managed folder are served). Something in that folder that is not one of ours (a link put
    there) is not even opened."""
    ours = folder.owns(path)
    duration = None
    if ours or not Path(os.path.abspath(path)).is_relative_to(folder.root):
        try:
            duration = round(float(sf.info(path).duration), 2)
        except (sf.LibsndfileError, RuntimeError, OSError):
            duration = None
    return {"id": example_id(path), "name": Path(path).name, "duration_s": duration, "playable": ours}


def known_examples(config: Config, folder: ExampleFolder) -> dict[str, str]:
    """Every example a request may name, by id: those the running config lists and the managed folder's files."""
    known = {example_id(p): str(p) for p in folder.files()}
    return known | {example_id(p): p for e in config.events for p in e.examples}
