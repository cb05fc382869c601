"""Text prompts -> embedding matrices, cached on disk per model so a restart does not re-embed.

The cache key is the sha256 of the exported text encoder and tokenizer plus the prompt text, so a cache built
by another model is never used by mistake. The text encoder is opened only when a prompt is not cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.config import EventConfig
from streamdetect.manifest import ModelBundle

log = logging.getLogger(__name__)

TextEmbedder = Callable[[list[str]], np.ndarray]


def normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class PromptCache:
    """One ``.npy`` file per (model, prompt) under ``directory/<model key>/``; writes are atomic."""

    def __init__(self, directory: Path, model_key: str, dim: int | None = None):
        self.directory = Path(directory) / model_key[:16]
        self.dim = dim  # embeddings of another shape (another model's, a damaged file) are not used

    def _path(self, text: str) -> Path:
        return self.directory / (hashlib.sha256(text.encode("utf-8")).hexdigest()[:32] + ".npy")

    def get(self, text: str) -> np.ndarray | None:
        path = self._path(text)
        if not path.is_file():
            return None
        try:
            embedding = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            log.warning("ignoring unreadable prompt cache file %s (%s)", path, e)
            return None
        if embedding.ndim != 1 or (self.dim is not None and embedding.shape[0] != self.dim) or \
                embedding.dtype.kind != "f" or not np.isfinite(embedding).all():
            log.warning("ignoring prompt cache file %s: shape %s %s is not a finite %s-dim embedding of this model; "
                        "it is embedded again", path, embedding.shape, embedding.dtype, self.dim or "n")
            return None
        return embedding

    def put(self, text: str, embedding: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(embedding, dtype=np.float32))
        os.replace(tmp, self._path(text))


def embed_texts(texts: Sequence[str], cache: PromptCache, embedder: Callable[[], TextEmbedder]) -> np.ndarray:
    """Embeddings for ``texts`` in order; ``embedder()`` is called (once) only if some text is not cached."""
    unique = list(dict.fromkeys(texts))
    found = {t: cache.get(t) for t in unique}
    missing = [t for t, e in found.items() if e is None]
    if missing:
        log.info("embedding %d prompt(s) with the text encoder", len(missing))
        fresh = embedder()(missing)
        for text, emb in zip(missing, fresh, strict=True):
            cache.put(text, emb)
            found[text] = emb
    return normalize(np.stack([found[t] for t in texts]).astype(np.float32))


@dataclass(frozen=True)
class PromptBank:
    """Per-event ensemble embeddings and the confuser (negative) prompts that can veto them."""

    labels: tuple[str, ...]
    events: np.ndarray  # (n_events, dim), L2-normalised mean of each event's prompt embeddings
    negatives: np.ndarray  # (n_negatives, dim)
    negative_owner: np.ndarray  # (n_negatives,) index of the event each negative belongs to
    negative_texts: tuple[str, ...]

    @classmethod
    def build(cls, events: Sequence[EventConfig], cache: PromptCache, embedder: Callable[[], TextEmbedder]):
        texts = [p for e in events for p in e.prompts]
        neg_texts = [n for e in events for n in e.negatives]
        matrix = embed_texts(texts + neg_texts, cache, embedder)
        prompt_part, neg_part = matrix[: len(texts)], matrix[len(texts) :]
        ensembles, offset = [], 0
        for event in events:
            ensembles.append(prompt_part[offset : offset + len(event.prompts)].mean(axis=0))
            offset += len(event.prompts)
        owner = np.array([i for i, e in enumerate(events) for _ in e.negatives], dtype=np.int64)
        dim = matrix.shape[1]
        return cls(
            labels=tuple(e.label for e in events),
            events=normalize(np.stack(ensembles)),
            negatives=neg_part if len(neg_texts) else np.zeros((0, dim), np.float32),
            negative_owner=owner,
            negative_texts=tuple(neg_texts),
        )


def prompt_bank_for(bundle: ModelBundle, events: Sequence[EventConfig], cache_dir: str | Path | None,
                    runtime=None, refined: bool = True) -> PromptBank:
    """The bank for a model directory; the cache defaults to ``<model>/prompt_cache``.

    ``refined``: apply the feedback refinements kept in ``<model>/refinements`` (see ``streamdetect.refine``).
    """
    from streamdetect.encoder import TextEncoder

    cache = PromptCache(Path(cache_dir) if cache_dir else bundle.directory / "prompt_cache", bundle.text_key,
                        bundle.embedding_dim)
    bank = PromptBank.build(events, cache, lambda: TextEncoder(bundle, runtime))
    if not refined:
        return bank
    from streamdetect.refine import RefinementStore, apply_refinements

    return apply_refinements(bank, [list(e.prompts) for e in events], RefinementStore(refinements_dir(bundle)),
                             bundle.text_key)


def refinements_dir(bundle: ModelBundle) -> Path:
    return bundle.directory / "refinements"
