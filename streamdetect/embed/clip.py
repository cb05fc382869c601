"""A whole clip -> one embedding: consecutive pieces of the model's input length, embedded and averaged.

Used wherever a file stands for a sound as a whole: audio examples of an event, ``tag``, ``search --like`` and
feedback from saved clips. A long recording is described by all of it rather than by its first 10 s.

The pieces are decoded, embedded and summed ``batch`` at a time, never held all at once: a 137 kB FLAC of
silence decodes to hours of audio, and a list of its pieces took 2 GB. ``max_s`` (what an audio example may
last) refuses such a file, with the limit in the message: before any decoding when its header says how long it
is, else as soon as the decoding passes the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.embed.vectors import normalize
from streamdetect.sources.base import SourceError
from streamdetect.sources.file import FileOptions, FileSource, read_blocks

# What an audio example (a config's or an upload) may last: it stands for one sound, and every second of it is
# embedded when the config is applied. A limit on bytes is none on audio (10 MiB of FLAC silence is 230 h).
MAX_EXAMPLE_S = 300.0

# features -> embeddings: an AudioEncoder, or the lazily opened one an example embedder holds
EncodeFn = Callable[[np.ndarray], np.ndarray]


def pieces(path: Path, sample_rate: int, piece_s: float) -> Iterator[np.ndarray]:
    """Consecutive pieces of at most ``piece_s`` of a file at the model rate (a short file is one piece)."""
    size = int(piece_s * sample_rate)
    pending = np.zeros(0, np.float32)
    for block in read_blocks(path, sample_rate):
        pending = np.concatenate([pending, block])
        while pending.shape[0] >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending.shape[0] or size == 0:
        yield pending


def too_long(path: Path, max_s: float) -> SourceError:
    return SourceError(f"{path} lasts more than {max_s:g} s; an audio example may last at most {max_s:g} s "
                       "(cut it to the sound)")


def batches(path: Path, sample_rate: int, piece_s: float, batch: int,
            max_s: float | None = None) -> Iterator[list[np.ndarray]]:
    """``pieces`` with audio, ``batch`` at a time; ``SourceError`` for a file longer than ``max_s``: at once when
    its header says so, else once its decoding passes the limit (a header may say less, or nothing)."""
    if max_s is not None and FileSource(FileOptions(path=str(path)), sample_rate).duration_s > max_s:
        raise too_long(path, max_s)
    held: list[np.ndarray] = []
    seconds = 0.0
    for piece in pieces(path, sample_rate, piece_s):
        seconds += piece.shape[0] / sample_rate
        if max_s is not None and seconds > max_s:
            raise too_long(path, max_s)
        if piece.shape[0]:
            held.append(piece)
        if len(held) == batch:
            yield held
            held = []
    if held:
        yield held


def clip_embedding(path: Path, frontend: LogMelFrontend, encoder: EncodeFn, batch: int = 4,
                   max_s: float | None = None) -> np.ndarray:
    """The normalised mean of the pieces' embeddings; ``SourceError`` for a file longer than ``max_s``."""
    params = frontend.params
    total: np.ndarray | float = 0.0
    count = 0
    for group in batches(path, params.sample_rate, params.max_length_s, batch, max_s):
        total = total + encoder(frontend(group)).sum(axis=0, dtype=np.float64)
        count += len(group)
    if not count:
        raise ValueError(f"{path} holds no audio")
    return normalize(np.asarray(total, np.float64) / count).astype(np.float32)
