"""Activity charts and the prompt playground: a typed prompt's score curve over recent audio, the past windows
that match it best, and "add as event" through the control API's validated reload path."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamdetect.analysis.embedding_log import LoggedWindows, stretches
from streamdetect.config.edit import replace_events
from streamdetect.store import activity, events_overlapping
from streamdetect.util.times import epoch_of, iso_of
from streamdetect.web.common import api, apply_config, body
from streamdetect.web.context import WebContext
from streamdetect.web.defs.query import ActivityQuery, PromptQuery, SearchQuery
from streamdetect.web.defs.response import (
    ActivityAnswer,
    EventsApplied,
    LabelActivity,
    Match,
    PlaygroundAnswer,
    SearchAnswer,
)
from streamdetect.web.routes_events import Window, windows_around
from streamdetect.web.routing import context, query, reply


@api
async def heatmap(request: Request) -> Response:
    ctx, q = context(request), query(request, ActivityQuery)
    local_now = datetime.now(timezone.utc) + timedelta(minutes=q.tz_offset_min)
    first_day = (local_now - timedelta(days=q.days - 1)).date()
    since = iso_of(datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc).timestamp()
                   - 60 * q.tz_offset_min)

    def run() -> list[tuple[str, str, int, int]]:
        with ctx.db() as db:
            return activity(db, since, q.tz_offset_min)

    rows = await run_in_threadpool(run)
    day_list = [(first_day + timedelta(days=i)).isoformat() for i in range(q.days)]
    labels: dict[str, LabelActivity] = {}
    for label, day, hour, count in rows:
        entry = labels.setdefault(label, LabelActivity(cells=[], per_day=dict.fromkeys(day_list, 0), total=0))
        entry.cells.append([day, hour, count])
        if day in entry.per_day:
            entry.per_day[day] += count
        entry.total += count
    return reply(ActivityAnswer(days=day_list, labels=labels))


def _best_windows(ctx: WebContext, rows: list[Window], scores: np.ndarray, top: int) -> list[Match]:
    logged = LoggedWindows(np.array([r[0] for r in rows], dtype=object), np.array([r[2] for r in rows]),
                           np.array([r[3] for r in rows]), np.array([r[1] for r in rows]),
                           np.zeros((len(rows), 0)))
    found = []
    with_store = ctx.db_path is not None and ctx.db_path.is_file()
    for hit in stretches(logged, scores, top):
        events: list[str] = []
        if with_store:
            with ctx.db() as db:  # a clip to play: an event of that stream around that time
                events = events_overlapping(db, hit.stream, iso_of(epoch_of(hit.time_from) - 10.0),
                                            iso_of(epoch_of(hit.time_to) + 10.0))[:3]
        found.append(Match(**hit.__dict__, events=events))
    return found


@api
async def playground(request: Request) -> Response:
    """Scores over the windows kept in memory (the last ``web.history_s``), per stream."""
    ctx, q = context(request), query(request, PromptQuery)

    def run() -> PlaygroundAnswer:
        vector = ctx.embed_text(q.q)
        now = time.time()
        rows = windows_around(ctx, now - ctx.web.history_s, now)
        scores = np.array([float(np.asarray(r[4], np.float32) @ vector) for r in rows])
        curves: dict[str, list] = {}
        for r, s in zip(rows, scores, strict=True):
            curves.setdefault(r[0], []).append([round(r[1], 2), round(float(s), 4)])
        return PlaygroundAnswer(query=q.q, curves=curves, windows=len(rows),
                                best=_best_windows(ctx, rows, scores, 5) if rows else [])

    return reply(await run_in_threadpool(run))


@api
async def search(request: Request) -> Response:
    """Text search over the embedding log on disk (and the minutes in memory), like ``streamdetect search``."""
    ctx, q = context(request), query(request, SearchQuery)

    def run() -> SearchAnswer:
        vector = ctx.embed_text(q.q)
        rows = windows_around(ctx, q.since_epoch(), time.time())
        if not rows:
            return SearchAnswer(query=q.q, windows=0, best=[])
        scores = np.array([float(np.asarray(r[4], np.float32) @ vector) for r in rows])
        return SearchAnswer(query=q.q, windows=len(rows), best=_best_windows(ctx, rows, scores, 10))

    return reply(await run_in_threadpool(run))


@api
async def add_event(request: Request) -> Response:
    ctx = context(request)
    data = await body(request, ctx)
    if not isinstance(data, dict):
        raise ValueError('send {"label": ..., "prompt": ..., "threshold": ...}')
    current = ctx.current()
    new = {"label": data.get("label"), "prompts": [data.get("prompt")], "threshold": data.get("threshold")}
    config = replace_events(current, [e.model_dump() for e in current.events] + [new])
    status, message = await apply_config(ctx, config)
    return reply(EventsApplied(status=message, events=[e.label for e in ctx.current().events]), status)


ROUTES = [Route("/api/activity", heatmap), Route("/api/playground", playground), Route("/api/search", search),
          Route("/api/playground/add", add_event, methods=["POST"])]
