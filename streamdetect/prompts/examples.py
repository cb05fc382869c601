"""Audio example files -> clip embeddings for query-by-example events, cached on disk.

An example is embedded the way ``tag`` and ``search --like`` embed a clip: cut into consecutive pieces of the
model's input length whose normalised embeddings are averaged. The cache key is the file's sha256 plus the
sha256 of the audio encoder file that embedded it, so an edited clip or another model (or precision) never
reuses a stale embedding, and a restart does not run the encoder again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from streamdetect.embed.encoder import chosen_encoder_file, open_audio_encoder
from streamdetect.embed.encoder.base import AudioEncoder, RuntimeOptions
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import ModelBundle, sha256_file
from streamdetect.prompts.cache import EmbeddingCache

log = logging.getLogger(__name__)

POOLING = "clip-pieces-mean-v1"  # part of the cache key: change it when the way a clip is pooled changes

AudioEncoderFn = Callable[[np.ndarray], np.ndarray]


class ExampleCache(EmbeddingCache):
    """File content sha256 -> clip embedding, under ``directory/examples/<encoder key>/``."""

    def __init__(self, directory: Path, encoder_sha256: str, dim: int | None = None):
        key = hashlib.sha256(f"{encoder_sha256}:{POOLING}".encode()).hexdigest()
        super().__init__(Path(directory) / "examples" / key[:16], dim, "example cache")


class ExampleEmbedder:
    """Example files -> L2-normalised clip embeddings; the encoder is opened only for files not cached."""

    def __init__(self, bundle: ModelBundle, encoder: Callable[[], AudioEncoderFn], cache: ExampleCache | None):
        self.frontend = LogMelFrontend(bundle.frontend_params)
        self._encoder_factory = encoder
        self._encoder: AudioEncoderFn | None = None
        self.cache = cache

    def __call__(self, paths: Sequence[str | Path]) -> np.ndarray:
        from streamdetect.embed.clip import MAX_EXAMPLE_S, clip_embedding

        out = []
        for path in paths:
            digest = sha256_file(Path(path))
            embedding = self.cache.get(digest) if self.cache is not None else None
            if embedding is None:
                if self._encoder is None:
                    self._encoder = self._encoder_factory()
                log.info("embedding example %s with the audio encoder", path)
                embedding = clip_embedding(Path(path), self.frontend, self._encoder, max_s=MAX_EXAMPLE_S)
                if self.cache is not None:
                    self.cache.put(digest, embedding)
            out.append(np.asarray(embedding, np.float32))
        return np.stack(out) if out else np.zeros((0, 0), np.float32)


def example_embedder_for(bundle: ModelBundle, cache_dir: Path, runtime: RuntimeOptions | None = None,
                         encoder: AudioEncoder | None = None) -> ExampleEmbedder:
    """An embedder that uses ``encoder`` (the detector's own) or opens the configured audio encoder lazily.

    The cache is keyed by the exported encoder file that runs; an encoder whose ``file`` is not one of the
    model's exported files (a test double, a remote encoder) gets no cache, because nothing identifies what it
    computes.
    """
    runtime = runtime or RuntimeOptions()
    if encoder is not None:
        name = encoder.file
        factory: Callable[[], AudioEncoderFn] = lambda: encoder  # noqa: E731
    else:
        name = chosen_encoder_file(bundle, runtime)
        factory = lambda: open_audio_encoder(bundle, runtime)  # noqa: E731
    digest = bundle.file_digest(name) if name else None
    return ExampleEmbedder(bundle, factory, ExampleCache(cache_dir, digest, bundle.embedding_dim) if digest else None)
