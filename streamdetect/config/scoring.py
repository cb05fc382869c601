"""The ``scoring``, ``vocabulary`` and ``novelty`` sections: how windows are scored against the prompts.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from streamdetect.config.base import Strict
from streamdetect.config.paths import existing_file


class ScoringConfig(Strict):
    mode: Literal["cosine", "softmax"] = Field(
        "cosine", description="cosine: raw cosine of each event; softmax: probability over events + background "
        "with the model's logit scale (thresholds are then probabilities)")
    background: list[str] = Field(default_factory=list, max_length=100, description="prompts for what is always "
                                  "there (silence, wind noise, room tone): they compete with the events in softmax "
                                  "mode and never fire")

    @field_validator("background")
    @classmethod
    def _no_blank_background(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("background prompts must not be empty strings")
        return value


class VocabularyConfig(Strict):
    file: str | None = Field(None, description="'audioset' (the 527 AudioSet class names shipped with "
                             "streamdetect) or a text file with one name per line; none: no vocabulary")
    template: str = Field("This is a sound of {}.", description="prompt for each name; {} is the name")
    top_k: int = Field(3, ge=1, le=50, description="names per record in `sounds_like`")

    @field_validator("file")
    @classmethod
    def _file_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "audioset":
            return value
        base = (info.context or {}).get("base_dir") or "."
        return str(existing_file(value, base, "vocabulary file", " (or use 'audioset')"))

    @field_validator("template")
    @classmethod
    def _template_has_slot(cls, value: str) -> str:
        """Checked by formatting it once, as the vocabulary will be: ``"a {} {x}"``, ``"{} {!r}"`` or ``"{}{"``
        count one ``{}`` but fail (or mean something else) when used."""
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
            probe = value.format("\x00name\x00")
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as e:
            raise ValueError(f"template cannot be used as a prompt pattern ({type(e).__name__}: {e}); write "
                             "one {} where the name goes and double any other brace ({{ or }})") from None
        if fields != [""] or probe.count("\x00name\x00") != 1:
            raise ValueError("template must contain {} exactly once and no other {...} field; double any other "
                             "brace ({{ or }})")
        return value


class NoveltyConfig(Strict):
    enabled: bool = Field(False, description="fire novelty records for windows unlike the site and every prompt")
    label: str = Field("novelty", min_length=1, max_length=200, description="label of the novelty records")
    max_prompt_similarity: float = Field(0.3, ge=-1.0, le=1.0, description="novel only while the best cosine to "
                                         "every prompt (events, negatives, background, vocabulary) is below this")
    threshold: float = Field(0.2, gt=0.0, le=2.0, description="novel when the cosine distance (1 - cosine) of a "
                             "window to the site profile is at least this")
    half_life_windows: float = Field(300.0, ge=1.0, le=1e7, description="the site profile is an exponential "
                                     "moving average of window embeddings with this half-life, in windows")
    warmup_windows: int = Field(30, ge=1, le=1_000_000, description="windows the profile must have seen first")
    min_windows: int = Field(1, ge=1, le=1000, description="consecutive novel windows to fire")
    hysteresis: float = Field(0.02, ge=0.0, le=2.0, description="stays novel until the distance < threshold - hysteresis")
    cooldown_s: float = Field(10.0, ge=0.0, le=86_400.0, description="quiet time after an end before firing again")
