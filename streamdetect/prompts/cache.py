"""Embeddings cached on disk per model, so a restart does not re-embed prompts or example clips.

The prompt cache key is the sha256 of the exported text encoder and tokenizer plus the prompt text, so a cache
built by another model is never used by mistake. The text encoder is opened only when a prompt is not cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from streamdetect.embed.vectors import normalize
from streamdetect.util.files import atomic_write
from streamdetect.util.writable import current_user, write_problem

log = logging.getLogger(__name__)

TextEmbedder = Callable[[list[str]], np.ndarray]
# Prompts per text-encoder call. All 531 names of `vocabulary: {file: audioset}` in one call made onnxruntime
# hold the activations of the whole batch: 2.36 GB RSS with the full-size model; in batches of 16 it stays
# near the model's own size, at the same speed on a CPU.
TEXT_BATCH = 16


class CacheError(RuntimeError):
    """No prompt cache this process can write; the message names both places tried and the user."""


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user cache: ``$XDG_CACHE_HOME/streamdetect/prompt_cache``, else ``~/.cache/streamdetect/...``."""
    env = os.environ if environ is None else environ
    try:
        base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    except RuntimeError:  # no HOME and no passwd entry
        raise CacheError("there is no per-user cache: HOME and XDG_CACHE_HOME are unset; set prompt_cache") from None
    return base / "streamdetect" / "prompt_cache"


def usable_cache_dir(preferred: Path, environ: Mapping[str, str] | None = None) -> Path:
    """``preferred`` when this process can write it, else the per-user cache, with a warning.

    The default ``<model>/prompt_cache`` is often read-only for the service: root exported the model, the
    daemon runs as its own user. Embedding again into a cache of its own is slower only on the first start;
    failing, or re-embedding at every start, would be worse. Raises ``CacheError`` when neither can be written."""
    why = write_problem(preferred, "dir")
    if why is None:
        return preferred
    fallback = user_cache_dir(environ)
    fallback_why = write_problem(fallback, "dir")
    if fallback_why is not None:
        raise CacheError(f"prompt cache {preferred}: {why}, and the per-user cache {fallback}: {fallback_why}; "
                      f"streamdetect runs as {current_user()}: set prompt_cache to a folder it can write")
    log.warning("prompt cache %s: %s (streamdetect runs as %s); using the per-user cache %s instead (set "
                "prompt_cache to choose one)", preferred, why, current_user(), fallback)
    return fallback


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
        atomic_write(self._path(key), lambda fh: np.save(fh, np.asarray(embedding, dtype=np.float32)))


class PromptCache(EmbeddingCache):
    """Prompt text -> embedding, under ``directory/<model key>/``: another model's prompts are never used."""

    def __init__(self, directory: Path, model_key: str, dim: int | None = None):
        super().__init__(Path(directory) / model_key[:16], dim, "prompt cache")


class KeptInMemory:
    """A cache read but never written: what is not in it is kept in memory instead, the ``kept`` most recently
    used. For text typed into the dashboard (GET requests, which must write nothing: a file per new query let a
    viewer's script write 288,000 files, 1.2 GB, an hour)."""

    def __init__(self, cache: EmbeddingCache, kept: int):
        self.cache, self.kept = cache, kept
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:  # how many are kept in memory
        return len(self._recent)

    def get(self, key: str) -> np.ndarray | None:
        found = self._recent.get(key)
        if found is not None:
            self._recent.move_to_end(key)
            return found
        return self.cache.get(key)

    def put(self, key: str, embedding: np.ndarray) -> None:
        self._recent[key] = np.asarray(embedding, dtype=np.float32)
        while len(self._recent) > self.kept:
            self._recent.popitem(last=False)


def embed_texts(texts: Sequence[str], cache: EmbeddingCache | KeptInMemory,
                embedder: Callable[[], TextEmbedder]) -> np.ndarray:
    """Embeddings for ``texts`` in order; ``embedder()`` is called (once) only if some text is not cached."""
    unique = list(dict.fromkeys(texts))
    cached = {t: cache.get(t) for t in unique}
    found = {t: e for t, e in cached.items() if e is not None}
    missing = [t for t in unique if t not in found]
    if missing:
        from tqdm import tqdm

        log.info("embedding %d prompt(s) with the text encoder", len(missing))
        encode = embedder()
        # A bar only for long work (a vocabulary, many prompts): a few prompts take well under a second.
        with tqdm(total=len(missing), desc="embedding prompts", unit="prompt", file=sys.stderr,
                  disable=len(missing) <= TEXT_BATCH, mininterval=0.5) as bar:
            for start in range(0, len(missing), TEXT_BATCH):
                batch = missing[start : start + TEXT_BATCH]
                for text, emb in zip(batch, encode(batch), strict=True):
                    cache.put(text, emb)
                    found[text] = emb
                bar.update(len(batch))
    return normalize(np.stack([found[t] for t in texts]).astype(np.float32))
