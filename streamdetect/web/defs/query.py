"""The query parameters of the dashboard's routes, one model each.

An empty parameter counts as absent (the browser's filter forms send ``?label=`` for "any"). A value that does
not fit answers 400 with a message naming the key (``routing.query`` turns the model's error into it), as these
routes have always answered; numbers keep their old rules (``limit`` is clamped into 1..``PAGE_MAX``, 0 means the
default), so no bookmark or script that worked before stops working.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from streamdetect.store import REVIEW_STATES, EventFilter, parse_when
from streamdetect.util.times import epoch_of

PAGE_MAX = 200
MAX_PROMPT_CHARS = 500
MAX_LABEL_CHARS, MAX_NAME_CHARS = 200, 255


def _number(key: str, value: Any) -> float:
    """A finite number: ``1e400`` (inf) or ``nan`` would pass ``float`` and fail later, as a 500 from ``int()``
    or as a filter that matches nothing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, found {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number, found {value!r}")
    return number


def _when(key: str, text: str) -> str:
    try:
        return parse_when(text)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None


class Query(BaseModel):
    """Unknown parameters are ignored (a cache-busting ``?_=`` must not fail a request)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data


class EventsQuery(Query):
    """``GET /api/events``: filters and a keyset page (``before`` is the ``next`` of the previous page)."""

    label: str | None = None
    stream: str | None = None
    since: str | None = None  # an age (7d, 12h, 30m) or an ISO time, kept as the ISO UTC time it means
    until: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    review: str = "any"
    before: str | None = None  # "TIME|ID"
    limit: int = 50

    @field_validator("since", "until")
    @classmethod
    def _time(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _when(str(info.field_name), value)

    @field_validator("min_score", "max_score", mode="before")
    @classmethod
    def _score(cls, value: Any, info: ValidationInfo) -> float:
        return _number(str(info.field_name), value)

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> int:
        return int(min(max(_number("limit", value) or 50, 1), PAGE_MAX))

    @field_validator("review")
    @classmethod
    def _review(cls, value: str) -> str:
        if value not in REVIEW_STATES:
            raise ValueError(f"review must be one of {', '.join(REVIEW_STATES)}, found {value!r}")
        return value

    def where(self) -> EventFilter:
        time, bar, last = (self.before or "").partition("|")
        return EventFilter(label=self.label, stream=self.stream, since=self.since, until=self.until,
                           min_score=self.min_score, max_score=self.max_score, review=self.review,
                           before=(time, last) if bar else None)


class FlagQuery(Query):
    """A switch that is on only as ``=1``."""

    @field_validator("*", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool:
        return value == "1"


class ClipQuery(FlagQuery):
    """``GET /api/events/{id}/clip``: ``download=1`` asks for an attachment."""

    download: bool = False


class SpectrogramQuery(FlagQuery):
    """``GET /api/events/{id}/spectrogram``: ``thumb=1`` asks for the list's small picture."""

    thumb: bool = False


class ActivityQuery(Query):
    """``GET /api/activity``: the last 7 or 30 local days, the browser's offset from UTC in minutes."""

    days: int = 7
    tz_offset_min: int = 0

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> int:
        days = int(_number("days", value) or 7)
        if days not in (7, 30):
            raise ValueError("days must be 7 or 30")
        return days

    @field_validator("tz_offset_min", mode="before")
    @classmethod
    def _offset(cls, value: Any) -> int:
        offset = int(_number("tz_offset_min", value) or 0)
        if not -900 <= offset <= 900:
            raise ValueError("tz_offset_min must lie within +-900 minutes")
        return offset


class PromptQuery(Query):
    """``GET /api/playground``: a typed prompt ``q``."""

    q: str = Field("", validate_default=True)

    @field_validator("q")
    @classmethod
    def _prompt(cls, value: str) -> str:
        text = value.strip()
        if not text or len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"type a prompt of 1 to {MAX_PROMPT_CHARS} characters")
        return text


class SearchQuery(PromptQuery):
    """``GET /api/search``: a prompt and how far back to look (``since``, 7 days unless given)."""

    since: str = Field("7d", validate_default=True)

    @field_validator("since")
    @classmethod
    def _since(cls, value: str) -> str:
        return _when("since", value)

    def since_epoch(self) -> float:
        return epoch_of(self.since)


class StreamQuery(Query):
    """``GET /api/live`` and ``/api/live/stream``: the stream whose columns and windows come along (or none)."""

    stream: str | None = None


class ListenQuery(Query):
    """``GET /api/live/audio``: the stream to listen to."""

    stream: str = ""


class UploadQuery(Query):
    """``POST /api/settings/examples``: the event label and the browser's file name of an uploaded example."""

    label: str = ""
    name: str = ""

    @model_validator(mode="after")
    def _bounded(self) -> UploadQuery:
        if len(self.label) > MAX_LABEL_CHARS or len(self.name) > MAX_NAME_CHARS:
            raise ValueError("label or name too long")
        return self
