"""Audio files through libsndfile (WAV, FLAC, OGG/Vorbis/Opus, MP3 where libsndfile has it), read in blocks."""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import Field

from streamdetect.sources.base import AudioSource, Gap, Resampler, SourceError, SourceOptions
from streamdetect.util.files import file_problem

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE, MAX_CHANNELS = 1_000, 768_000, 64
_HEADER_BYTES = 1 << 16  # where a WAV's fmt and data chunk headers are looked for


def wav_header_frames(path: Path) -> int | None:
    """The frame count a RIFF/WAVE header declares (data chunk size / block align), or None when the file is
    not such a WAV or its header leaves the size open (0 or 0xFFFFFFFF, as streaming writers do).

    libsndfile quietly reads what is there, so a truncated recording would pass for a short one; comparing
    with this tells them apart."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_BYTES)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and pos + 22 <= len(head):
            block_align = struct.unpack_from("<H", head, pos + 20)[0]
        elif chunk == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


class FileOptions(SourceOptions):
    path: str = Field(min_length=1, description="audio file (anything libsndfile reads), read once")
    block_s: float = Field(1.0, gt=0, le=60, description="seconds read from the file at a time")


class FileSource(AudioSource[FileOptions]):
    """Decodes, mixes to mono and resamples a file block by block, so memory stays flat for any length."""

    Options = FileOptions
    live = False

    def __init__(self, options: FileOptions, sample_rate: int, name: str | None = None):
        super().__init__(options, sample_rate, name or Path(options.path).name)
        self.path = Path(options.path)
        if (problem := file_problem(self.path)) is not None:
            raise SourceError(f"audio file {self.path} {problem}")
        try:
            with sf.SoundFile(self.path) as fh:
                self.file_rate, self.channels, self.frames = fh.samplerate, fh.channels, fh.frames
        except (sf.LibsndfileError, RuntimeError) as e:
            raise SourceError(
                f"cannot decode {self.path} as audio ({e}); supported formats: {', '.join(sorted(sf.available_formats()))}"
            ) from e
        # A damaged header can claim any rate or channel count; reading one block of it could then ask for
        # gigabytes (or make the resampler's ratio absurd). Real recordings sit well inside these bounds.
        if not MIN_RATE <= self.file_rate <= MAX_RATE or not 1 <= self.channels <= MAX_CHANNELS:
            raise SourceError(f"{self.path}: {self.file_rate} Hz, {self.channels} channel(s) is outside what is "
                              f"supported ({MIN_RATE}-{MAX_RATE} Hz, 1-{MAX_CHANNELS} channels); is the header "
                              "damaged?")
        declared = wav_header_frames(self.path)
        if declared is not None and declared > self.frames:
            log.warning("%s is truncated: its header says %.1f s of audio, the file holds %.1f s; analysing the "
                        "%.1f s there are", self.path, declared / self.file_rate, self.duration_s, self.duration_s)

    @property
    def duration_s(self) -> float:
        return self.frames / self.file_rate if self.file_rate else 0.0

    def blocks(self, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        resample = Resampler(self.file_rate, self.sample_rate)
        block_frames = max(1, int(self.options.block_s * self.file_rate))
        with sf.SoundFile(self.path) as fh:
            while not stop.is_set():
                try:
                    data = fh.read(block_frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as e:  # corrupt data after a good header
                    raise SourceError(f"{self.path}: cannot decode the audio after {fh.tell() / self.file_rate:.1f} "
                                      f"s ({e}); the file is damaged") from e
                last = data.shape[0] < block_frames
                mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
                out = resample(mono, last=last)
                if out.size:
                    yield out
                if last:
                    return


def read_blocks(path: Path | str, sample_rate: int, block_s: float | None = None) -> Iterator[np.ndarray]:
    """A whole file's audio as mono float32 blocks at ``sample_rate``, for code that reads a file outside a
    run (examples, tags, the search index, replays). It streams: memory stays one block whatever the length.
    The file is opened at once, so a missing or undecodable file raises ``SourceError`` here, not at the
    first block."""
    options = FileOptions(path=str(path)) if block_s is None else FileOptions(path=str(path), block_s=block_s)
    source = FileSource(options, sample_rate)
    return (block for block in source.blocks(threading.Event()) if isinstance(block, np.ndarray))


def read_audio(path: Path | str, sample_rate: int, max_s: float | None = None) -> np.ndarray:
    """A file (or its first ``max_s`` seconds, the rest is not decoded) as one array, like ``read_blocks``.
    Holds it all in memory: for clips and test material, not for recordings of any length."""
    limit = None if max_s is None else int(max_s * sample_rate)
    parts, total = [], 0
    for block in read_blocks(path, sample_rate):
        parts.append(block)
        total += block.size
        if limit is not None and total >= limit:
            break
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio if limit is None else audio[:limit]


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}


def audio_files(target: Path) -> list[Path]:
    """A file, or every audio file below a directory (sorted): what the batch verbs take as input."""
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    return [target]
