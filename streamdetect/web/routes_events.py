"""Events and review: the list with its filters, one event's clip, spectrogram and score curve, feedback,
"refine now", and "use as example" (the event's sound becomes an audio example of its label, saved like a
settings change)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from streamdetect.analysis.embedding_log import log_key, read_log
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.prompts.assemble import prompt_bank_for
from streamdetect.prompts.refine import (
    FeedbackError,
    RefinementStore,
    RefineParams,
    mark_feedback,
    refine_events,
    refinements_dir,
)
from streamdetect.store import EventFilter, event_streams, get_event, list_events, parse_when
from streamdetect.util.names import short_id
from streamdetect.util.times import epoch_of
from streamdetect.web.clips import EVENT_ID, Clip, clip_audio, find_clip
from streamdetect.web.common import api, apply_config, body, number
from streamdetect.web.context import WebContext
from streamdetect.web.examples import example_id
from streamdetect.web.routes_settings import save_settings
from streamdetect.web.settings_form import event_values
from streamdetect.web.spectro import SpectrogramParams, payload

PAGE_MAX = 200
CURVE_MARGIN_S = 30.0
THUMB = SpectrogramParams(n_fft=1024, n_bins=32, columns_per_s=8.0)
MIN_EXAMPLE_S = 0.5  # an event shorter than this gives its whole clip (pre- and post-roll too) as the example


def windows_around(ctx: WebContext, since: float, until: float, stream: str | None = None):
    """(stream, wall, start_s, end_s, embedding) of the windows in [since, until]: kept in memory for the last
    minutes, read from the embedding log before that (rows in both count once)."""
    names, wall, starts, ends, embs = ctx.hub.recent_embeddings()
    rows = {(n, round(w, 1)): (n, w, s, e, v) for n, w, s, e, v in zip(names, wall, starts, ends, embs, strict=False)
            if since <= w <= until}
    directory = ctx.current().embedding_log.dir
    if directory is not None:
        try:
            logged = read_log(directory, log_key(ctx.bundle), since, until)
        except FileNotFoundError:
            logged = None
        if logged is not None:
            for i in range(logged.wall.size):
                key = (str(logged.streams[i]), round(float(logged.wall[i]), 1))
                rows.setdefault(key, (key[0], float(logged.wall[i]), float(logged.starts_s[i]),
                                      float(logged.ends_s[i]), logged.embeddings[i]))
    found = sorted((r for r in rows.values() if stream is None or r[0] == stream), key=lambda r: r[1])
    return found


def routes(ctx: WebContext) -> list[Route]:
    def event_or_404(db, event_id: str) -> dict:
        if not EVENT_ID.match(event_id):
            raise LookupError(f"{event_id!r} is not an event id")
        event = get_event(db, event_id)
        if event is None:
            raise LookupError(f"no event {event_id}")
        return event

    def clip_of(event: dict) -> Clip:
        clip = find_clip(ctx.clips, event) if ctx.clips is not None else None
        if clip is None:
            raise LookupError("this event has no clip (a `clips` sink saves them; retention may have deleted it)")
        return clip

    @api
    async def index(request: Request) -> Response:
        q = request.query_params
        before = q.get("before")
        where = EventFilter(
            label=q.get("label") or None, stream=q.get("stream") or None,
            since=parse_when(q["since"]) if q.get("since") else None,
            until=parse_when(q["until"]) if q.get("until") else None,
            min_score=number(request, "min_score"), max_score=number(request, "max_score"),
            review=q.get("review") or "any", before=tuple(before.split("|", 1)) if before and "|" in before else None)
        limit = int(min(max(number(request, "limit", 50) or 50, 1), PAGE_MAX))

        def run():
            with ctx.db() as db:
                rows = list_events(db, where, limit + 1)
                labels, streams = event_streams(db) if not before else ([], [])
            return rows, labels, streams

        rows, labels, streams = await run_in_threadpool(run)
        more = len(rows) > limit
        rows = rows[:limit]
        return JSONResponse({"events": rows, "next": f"{rows[-1]['time']}|{rows[-1]['id']}" if more else None,
                             "labels": labels, "streams": streams})

    @api
    async def detail(request: Request) -> Response:
        def run():
            with ctx.db() as db:
                event = event_or_404(db, request.path_params["id"])
            clip = find_clip(ctx.clips, event) if ctx.clips is not None else None
            if clip is not None:
                event["clip"] = {"url": f"/api/events/{event['id']}/clip", "duration_s": clip.duration_s,
                                 "extent_s": list(clip.extent_s)}
            return event

        return JSONResponse(await run_in_threadpool(run))

    @api
    async def clip(request: Request) -> Response:
        def run():
            with ctx.db() as db:
                return clip_of(event_or_404(db, request.path_params["id"]))

        found = await run_in_threadpool(run)
        media = "audio/flac" if found.path.suffix == ".flac" else "audio/wav"
        download = request.query_params.get("download") == "1"
        return FileResponse(found.path, media_type=media, filename=found.path.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    @api
    async def spectrogram(request: Request) -> Response:
        thumb = request.query_params.get("thumb") == "1"

        def run():
            with ctx.db() as db:
                found = clip_of(event_or_404(db, request.path_params["id"]))
            out = payload(clip_audio(found), found.sample_rate, THUMB if thumb else SpectrogramParams(),
                          120 if thumb else 4000)
            out["extent_s"] = list(found.extent_s)
            return out

        return JSONResponse(await run_in_threadpool(run), headers={"Cache-Control": "private, max-age=300"})

    @api
    async def curve(request: Request) -> Response:
        """The cosine of the event label's prompt vector over the windows around the event."""
        def run():
            with ctx.db() as db:
                event = event_or_404(db, request.path_params["id"])
            bank = ctx.bank()
            label = event["relabel"] or event["label"]
            if label not in bank.labels:
                raise LookupError(f"{label!r} is no longer a running event, so it has no prompt to score")
            vector = bank.events[bank.labels.index(label)]
            t0 = epoch_of(event["time"]) - CURVE_MARGIN_S
            t1 = epoch_of(event["end_time"] or event["time"]) + CURVE_MARGIN_S
            rows = windows_around(ctx, t0, t1, event["stream"])
            points = [[round(w, 2), round(float(np.asarray(v, np.float32) @ vector), 4)] for _, w, _, _, v in rows]
            threshold = next((e.threshold for e in ctx.current().events if e.label == label), None)
            return {"label": label, "points": points, "threshold": threshold, "event": [epoch_of(event["time"]),
                    epoch_of(event["end_time"] or event["time"])]}

        return JSONResponse(await run_in_threadpool(run))

    @api
    async def feedback(request: Request) -> Response:
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
        try:
            full_id, label = await run_in_threadpool(mark_feedback, ctx.db_path, event_id, verdict, relabel)
        except FeedbackError as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse({"id": full_id, "label": label, "verdict": verdict, "relabel": relabel})

    @api
    async def refine(request: Request) -> Response:
        data = await body(request, ctx) or {}
        if not isinstance(data, dict):
            raise ValueError("send a JSON object (alpha, beta, max_angle_deg are optional)")
        if ctx.db_path is None:
            raise LookupError("no event store: add a `sqlite` sink to the config")

        def run():
            config = ctx.current()
            params = RefineParams(float(data.get("alpha", 0.5)), float(data.get("beta", 0.25)),
                                  float(data.get("max_angle_deg", 20.0)))
            bank = prompt_bank_for(ctx.bundle, config.events, config.prompt_cache,
                                   RuntimeOptions.from_config(config.runtime), refined=False)
            store = RefinementStore(refinements_dir(ctx.bundle))
            return config, refine_events(ctx.db_path, config.events, bank.events, ctx.bundle.text_key, store, params)

        try:
            config, results = await run_in_threadpool(run)
        except FeedbackError as e:
            return JSONResponse({"error": str(e)}, 400)
        status, message = await apply_config(ctx, config)  # the new bank picks up the saved versions
        return JSONResponse({"status": message, "labels": [r.__dict__ for r in results]}, status)

    @api
    async def as_example(request: Request) -> Response:
        """The event's part of its clip, stored as an example of its (corrected) label and saved live."""
        await body(request, ctx)  # a JSON body, as for every change (nothing is read from it)

        def run():
            with ctx.db() as db:
                event = event_or_404(db, request.path_params["id"])
            label = event["relabel"] or event["label"]
            if label not in {e.label for e in ctx.current().events}:
                raise ValueError(f"{label!r} is not a configured event any more; add it first")
            found = clip_of(event)
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

    return [Route("/api/events", index), Route("/api/events/{id}", detail),
            Route("/api/events/{id}/clip", clip), Route("/api/events/{id}/spectrogram", spectrogram),
            Route("/api/events/{id}/curve", curve),
            Route("/api/events/{id}/feedback", feedback, methods=["POST"]),
            Route("/api/events/{id}/as-example", as_example, methods=["POST"]),
            Route("/api/refine", refine, methods=["POST"])]
