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
    return Scores(labels=bank.labels, event=event, vetoed_by=vetoed)
