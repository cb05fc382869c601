"""Events and review: the list with its filters, one event's clip, spectrogram and score curve, feedback,
"refine now", and "use as example" (the event's sound becomes an audio example of its label, saved like a
settings change)."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from streamdetect.analysis.embedding_log import log_key, read_log
from streamdetect.config import Config
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.prompts.assemble import prompt_bank_for
from streamdetect.prompts.refine import (
    Refined,
    RefinementStore,
    RefineParams,
    mark_feedback,
    refine_events,
    refinements_dir,
)
from streamdetect.store import event_streams, get_event, list_events
from streamdetect.util.names import short_id
from streamdetect.util.times import epoch_of
from streamdetect.web.clips import EVENT_ID, Clip, clip_audio, find_clip
from streamdetect.web.common import api, apply_config, body
from streamdetect.web.context import WebContext
from streamdetect.web.defs.query import ClipQuery, EventsQuery, SpectrogramQuery
from streamdetect.web.defs.response import (
    ClipInfo,
    Curve,
    Event,
    EventDetail,
    EventPage,
    FeedbackAnswer,
    RefineAnswer,
    RefinedLabel,
    Spectrogram,
)
from streamdetect.web.examples import example_id
from streamdetect.web.routes_settings import save_settings
from streamdetect.web.routing import context, query, reply
from streamdetect.web.settings_form import event_values
from streamdetect.web.spectro import SpectrogramParams, payload

CURVE_MARGIN_S = 30.0
THUMB = SpectrogramParams(n_fft=1024, n_bins=32, columns_per_s=8.0)
MIN_EXAMPLE_S = 0.5  # an event shorter than this gives its whole clip (pre- and post-roll too) as the example


Window = tuple[str, float, float, float, np.ndarray]  # stream, wall epoch, start_s, end_s, embedding


def windows_around(ctx: WebContext, since: float, until: float, stream: str | None = None) -> list[Window]:
    """(stream, wall, start_s, end_s, embedding) of the windows in [since, until]: kept in memory for the last
    minutes, read from the embedding log before that (rows in both count once)."""
    names, wall, starts, ends, embs = ctx.hub.recent_embeddings()
    rows: dict[tuple[str, float], Window] = {(n, round(w, 1)): (n, w, s, e, v) for n, w, s, e, v in zip(names, wall, starts, ends, embs, strict=False)
            if since <= w <= until}
    directory = ctx.current().embedding_log.dir
    if directory is not None:
        try:
            logged = read_log(Path(directory), log_key(ctx.bundle), since, until)
        except FileNotFoundError:
            logged = None
        if logged is not None:
            for i in range(logged.wall.size):
                key = (str(logged.streams[i]), round(float(logged.wall[i]), 1))
                rows.setdefault(key, (key[0], float(logged.wall[i]), float(logged.starts_s[i]),
                                      float(logged.ends_s[i]), logged.embeddings[i]))
    return sorted((r for r in rows.values() if stream is None or r[0] == stream), key=lambda r: r[1])


def _event_or_404(db: sqlite3.Connection, event_id: str) -> dict[str, Any]:
    if not EVENT_ID.match(event_id):
        raise LookupError(f"{event_id!r} is not an event id")
    event = get_event(db, event_id)
    if event is None:
        raise LookupError(f"no event {event_id}")
    return event


def _clip_of(ctx: WebContext, event: dict[str, Any]) -> Clip:
    clip = find_clip(ctx.clips, event) if ctx.clips is not None else None
    if clip is None:
        raise LookupError("this event has no clip (a `clips` sink saves them; retention may have deleted it)")
    return clip


@api
async def index(request: Request) -> Response:
    ctx, q = context(request), query(request, EventsQuery)

    def run() -> tuple[list[dict[str, Any]], list[str], list[str]]:
        with ctx.db() as db:
            rows = list_events(db, q.where(), q.limit + 1)
            labels, streams = event_streams(db) if not q.before else ([], [])
        return rows, labels, streams

    rows, labels, streams = await run_in_threadpool(run)
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    return reply(EventPage(events=[Event.model_validate(r) for r in rows],
                           next=f"{rows[-1]['time']}|{rows[-1]['id']}" if more else None,
                           labels=labels, streams=streams))


@api
async def detail(request: Request) -> Response:
    ctx = context(request)

    def run() -> EventDetail:
        with ctx.db() as db:
            event = _event_or_404(db, request.path_params["id"])
        found = EventDetail.model_validate(event)
        clip = find_clip(ctx.clips, event) if ctx.clips is not None else None
        if clip is not None:
            found.clip = ClipInfo(url=f"/api/events/{event['id']}/clip", duration_s=clip.duration_s,
                                  extent_s=list(clip.extent_s))
        return found

    return reply(await run_in_threadpool(run))


@api
async def clip(request: Request) -> Response:
    ctx, q = context(request), query(request, ClipQuery)

    def run() -> Clip:
        with ctx.db() as db:
            return _clip_of(ctx, _event_or_404(db, request.path_params["id"]))

    found = await run_in_threadpool(run)
    media = "audio/flac" if found.path.suffix == ".flac" else "audio/wav"
    return FileResponse(found.path, media_type=media, filename=found.path.name if q.download else None,
                        content_disposition_type="attachment" if q.download else "inline")


@api
async def spectrogram(request: Request) -> Response:
    ctx, q = context(request), query(request, SpectrogramQuery)

    def run() -> Spectrogram:
        with ctx.db() as db:
            found = _clip_of(ctx, _event_or_404(db, request.path_params["id"]))
        out = payload(clip_audio(found), found.sample_rate, THUMB if q.thumb else SpectrogramParams(),
                      120 if q.thumb else 4000)
        return Spectrogram.model_validate(out | {"extent_s": list(found.extent_s)})

    return reply(await run_in_threadpool(run), headers={"Cache-Control": "private, max-age=300"})


@api
async def curve(request: Request) -> Response:
    """The cosine of the event label's prompt vector over the windows around the event."""
    ctx = context(request)

    def run() -> Curve:
        with ctx.db() as db:
            event = _event_or_404(db, request.path_params["id"])
        bank = ctx.bank()
        label = event["relabel"] or event["label"]
        if label not in bank.labels:
            raise LookupError(f"{label!r} is no longer a running event, so it has no prompt to score")
        vector = bank.events[bank.labels.index(label)]
        start, end = epoch_of(event["time"]), epoch_of(event["end_time"] or event["time"])
        rows = windows_around(ctx, start - CURVE_MARGIN_S, end + CURVE_MARGIN_S, event["stream"])
        points = [[round(w, 2), round(float(np.asarray(v, np.float32) @ vector), 4)] for _, w, _, _, v in rows]
        threshold = next((e.threshold for e in ctx.current().events if e.label == label), None)
        return Curve(label=label, points=points, threshold=threshold, event=[start, end])

    return reply(await run_in_threadpool(run))


@api
async def feedback(request: Request) -> Response:
    ctx = context(request)
    data = await body(request, ctx)
    if not isinstance(data, dict) or data.get("verdict") not in ("confirmed", "rejected", "relabel"):
        raise ValueError('send {"verdict": "confirmed" | "rejected" | "relabel", "label": NEW (relabel)}')
    relabel = data.get("label") if data["verdict"] == "relabel" else None
    if data["verdict"] == "relabel" and (not isinstance(relabel, str) or not relabel.strip()):
        raise ValueError("relabel needs the new label")
    verdict = "rejected" if relabel else data["verdict"]
    if ctx.db_path is None:
        raise LookupError("no event store: add a `sqlite` sink to the config")
    event_id = request.path_params["id"]
    if not EVENT_ID.match(event_id):
        raise LookupError(f"{event_id!r} is not an event id")
    full_id, label = await run_in_threadpool(mark_feedback, ctx.db_path, event_id, verdict, relabel)
    return reply(FeedbackAnswer(id=full_id, label=label, verdict=verdict, relabel=relabel))


@api
async def refine(request: Request) -> Response:
    ctx = context(request)
    data = await body(request, ctx) or {}
    if not isinstance(data, dict):
        raise ValueError("send a JSON object (alpha, beta, max_angle_deg are optional)")
    db_path = ctx.db_path
    if db_path is None:
        raise LookupError("no event store: add a `sqlite` sink to the config")

    def run() -> tuple[Config, list[Refined]]:
        config = ctx.current()
        params = RefineParams(float(data.get("alpha", 0.5)), float(data.get("beta", 0.25)),
                              float(data.get("max_angle_deg", 20.0)))
        bank = prompt_bank_for(ctx.bundle, config.events, config.prompt_cache,
                               RuntimeOptions.from_config(config.runtime), refined=False)
        store = RefinementStore(refinements_dir(ctx.bundle))
        return config, refine_events(db_path, config.events, bank.events, ctx.bundle.text_key, store, params)

    config, results = await run_in_threadpool(run)  # a FeedbackError is a ValueError: 400, as before
    status, message = await apply_config(ctx, config)  # the new bank picks up the saved versions
    return reply(RefineAnswer(status=message, labels=[RefinedLabel.model_validate(r.__dict__) for r in results]),
                 status)


@api
async def as_example(request: Request) -> Response:
    """The event's part of its clip, stored as an example of its (corrected) label and saved live."""
    ctx = context(request)
    await body(request, ctx)  # a JSON body, as for every change (nothing is read from it)

    def run() -> tuple[str, Path]:
        with ctx.db() as db:
            event = _event_or_404(db, request.path_params["id"])
        label = event["relabel"] or event["label"]
        if label not in {e.label for e in ctx.current().events}:
            raise ValueError(f"{label!r} is not a configured event any more; add it first")
        found = _clip_of(ctx, event)
        audio = clip_audio(found)
        lo, hi = (int(t * found.sample_rate) for t in found.extent_s)
        part = audio[lo:hi] if hi - lo >= MIN_EXAMPLE_S * found.sample_rate else audio
        encoded = io.BytesIO()
        sf.write(encoded, part, found.sample_rate, format="FLAC")
        return label, ctx.examples.store(label, encoded.getvalue(), f"event-{short_id(event['id'])}.flac")

    label, path = await run_in_threadpool(run)
    events = event_values(ctx.current(), example_id)
    for entry in events:
        if entry["label"] == label:
            entry["examples"].append(example_id(path))
    return await save_settings(ctx, {"events": events})


ROUTES = [Route("/api/events", index), Route("/api/events/{id}", detail),
          Route("/api/events/{id}/clip", clip), Route("/api/events/{id}/spectrogram", spectrogram),
          Route("/api/events/{id}/curve", curve),
          Route("/api/events/{id}/feedback", feedback, methods=["POST"]),
          Route("/api/events/{id}/as-example", as_example, methods=["POST"]),
          Route("/api/refine", refine, methods=["POST"])]
