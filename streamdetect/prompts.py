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


class EmbeddingCache:
    """One ``.npy`` file per key under ``directory``; writes are atomic. An embedding of another shape or kind
    (another model's, a damaged file) is ignored with a warning and computed again."""

    def __init__(self, directory: Path, dim: int | None = None, what: str = "embedding cache"):
        self.directory, self.dim, self.what = Path(directory), dim, what

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".npy")

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            embedding = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            log.warning("ignoring unreadable %s file %s (%s)", self.what, path, e)
            return None
        if embedding.ndim != 1 or (self.dim is not None and embedding.shape[0] != self.dim) or \
                embedding.dtype.kind != "f" or not np.isfinite(embedding).all():
            log.warning("ignoring %s file %s: shape %s %s is not a finite %s-dim embedding of this model; "
                        "it is embedded again", self.what, path, embedding.shape, embedding.dtype, self.dim or "n")
            return None
        return embedding

    def put(self, key: str, embedding: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(embedding, dtype=np.float32))
        os.replace(tmp, self._path(key))


class PromptCache(EmbeddingCache):
    """Prompt text -> embedding, under ``directory/<model key>/``: another model's prompts are never used."""

    def __init__(self, directory: Path, model_key: str, dim: int | None = None):
        super().__init__(Path(directory) / model_key[:16], dim, "prompt cache")


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


ExampleFn = Callable[[Sequence[str]], np.ndarray]


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


def vocabulary_names(spec: str) -> list[str]:
    """Names of a vocabulary: 'audioset' is the 527 AudioSet class names shipped with streamdetect."""
    if spec == "audioset":
        from importlib.resources import files

        text = files("streamdetect").joinpath("data/audioset_labels.txt").read_text(encoding="utf-8")
    else:
        text = Path(spec).read_text(encoding="utf-8")
    names = list(dict.fromkeys(n.strip() for n in text.splitlines() if n.strip() and not n.startswith("#")))
    if not names:
        raise ValueError(f"vocabulary {spec} holds no names")
    return names


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

    @classmethod
    def build(cls, events: Sequence[EventConfig], cache: PromptCache, embedder: Callable[[], TextEmbedder], *,
              examples: ExampleFn | None = None, background: Sequence[str] = (),
              vocabulary: Sequence[str] = (), template: str = "{}"):
        texts = [p for e in events for p in e.prompts]
        neg_texts = [n for e in events for n in e.negatives]
        vocab_texts = [template.format(name) for name in vocabulary]
        all_texts = texts + neg_texts + list(background) + vocab_texts
        if any(e.examples for e in events) and examples is None:
            raise ValueError("events with examples need an example embedder")
        audio = {i: normalize(examples(e.examples)) for i, e in enumerate(events) if e.examples}
        if all_texts:
            matrix = embed_texts(all_texts, cache, embedder)
        else:  # every event is defined by examples only
            matrix = np.zeros((0, next(iter(audio.values())).shape[1]), np.float32)
        parts = np.split(matrix, np.cumsum([len(texts), len(neg_texts), len(background)]))
        prompt_part, neg_part, bg_part, vocab_part = parts
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
        )


def prompt_bank_for(bundle: ModelBundle, events: Sequence[EventConfig], cache_dir: str | Path | None,
                    runtime=None, refined: bool = True, *, audio_encoder=None, background: Sequence[str] = (),
                    vocabulary=None) -> PromptBank:
    """The bank for a model directory; the cache defaults to ``<model>/prompt_cache``.

    Example files are embedded with ``audio_encoder`` (the detector's) or, if none is given, with an audio
    encoder opened only when an example is not cached. ``vocabulary`` is a ``VocabularyConfig`` or None.
    ``refined``: apply the feedback refinements kept in ``<model>/refinements`` (see ``streamdetect.refine``).
    """
    from streamdetect.encoder import TextEncoder
    from streamdetect.examples import example_embedder_for

    directory = Path(cache_dir) if cache_dir else bundle.directory / "prompt_cache"
    cache = PromptCache(directory, bundle.text_key, bundle.embedding_dim)
    examples = (example_embedder_for(bundle, directory, runtime, audio_encoder)
                if any(e.examples for e in events) else None)
    names = vocabulary_names(vocabulary.file) if vocabulary is not None and vocabulary.file else []
    bank = PromptBank.build(events, cache, lambda: TextEncoder(bundle, runtime), examples=examples,
                            background=background, vocabulary=names,
                            template=vocabulary.template if vocabulary is not None else "{}")
    if not refined:
        return bank
    from streamdetect.refine import RefinementStore, apply_refinements

    return apply_refinements(bank, [list(e.prompts) for e in events], RefinementStore(refinements_dir(bundle)),
                             bundle.text_key)


def refinements_dir(bundle: ModelBundle) -> Path:
    return bundle.directory / "refinements"
