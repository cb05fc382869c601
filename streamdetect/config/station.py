"""The station sections: ``site`` (where and in which time zone), ``privacy`` (speech is never stored) and
``summary`` (the daily report sent through sinks), plus the ``schedule`` lists events and sources carry.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from streamdetect.config.base import Strict
from streamdetect.schedule import Period, Site, TimeRef, zone

SCHEDULE_DESCRIPTION = ("active periods in the site's local time, e.g. ['05:00-09:00', 'sunrise-30m..sunrise+2h', "
                        "'22:00-02:00'] (default: always active)")


def check_periods(value: list[str] | None) -> list[str] | None:
    """Periods are parsed when the config is read, so a typo is a config error and not a surprise at dawn."""
    for text in value or []:
        Period.parse(text)
    return value


class SiteConfig(Strict):
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                             description="this station's name, in every record and MQTT topic, where many "
                             "stations send their events to one broker (docs/triton.md)")
    timezone: str = Field("UTC", min_length=1, max_length=100, description="IANA time zone of the station, e.g. "
                          "Europe/Berlin: schedules, quiet hours, the summary time and report days are local to it")
    latitude: float | None = Field(None, ge=-90.0, le=90.0, description="degrees north, for sunrise/sunset times")
    longitude: float | None = Field(None, ge=-180.0, le=180.0, description="degrees east, for sunrise/sunset times")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _both_coordinates(self) -> SiteConfig:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both site.latitude and site.longitude, or neither")
        return self

    def site(self) -> Site:
        return Site(self.timezone, self.latitude, self.longitude)


DEFAULT_SPEECH_PROMPTS = ["people talking", "a person speaking", "a conversation"]


class PrivacyConfig(Strict):
    enabled: bool = Field(False, description="score every window for speech; private windows are never stored")
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_SPEECH_PROMPTS), min_length=1, max_length=50,
                               description="what speech sounds like to CLAP, averaged as an ensemble")
    threshold: float = Field(0.2, ge=-1.0, le=1.0, description="a window whose speech cosine reaches this is "
                             "private; calibrate it like an event's threshold")
    store_audio: bool = Field(True, description="false: keep only the records; no clips, images or window "
                              "embeddings are stored, whatever is private")

    @field_validator("prompts")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("privacy prompts must not be empty strings")
        return value


class SummaryConfig(Strict):
    at: str | None = Field(None, description="local time to send the daily summary, e.g. '21:00' or 'sunset+1h' "
                           "(off if unset)")
    day: Literal["today", "yesterday"] = Field("today", description="the day the summary covers")
    store: str | None = Field(None, min_length=1, description="event database to summarise (default: the path "
                              "of the first sqlite sink)")
    sinks: list[str] = Field(default_factory=list, description="names (sinks[].name) of the sinks that send it "
                             "(default: every sink that can send summaries)")

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            TimeRef.parse(value)
        return value
