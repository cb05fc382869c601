"""Window embeddings -> cosine scores per event, with the negative-prompt veto and the top labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamdetect.events import LabelScore
from streamdetect.prompts import PromptBank


@dataclass(frozen=True)
class Scores:
    """Scores of a batch of windows: ``event[b, e]`` is the cosine of window b with event e."""

    labels: tuple[str, ...]
    event: np.ndarray  # (batch, n_events)
    vetoed_by: list[list[str | None]]  # [batch][event] negative prompt that outscored the event, if any
    gated: np.ndarray | None = None  # (batch,) True where the energy gate skipped the window (scores are -1)
    embeddings: np.ndarray | None = None  # (batch, dim) window embeddings; rows of gated windows are zero

    def top(self, b: int, k: int = 3) -> tuple[LabelScore, ...]:
        order = np.argsort(-self.event[b], kind="stable")[:k]
        return tuple(LabelScore(self.labels[i], round(float(self.event[b, i]), 6)) for i in order)


def score(embeddings: np.ndarray, bank: PromptBank) -> Scores:
    """Cosine similarity of L2-normalised window embeddings with each event (and its negatives)."""
    if embeddings.ndim != 2 or embeddings.shape[1] != bank.events.shape[1]:
        raise ValueError(
            f"expected window embeddings of shape (batch, {bank.events.shape[1]}), got {embeddings.shape}"
        )
    event = embeddings @ bank.events.T
    vetoed: list[list[str | None]] = [[None] * len(bank.labels) for _ in range(embeddings.shape[0])]
    if bank.negatives.shape[0]:
        neg = embeddings @ bank.negatives.T  # (batch, n_negatives)
        for b, n in zip(*np.nonzero(neg > event[:, bank.negative_owner]), strict=True):
            owner = int(bank.negative_owner[n])
            best = vetoed[b][owner]
            if best is None or neg[b, n] > neg[b, bank.negative_texts.index(best)]:
                vetoed[b][owner] = bank.negative_texts[n]
    return Scores(labels=bank.labels, event=event, vetoed_by=vetoed, embeddings=embeddings)


def gated_scores(open_scores: Scores | None, gated: np.ndarray, labels: tuple[str, ...]) -> Scores:
    """Scores for a batch in which the windows marked ``gated`` were never encoded: -1 (below any threshold)."""
    event = np.full((gated.shape[0], len(labels)), -1.0, dtype=np.float32)
    vetoed: list[list[str | None]] = [[None] * len(labels) for _ in range(gated.shape[0])]
    embeddings = None
    if open_scores is not None:
        event[~gated] = open_scores.event
        if open_scores.embeddings is not None:
            embeddings = np.zeros((gated.shape[0], open_scores.embeddings.shape[1]), np.float32)
            embeddings[~gated] = open_scores.embeddings
        for row, b in enumerate(np.flatnonzero(~gated)):
            vetoed[b] = open_scores.vetoed_by[row]
    return Scores(labels=labels, event=event, vetoed_by=vetoed, gated=gated, embeddings=embeddings)
