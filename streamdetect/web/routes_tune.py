"""Activity charts and the prompt playground: a typed prompt's score curve over recent audio, the past windows
that match it best, and "add as event" through the control API's validated reload path."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamdetect.analysis.embedding_log import LoggedWindows, stretches
from streamdetect.config.edit import replace_events
from streamdetect.store import activity, events_overlapping, parse_when
from streamdetect.util.times import epoch_of, iso_of
from streamdetect.web.common import api, apply_config, body, number
from streamdetect.web.context import WebContext
from streamdetect.web.routes_events import windows_around

MAX_PROMPT_CHARS = 500



def routes(ctx: WebContext) -> list[Route]:
    @api
    async def heatmap(request: Request) -> Response:
        days = int(number(request, "days", 7) or 7)
        if days not in (7, 30):
            raise ValueError("days must be 7 or 30")
        offset = int(number(request, "tz_offset_min", 0) or 0)
        if not -900 <= offset <= 900:
            raise ValueError("tz_offset_min must lie within +-900 minutes")
        local_now = datetime.now(timezone.utc) + timedelta(minutes=offset)
        first_day = (local_now - timedelta(days=days - 1)).date()
        since = iso_of(datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc).timestamp()
                       - 60 * offset)

        def run():
            with ctx.db() as db:
                return activity(db, since, offset)

        rows = await run_in_threadpool(run)
        day_list = [(first_day + timedelta(days=i)).isoformat() for i in range(days)]
        labels: dict[str, dict] = {}
        for label, day, hour, count in rows:
            entry = labels.setdefault(label, {"cells": [], "per_day": dict.fromkeys(day_list, 0), "total": 0})
            entry["cells"].append([day, hour, count])
            if day in entry["per_day"]:
                entry["per_day"][day] += count
            entry["total"] += count
        return JSONResponse({"days": day_list, "labels": labels})

    def query_vector(request: Request) -> tuple[str, np.ndarray]:
        text = (request.query_params.get("q") or "").strip()
        if not text or len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"type a prompt of 1 to {MAX_PROMPT_CHARS} characters")
        return text, ctx.embed_text(text)

    def best_windows(rows, scores: np.ndarray, top: int) -> list[dict]:
        logged = LoggedWindows(np.array([r[0] for r in rows], dtype=object), np.array([r[2] for r in rows]),
                               np.array([r[3] for r in rows]), np.array([r[1] for r in rows]),
                               np.zeros((len(rows), 0)))
        found = []
        with_store = ctx.db_path is not None and ctx.db_path.is_file()
        for hit in stretches(logged, scores, top):
            item = dict(hit.__dict__)
            item["events"] = []
            if with_store:
                with ctx.db() as db:  # a clip to play: an event of that stream around that time
                    t0, t1 = iso_of(epoch_of(hit.time_from) - 10), iso_of(epoch_of(hit.time_to) + 10)
                    item["events"] = events_overlapping(db, hit.stream, t0, t1)[:3]
            found.append(item)
        return found

    @api
    async def playground(request: Request) -> Response:
        """Scores over the windows kept in memory (the last ``web.history_s``), per stream."""
        def run():
            text, vector = query_vector(request)
            now = time.time()
            rows = windows_around(ctx, now - ctx.web.history_s, now)
            scores = np.array([float(np.asarray(r[4], np.float32) @ vector) for r in rows])
            curves: dict[str, list] = {}
            for r, s in zip(rows, scores, strict=True):
                curves.setdefault(r[0], []).append([round(r[1], 2), round(float(s), 4)])
            return {"query": text, "curves": curves, "windows": len(rows),
                    "best": best_windows(rows, scores, 5) if rows else []}

        return JSONResponse(await run_in_threadpool(run))

    @api
    async def search(request: Request) -> Response:
        """Text search over the embedding log on disk (and the minutes in memory), like ``streamdetect search``."""
        def run():
            text, vector = query_vector(request)
            since = epoch_of(parse_when(request.query_params.get("since") or "7d"))
            rows = windows_around(ctx, since, time.time())
            if not rows:
                return {"query": text, "windows": 0, "best": []}
            scores = np.array([float(np.asarray(r[4], np.float32) @ vector) for r in rows])
            return {"query": text, "windows": len(rows), "best": best_windows(rows, scores, 10)}

        return JSONResponse(await run_in_threadpool(run))

    @api
    async def add_event(request: Request) -> Response:
        data = await body(request, ctx)
        if not isinstance(data, dict):
            raise ValueError('send {"label": ..., "prompt": ..., "threshold": ...}')
        current = ctx.current()
        new = {"label": data.get("label"), "prompts": [data.get("prompt")], "threshold": data.get("threshold")}
        config = replace_events(current, [e.model_dump() for e in current.events] + [new])
        status, message = await apply_config(ctx, config)
        return JSONResponse({"status": message, "events": [e.label for e in ctx.current().events]}, status)

    return [Route("/api/activity", heatmap), Route("/api/playground", playground), Route("/api/search", search),
            Route("/api/playground/add", add_event, methods=["POST"])]
