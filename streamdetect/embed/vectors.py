"""Vector helpers shared by the prompt bank, the scoring and the tools: unit length, ensembles."""

from __future__ import annotations

import numpy as np


def normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def event_ensemble(text: np.ndarray, examples: np.ndarray, example_weight: float) -> np.ndarray:
    """One event's direction: the normalised mean of its prompts and of its examples, mixed by ``example_weight``.

    Each side is normalised before mixing so the weight is the share of each side whatever their counts.
    Audio-to-audio cosines of CLAP are much higher than audio-to-text ones, so examples also raise the scores.
    """
    if not examples.shape[0]:
        return normalize(text.mean(axis=0))
    if not text.shape[0]:
        return normalize(examples.mean(axis=0))
    mixed = (1.0 - example_weight) * normalize(text.mean(axis=0)) + example_weight * normalize(examples.mean(axis=0))
    return normalize(mixed)
