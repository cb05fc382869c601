"""Window embeddings -> scores per event (cosine, or softmax against background prompts), the negative-prompt
veto, the top labels, and the open-set extras: what a window sounds like and how close it is to any prompt."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamdetect.pipeline.events import LabelScore
from streamdetect.prompts.bank import PromptBank


@dataclass(frozen=True)
class Scores:
    """Scores of a batch of windows: ``event[b, e]`` is the score of window b for event e (a cosine, or a
    probability in softmax mode)."""

    labels: tuple[str, ...]
    event: np.ndarray  # (batch, n_events)
    vetoed_by: list[list[str | None]]  # [batch][event] negative prompt that outscored the event, if any
    gated: np.ndarray | None = None  # (batch,) True where the energy gate skipped the window (scores are -1)
    embeddings: np.ndarray | None = None  # (batch, dim) window embeddings (zeros where gated)
    closest: list[tuple[str, float]] | None = None  # [batch] (prompt, cosine) of the closest prompt of any kind
    sounds_like: list[tuple[LabelScore, ...]] | None = None  # [batch] top vocabulary names by cosine

    def top(self, b: int, k: int = 3) -> tuple[LabelScore, ...]:
        order = np.argsort(-self.event[b], kind="stable")[:k]
        return tuple(LabelScore(self.labels[i], round(float(self.event[b, i]), 6)) for i in order)


def softmax_scores(cosine: np.ndarray, background: np.ndarray, logit_scale: float) -> np.ndarray:
    """Probability of each event among events + background prompts, ``softmax(logit_scale * cosine)`` as CLAP
    was trained; only the event columns are returned, so they sum to 1 minus the background's share."""
    logits = logit_scale * np.concatenate([cosine, background], axis=1).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    return prob[:, : cosine.shape[1]].astype(np.float32)


def score(embeddings: np.ndarray, bank: PromptBank, mode: str = "cosine", logit_scale: float = 1.0,
          top_k: int = 3) -> Scores:
    """Scores of L2-normalised window embeddings against each event (and its negatives)."""
    if embeddings.ndim != 2 or embeddings.shape[1] != bank.events.shape[1]:
        raise ValueError(
            f"expected window embeddings of shape (batch, {bank.events.shape[1]}), got {embeddings.shape}"
        )
    batch = embeddings.shape[0]
    cosine = embeddings @ bank.events.T
    vetoed: list[list[str | None]] = [[None] * len(bank.labels) for _ in range(batch)]
    neg = embeddings @ bank.negatives.T  # (batch, n_negatives)
    if bank.negatives.shape[0]:
        for b, n in zip(*np.nonzero(neg > cosine[:, bank.negative_owner]), strict=True):
            owner = int(bank.negative_owner[n])
            best = vetoed[b][owner]
            if best is None or neg[b, n] > neg[b, bank.negative_texts.index(best)]:
                vetoed[b][owner] = bank.negative_texts[n]
    background = embeddings @ bank.background.T if bank.background is not None else np.zeros((batch, 0))
    vocab = embeddings @ bank.vocabulary.T if bank.vocabulary is not None else np.zeros((batch, 0))
    if mode == "softmax":
        event = softmax_scores(cosine, background, logit_scale)
    elif mode == "cosine":
        event = cosine
    else:
        raise ValueError(f"unknown scoring mode {mode!r}")
    everything = np.concatenate([cosine, neg, background, vocab], axis=1)
    names = bank.labels + bank.negative_texts + bank.background_texts + bank.vocabulary_names
    best = everything.argmax(axis=1)
    closest = [(names[i], float(everything[b, i])) for b, i in enumerate(best)]
    sounds_like = None
    if vocab.shape[1]:
        k = min(top_k, vocab.shape[1])
        best_k = np.argpartition(-vocab, k - 1, axis=1)[:, :k]  # the k best, unordered; then sort only those
        ranked = np.take_along_axis(vocab, best_k, axis=1)
        order = np.take_along_axis(best_k, np.argsort(-ranked, axis=1, kind="stable"), axis=1)
        sounds_like = [tuple(LabelScore(bank.vocabulary_names[i], round(float(vocab[b, i]), 6)) for i in row)
                       for b, row in enumerate(order)]
    return Scores(labels=bank.labels, event=event, vetoed_by=vetoed, embeddings=embeddings, closest=closest,
                  sounds_like=sounds_like)


def gated_scores(open_scores: Scores | None, gated: np.ndarray, labels: tuple[str, ...]) -> Scores:
    """Scores for a batch in which the windows marked ``gated`` were never encoded: -1 (below any threshold)."""
    event = np.full((gated.shape[0], len(labels)), -1.0, dtype=np.float32)
    vetoed: list[list[str | None]] = [[None] * len(labels) for _ in range(gated.shape[0])]
    embeddings = closest = sounds_like = None
    if open_scores is not None:
        event[~gated] = open_scores.event
        open_rows = np.flatnonzero(~gated)

        def spread(rows: list, out: list) -> list:
            """Per-window values of the encoded windows put back at their places in the whole batch."""
            for row, b in enumerate(open_rows):
                out[b] = rows[row]
            return out

        spread(open_scores.vetoed_by, vetoed)
        if open_scores.embeddings is not None:
            embeddings = np.zeros((gated.shape[0], open_scores.embeddings.shape[1]), np.float32)
            embeddings[~gated] = open_scores.embeddings
        if open_scores.closest is not None:
            closest = spread(open_scores.closest, [("", -1.0)] * gated.shape[0])
        if open_scores.sounds_like is not None:
            sounds_like = spread(open_scores.sounds_like, [()] * gated.shape[0])
    return Scores(labels=labels, event=event, vetoed_by=vetoed, gated=gated, embeddings=embeddings,
                  closest=closest, sounds_like=sounds_like)
