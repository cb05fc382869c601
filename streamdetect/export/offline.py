"""CLAP checkpoints without the hub: a tokenizer trained here and the preprocessing the real checkpoint ships.

Model weights cannot be downloaded on the machines this project is built and tested on, so the tests' tiny CLAP
and the full-size random-weight CLAP of ``streamdetect export --random-weights`` (``random_weights.py``) are built
from this recipe. Like export, it needs torch/transformers (``pip install 'streamdetect[export]'``); the detector
never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAINING_TEXT = [
    "birdsong in the forest", "a dog barking", "glass breaking", "smoke alarm beeping", "rain on a roof",
    "wind noise", "traffic far away", "a baby crying", "the sound of water flowing", "silence",
] * 20


def offline_tokenizer(model_max_length: int = 77, corpus: list[str] | None = None, vocab_size: int = 320) -> Any:
    """A RoBERTa tokenizer (CLAP's kind) over a byte-level BPE trained here (on ``corpus``, else a few generic
    captions), so no hub download is needed."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TRAINING_TEXT if corpus is None else corpus, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
              for m in json.loads(bpe._tokenizer.to_str())["model"]["merges"]]
    # transformers 5.x: pass vocab/merges as objects; the *_file keyword arguments are silently ignored.
    return RobertaTokenizer(vocab=bpe.get_vocab(), merges=merges, model_max_length=model_max_length)


def checkpoint_feature_extractor() -> Any:
    """The preprocessing laion/clap-htsat-unfused ships (not the class defaults)."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad")


# Written into a checkpoint folder built with random weights; export copies it into the manifest
# (``source.random_weights``), and what is made with such a model (a scan plot) says so.
RANDOM_WEIGHTS_MARKER = "streamdetect_random_weights.json"


def mark_random_weights(checkpoint: Path, note: str) -> None:
    (checkpoint / RANDOM_WEIGHTS_MARKER).write_text(json.dumps({"random_weights": True, "note": note}) + "\n")


def has_random_weights(checkpoint: Path) -> bool:
    return (checkpoint / RANDOM_WEIGHTS_MARKER).is_file()
