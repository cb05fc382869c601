"""The open-set vocabulary: names to describe what a window "sounds like"."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def vocabulary_names(spec: str) -> list[str]:
    """Names of a vocabulary: 'audioset' is the 527 AudioSet class names shipped with streamdetect."""
    if spec == "audioset":
        text = files("streamdetect").joinpath("data/audioset_labels.txt").read_text(encoding="utf-8")
    else:
        text = Path(spec).read_text(encoding="utf-8")
    names = list(dict.fromkeys(n.strip() for n in text.splitlines() if n.strip() and not n.startswith("#")))
    if not names:
        raise ValueError(f"vocabulary {spec} holds no names")
    return names
