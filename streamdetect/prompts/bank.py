"""The prompt bank: each event's ensemble embedding, its negatives, and the open-set prompts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streamdetect.config import EventConfig
from streamdetect.embed.vectors import event_ensemble, normalize
from streamdetect.prompts.cache import PromptCache, TextEmbedder, embed_texts

ExampleFn = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class PromptBank:
    """Per-event ensemble embeddings, the confuser (negative) prompts that can veto them, and the open-set
    prompts: background (competes in softmax scoring, never fires) and a vocabulary (``sounds_like``)."""

    labels: tuple[str, ...]
    events: np.ndarray  # (n_events, dim), L2-normalised ensemble of each event's prompts (and examples)
    negatives: np.ndarray  # (n_negatives, dim)
    negative_owner: np.ndarray  # (n_negatives,) index of the event each negative belongs to
    negative_texts: tuple[str, ...]
    background: np.ndarray | None = None  # (n_background, dim)
    background_texts: tuple[str, ...] = ()
    vocabulary: np.ndarray | None = None  # (n_names, dim)
    vocabulary_names: tuple[str, ...] = ()
    privacy: np.ndarray | None = None  # (dim,) normalised mean of the speech prompts; None: privacy is off

    @classmethod
    def build(cls, events: Sequence[EventConfig], cache: PromptCache, embedder: Callable[[], TextEmbedder], *,
              examples: ExampleFn | None = None, background: Sequence[str] = (),
              vocabulary: Sequence[str] = (), template: str = "{}", privacy: Sequence[str] = ()) -> PromptBank:
        texts = [p for e in events for p in e.prompts]
        neg_texts = [n for e in events for n in e.negatives]
        vocab_texts = [template.format(name) for name in vocabulary]
        all_texts = texts + neg_texts + list(background) + vocab_texts + list(privacy)
        audio: dict[int, np.ndarray] = {}
        if any(e.examples for e in events):
            if examples is None:
                raise ValueError("events with examples need an example embedder")
            audio = {i: normalize(examples(e.examples)) for i, e in enumerate(events) if e.examples}
        if all_texts:
            matrix = embed_texts(all_texts, cache, embedder)
        else:  # every event is defined by examples only
            matrix = np.zeros((0, next(iter(audio.values())).shape[1]), np.float32)
        parts = np.split(matrix, np.cumsum([len(texts), len(neg_texts), len(background), len(vocab_texts)]))
        prompt_part, neg_part, bg_part, vocab_part, privacy_part = parts
        ensembles, offset = [], 0
        for i, event in enumerate(events):
            text = prompt_part[offset : offset + len(event.prompts)]
            ensembles.append(event_ensemble(text, audio.get(i, text[:0]), event.example_weight))
            offset += len(event.prompts)
        owner = np.array([i for i, e in enumerate(events) for _ in e.negatives], dtype=np.int64)
        dim = matrix.shape[1]
        return cls(
            labels=tuple(e.label for e in events),
            events=np.stack(ensembles).astype(np.float32),
            negatives=neg_part if len(neg_texts) else np.zeros((0, dim), np.float32),
            negative_owner=owner,
            negative_texts=tuple(neg_texts),
            background=bg_part if len(background) else None,
            background_texts=tuple(background),
            vocabulary=vocab_part if len(vocab_texts) else None,
            vocabulary_names=tuple(vocabulary),
            privacy=normalize(privacy_part.mean(axis=0)).astype(np.float32) if len(privacy) else None,
        )
