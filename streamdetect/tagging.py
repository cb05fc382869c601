"""Zero-shot tagging of whole clips: each file's pooled embedding against a set of labels.

Clips longer than the model's 10 s input are cut into consecutive 10 s pieces whose normalised embeddings are
averaged, so a long recording is described by all of it rather than by its first 10 s.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.encoder import AudioEncoder
from streamdetect.frontend import LogMelFrontend
from streamdetect.prompts import PromptBank, normalize
from streamdetect.sources.file import FileOptions, FileSource

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"}


def audio_files(target: Path) -> list[Path]:
    """A file, or every audio file below a directory (sorted)."""
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    return [target]


def pieces(path: Path, sample_rate: int, piece_s: float) -> Iterator[np.ndarray]:
    """Consecutive pieces of at most ``piece_s`` of a file at the model rate (a short file is one piece)."""
    size = int(piece_s * sample_rate)
    pending = np.zeros(0, np.float32)
    for block in FileSource(FileOptions(path=str(path)), sample_rate).blocks(threading.Event()):
        pending = np.concatenate([pending, block])
        while pending.shape[0] >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending.shape[0] or size == 0:
        yield pending


def clip_embedding(path: Path, frontend: LogMelFrontend, encoder: AudioEncoder, batch: int = 4) -> np.ndarray:
    params = frontend.params
    chunks = [p for p in pieces(path, params.sample_rate, params.max_length_s) if p.shape[0]]
    if not chunks:
        raise ValueError(f"{path} holds no audio")
    embeddings = np.concatenate([encoder(frontend(chunks[i : i + batch])) for i in range(0, len(chunks), batch)])
    return normalize(embeddings.mean(axis=0))


@dataclass(frozen=True)
class Tag:
    label: str
    cosine: float
    probability: float  # softmax over the labels with the model's logit scale


def tag(embedding: np.ndarray, bank: PromptBank, logit_scale: float, top: int) -> list[Tag]:
    cosine = bank.events @ embedding
    logits = logit_scale * cosine
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    order = np.argsort(-cosine, kind="stable")[:top]
    return [Tag(bank.labels[i], round(float(cosine[i]), 6), round(float(prob[i]), 6)) for i in order]


def tag_files(files: list[Path], frontend: LogMelFrontend, encoder: AudioEncoder, bank: PromptBank,
              logit_scale: float, top: int, progress: bool = True) -> Iterator[tuple[Path, list[Tag] | str]]:
    """(file, tags) per file; a file that cannot be read yields its error message instead."""
    from tqdm import tqdm

    from streamdetect.sources.base import SourceError

    for path in tqdm(files, desc="tagging", unit="file", file=sys.stderr, disable=not progress or len(files) < 2):
        try:
            yield path, tag(clip_embedding(path, frontend, encoder), bank, logit_scale, top)
        except (SourceError, ValueError) as e:
            yield path, str(e)
