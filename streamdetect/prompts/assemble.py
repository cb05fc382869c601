"""The one place a prompt bank is assembled from a config: prompts, audio examples, refinements, vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from streamdetect.config import Config, EventConfig, VocabularyConfig
from streamdetect.embed.encoder.base import AudioEncoder, RuntimeOptions
from streamdetect.embed.encoder.text import TextEncoder
from streamdetect.model.manifest import ModelBundle
from streamdetect.prompts.bank import PromptBank
from streamdetect.prompts.cache import PromptCache, usable_cache_dir
from streamdetect.prompts.examples import example_embedder_for
from streamdetect.prompts.refine import RefinementStore, apply_refinements, refinements_dir
from streamdetect.prompts.vocabulary import vocabulary_names


def prompt_bank_for(bundle: ModelBundle, events: Sequence[EventConfig], cache_dir: str | Path | None,
                    runtime: RuntimeOptions | None = None, refined: bool = True, *,
                    audio_encoder: AudioEncoder | None = None, background: Sequence[str] = (),
                    vocabulary: VocabularyConfig | None = None, privacy: Sequence[str] = ()) -> PromptBank:
    """The bank for a model directory; the cache defaults to ``<model>/prompt_cache``.

    Example files are embedded with ``audio_encoder`` (the detector's) or, if none is given, with an audio
    encoder opened only when an example is not cached. ``vocabulary`` is a ``VocabularyConfig`` or None.
    ``refined``: apply the feedback refinements kept in ``<model>/refinements`` (see ``streamdetect.prompts.refine``).
    """
    directory = usable_cache_dir(Path(cache_dir) if cache_dir else bundle.directory / "prompt_cache")
    cache = PromptCache(directory, bundle.text_key, bundle.embedding_dim)
    examples = (example_embedder_for(bundle, directory, runtime, audio_encoder)
                if any(e.examples for e in events) else None)
    names = vocabulary_names(vocabulary.file) if vocabulary is not None and vocabulary.file else []
    bank = PromptBank.build(events, cache, lambda: TextEncoder(bundle, runtime), examples=examples,
                            background=background, vocabulary=names,
                            template=vocabulary.template if vocabulary is not None else "{}", privacy=privacy)
    if not refined:
        return bank
    return apply_refinements(bank, [list(e.prompts) for e in events], RefinementStore(refinements_dir(bundle)),
                             bundle.text_key)


def bank_for_config(bundle: ModelBundle, config: Config, runtime: RuntimeOptions | None = None,
                    audio_encoder: AudioEncoder | None = None, refined: bool = True) -> PromptBank:
    """Everything a config asks to embed: event prompts and examples, background prompts, the vocabulary."""
    return prompt_bank_for(bundle, config.events, config.prompt_cache,
                           runtime or RuntimeOptions.from_config(config.runtime), refined,
                           audio_encoder=audio_encoder, background=config.scoring.background,
                           vocabulary=config.vocabulary,
                           privacy=config.privacy.prompts if config.privacy.enabled else ())
