"""The JSON answers of the dashboard's routes, one model each.

Every model forbids keys it does not name: a field the store, the live hub or the settings form starts to hand
over fails the in-process route tests instead of reaching the browser unlisted (or, worse, silently not). An
answer is written with the keys that were set (``routing.reply``), so a key that is absent today (an event's
``clip`` when it has none, the live view's ``spectrogram`` when no stream is selected) stays absent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- session and live view -------------------------------------------------------------------------------------

class SessionAnswer(Answer):
    """``GET /api/session``: who is asking, and what this station has for the pages to show."""

    role: str
    csrf: str
    login_required: bool
    streams: list[str]
    labels: list[str]
    stale_after_s: float
    has_store: bool
    has_clips: bool
    has_log: bool
    privacy: bool
    settings_file: str | None


class LoginAnswer(Answer):
    """``POST /api/login``: the new session's role and CSRF token (the session itself rides on the cookie)."""

    role: str
    csrf: str


class DoneAnswer(Answer):
    """``POST /api/logout``."""

    ok: bool


class LiveColumns(Answer):
    """New spectrogram columns of the selected stream: ``frames`` x ``bins`` bytes, base64."""

    columns: str
    frames: int
    bins: int
    t_end: float
    columns_per_s: float
    max_hz: float


class LiveDelta(Answer):
    """``GET /api/live`` and each message of ``/api/live/stream``: the streams that changed since ``seq``; the
    selected stream's new columns and windows only when one is selected (absent otherwise)."""

    seq: int
    streams: list[dict[str, Any]]  # name, age_s, stale, windows and the latest window's scores (live.py)
    selected: str | None
    stale_after_s: float
    spectrogram: LiveColumns | None = None
    windows: list[dict[str, Any]] | None = None


# -- events and review -----------------------------------------------------------------------------------------

class Event(Answer):
    """One event as the store lists it (``store.EVENT_FIELDS``): its start row with its end row's extent."""

    id: str
    label: str
    stream: str
    time: str
    start_s: float
    end_s: float | None
    peak_score: float
    peak_time_s: float
    top: list[Any]
    sounds_like: list[Any]
    feedback: str | None
    relabel: str | None
    end_time: str | None


class EventPage(Answer):
    """``GET /api/events``: a page, the ``before`` of the next one, and (on the first page) the filters' values."""

    events: list[Event]
    next: str | None
    labels: list[str]
    streams: list[str]


class ClipInfo(Answer):
    url: str
    duration_s: float
    extent_s: list[float]  # the event's start and end inside the clip


class EventDetail(Event):
    """``GET /api/events/{id}``: the event and, when the clips sink kept one, its clip."""

    clip: ClipInfo | None = None


class Spectrogram(Answer):
    """``GET /api/events/{id}/spectrogram``: the clip's columns (``spectro.payload``) and the event's extent."""

    columns: str
    frames: int
    bins: int
    hop_s: float
    max_hz: float
    duration_s: float
    floor_db: float
    ceil_db: float
    extent_s: list[float]


class Curve(Answer):
    """``GET /api/events/{id}/curve``: [wall epoch, cosine] of the label's prompt around the event."""

    label: str
    points: list[list[float]]
    threshold: float | None
    event: list[float]  # the event's start and end, wall epochs


class FeedbackAnswer(Answer):
    """``POST /api/events/{id}/feedback``."""

    id: str
    label: str
    verdict: str
    relabel: str | None


class RefinedLabel(Answer):
    """One label of a refinement run (``prompts.refine.Refined``)."""

    label: str
    version: int | None
    confirmed: int
    rejected: int
    angle_deg: float
    without_embedding: int
    from_clips: int


class RefineAnswer(Answer):
    """``POST /api/refine``."""

    status: str
    labels: list[RefinedLabel]


# -- activity and playground -----------------------------------------------------------------------------------

class LabelActivity(Answer):
    cells: list[list[Any]]  # [local day, hour, events]
    per_day: dict[str, int]
    total: int


class ActivityAnswer(Answer):
    """``GET /api/activity``."""

    days: list[str]
    labels: dict[str, LabelActivity]


class Match(Answer):
    """A stretch of windows that match a prompt (``analysis.embedding_log.Stretch``) and events to play there."""

    stream: str
    score: float
    start_s: float
    end_s: float
    time_from: str
    time_to: str
    windows: int
    events: list[str]


class PlaygroundAnswer(Answer):
    """``GET /api/playground``: the prompt's curve per stream over the windows in memory, and the best ones."""

    query: str
    curves: dict[str, list[list[float]]]
    windows: int
    best: list[Match]


class SearchAnswer(Answer):
    """``GET /api/search``."""

    query: str
    windows: int
    best: list[Match]


class EventsApplied(Answer):
    """``POST /api/playground/add``: how the reload went and the labels running after it."""

    status: str
    events: list[str]


# -- settings --------------------------------------------------------------------------------------------------

class SettingsForm(Answer):
    """The running values the form shows (``settings_form.form_of``): the events and each live section."""

    events: list[dict[str, Any]]
    scoring: dict[str, Any]
    gate: dict[str, Any]
    vocabulary: dict[str, Any]
    novelty: dict[str, Any]
    privacy: dict[str, Any]


class SettingsPage(SettingsForm):
    """``GET /api/settings``: the form, what draws it, and where saves and uploads go."""

    form_schema: dict[str, Any] = Field(alias="schema")
    file: str | None
    examples_dir: str
    max_upload_kb: int


class SettingsSaved(SettingsForm):
    """``POST /api/settings`` (and "use as example"): how the save went and the form as it is now."""

    status: str
    saved_to: str | None


class Example(Answer):
    """``POST /api/settings/examples``: what the form shows of an example (``examples.describe``)."""

    id: str
    name: str
    duration_s: float | None
    playable: bool
