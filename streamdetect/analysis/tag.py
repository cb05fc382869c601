"""Zero-shot tagging of whole clips: each file's pooled embedding against a set of labels.

A file is embedded as a whole by ``pipeline.clip.clip_embedding`` (consecutive pieces of the model's 10 s input,
averaged), so a long recording is described by all of it rather than by its first 10 s.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.embed.clip import clip_embedding
from streamdetect.embed.encoder.base import AudioEncoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.prompts.bank import PromptBank
from streamdetect.sources.base import SourceError


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

    for path in tqdm(files, desc="tagging", unit="file", file=sys.stderr, disable=not progress or len(files) < 2):
        try:
            yield path, tag(clip_embedding(path, frontend, encoder), bank, logit_scale, top)
        except (SourceError, ValueError) as e:
            yield path, str(e)
