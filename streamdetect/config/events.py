"""The ``events`` section: what to listen for, in words or audio examples, and when an event fires.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamdetect.config.base import Strict
from streamdetect.config.paths import existing_file
from streamdetect.config.station import SCHEDULE_DESCRIPTION, check_periods


class EventConfig(Strict):
    label: str = Field(min_length=1, max_length=200, description="the event's name in records, sinks and topics; unique")
    prompts: list[str] = Field(description="text prompts, averaged as an ensemble (may be empty with examples)")
    threshold: float = Field(ge=-1.0, le=1.0, description="score at which the event fires: a cosine in "
                             "scoring mode cosine, a probability (0..1) in scoring mode softmax")
    negatives: list[str] = Field(default_factory=list, description="confusers: no firing where one scores higher")
    min_windows: int = Field(1, ge=1, le=1000, description="consecutive windows above threshold to fire")
    hysteresis: float = Field(0.02, ge=0.0, le=2.0, description="stay active until score < threshold - hysteresis")
    cooldown_s: float = Field(2.0, ge=0.0, le=86_400.0, description="quiet time after an end before firing again")
    examples: list[str] = Field(default_factory=list, max_length=100, description="audio files of the sound "
                                "(query by example), relative to the config file's directory")
    example_weight: float = Field(0.5, ge=0.0, le=1.0, description="share of the examples in the ensemble when "
                                  "the event has both prompts and examples (0: text only, 1: examples only)")
    schedule: list[str] | None = Field(None, max_length=50, description="when the event is listened for: "
                                       + SCHEDULE_DESCRIPTION + "; outside it the event never fires")

    _periods_parse = field_validator("schedule")(check_periods)

    @model_validator(mode="before")
    @classmethod
    def _examples_make_prompts_optional(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("examples") and "prompts" not in value:
            return {**value, "prompts": []}
        return value

    @field_validator("prompts", "negatives", mode="before")
    @classmethod
    def _one_string_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("prompts", "negatives")
    @classmethod
    def _no_blank_prompt(cls, value: list[str]) -> list[str]:
        for text in value:
            if not text.strip():
                raise ValueError("prompts must not be empty strings")
        return value

    @field_validator("examples", mode="before")
    @classmethod
    def _one_example_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("examples")
    @classmethod
    def _examples_exist(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Relative paths are taken from the config file's directory, so a config and its clips move together."""
        base = (info.context or {}).get("base_dir") or "."
        resolved = [str(existing_file(name, base, "example file")) for name in value]
        return resolved

    @model_validator(mode="after")
    def _prompts_or_examples(self) -> EventConfig:
        if not self.prompts and not self.examples:
            raise ValueError("an event needs at least one prompt or one example file")
        return self
