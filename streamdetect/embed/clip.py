"""A whole clip -> one embedding: consecutive pieces of the model's input length, embedded and averaged.

Used wherever a file stands for a sound as a whole: audio examples of an event, ``tag``, ``search --like`` and
feedback from saved clips. A long recording is described by all of it rather than by its first 10 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.embed.vectors import normalize
from streamdetect.sources.file import read_blocks

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


def clip_embedding(path: Path, frontend: LogMelFrontend, encoder: EncodeFn, batch: int = 4) -> np.ndarray:
    params = frontend.params
    chunks = [p for p in pieces(path, params.sample_rate, params.max_length_s) if p.shape[0]]
    if not chunks:
        raise ValueError(f"{path} holds no audio")
    embeddings = np.concatenate([encoder(frontend(chunks[i : i + batch])) for i in range(0, len(chunks), batch)])
    return normalize(embeddings.mean(axis=0))
