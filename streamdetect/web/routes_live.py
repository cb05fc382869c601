"""Session and live view: who am I, log in and out, and the live event stream (server-sent events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import soxr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from streamdetect.web.auth import COOKIE, SESSION_S, TooManyGuesses, too_many_guesses
from streamdetect.web.common import api, body
from streamdetect.web.defs.query import ListenQuery, StreamQuery
from streamdetect.web.defs.response import DoneAnswer, LiveDelta, LoginAnswer, SessionAnswer
from streamdetect.web.listen import Pacer
from streamdetect.web.routing import auth_of, context, query, reply

PUSH_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0
LISTEN_RATE = 16_000  # Hz, 16-bit mono: 32 KB/s (256 kbit/s) per listener, enough for a monitor to 8 kHz; at
# most real time (plus a burst of a second) also for a stream analysed faster, see Pacer
LISTEN_INTERVAL_S = 0.25


async def session(request: Request) -> Response:
    ctx, s = context(request), request.scope["session"]
    config = ctx.current()
    return reply(SessionAnswer(role=s.role, csrf=s.csrf, login_required=auth_of(request).required,
                               streams=ctx.hub.streams(), labels=[e.label for e in config.events],
                               stale_after_s=ctx.web.stale_after_s, has_store=ctx.db_path is not None,
                               has_clips=ctx.clips is not None, has_log=config.embedding_log.dir is not None,
                               privacy=config.privacy.enabled,
                               settings_file=str(ctx.config_path) if ctx.config_path else None))


@api
async def login(request: Request) -> Response:
    data = await body(request, context(request))
    token = data.get("token") if isinstance(data, dict) else None
    try:  # wrong tokens are bounded for the whole app (``Auth.check_token``), not by a sleep per connection
        found = auth_of(request).login(token) if isinstance(token, str) and token else None
    except TooManyGuesses as e:
        return too_many_guesses(e)
    if found is None:
        return JSONResponse({"error": "wrong token"}, 401)
    sid, s = found
    response = reply(LoginAnswer(role=s.role, csrf=s.csrf))
    response.set_cookie(COOKIE, sid, max_age=SESSION_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    auth_of(request).logout(request.cookies.get(COOKIE, ""))
    response = reply(DoneAnswer(ok=True))
    response.delete_cookie(COOKIE)
    return response


async def snapshot(request: Request) -> Response:
    return reply(LiveDelta.model_validate(context(request).hub.delta(query(request, StreamQuery).stream, 0)))


def _too_many(max_clients: int) -> Response:
    return JSONResponse({"error": f"{max_clients} live views are open already (web.max_live_clients)"}, 503)


async def stream(request: Request) -> Response:
    hub = context(request).hub
    if not hub.subscribe():
        return _too_many(hub.max_clients)
    selected = query(request, StreamQuery).stream

    async def events() -> AsyncIterator[str]:
        after, sent, quiet_s = 0, 0, 0.0
        try:
            while not hub.closed.is_set():
                message = LiveDelta.model_validate(hub.delta(selected, after))
                if message.seq != after or after == 0:
                    after = message.seq
                    chunk = f"data: {message.model_dump_json(exclude_unset=True)}\n\n"
                    quiet_s = 0.0
                elif quiet_s >= KEEPALIVE_S:
                    chunk, quiet_s = ": keep-alive\n\n", 0.0
                else:
                    chunk = ""
                if chunk:
                    sent += len(chunk)
                    yield chunk
                await asyncio.sleep(PUSH_INTERVAL_S)
                quiet_s += PUSH_INTERVAL_S
        finally:  # also when the browser went away: the server cancels this generator
            hub.unsubscribe(sent)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@api
async def listen(request: Request) -> Response:
    """The shown audio of one stream as it arrives: raw ``audio/L16`` (big-endian PCM16) at ``LISTEN_RATE``,
    with the privacy filter's private stretches silent and nothing played before it was judged."""
    hub, name = context(request).hub, query(request, ListenQuery).stream
    _, rate, _ = hub.listen(name, None)  # LookupError (404) for a stream that sent no audio
    if not hub.subscribe():
        return _too_many(hub.max_clients)

    async def chunks() -> AsyncIterator[bytes]:
        after: int | None = None
        sent = 0
        resample = soxr.ResampleStream(rate, LISTEN_RATE, 1, dtype="int16", quality="MQ")
        pace = Pacer(rate)
        try:
            while not hub.closed.is_set():
                after, _, samples = hub.listen(name, after)
                samples = pace.take(samples, time.monotonic())
                if samples.size:
                    out = resample.resample_chunk(samples).astype(">i2").tobytes()
                    sent += len(out)
                    yield out
                await asyncio.sleep(LISTEN_INTERVAL_S)
        finally:
            hub.unsubscribe(sent)

    return StreamingResponse(chunks(), media_type=f"audio/L16; rate={LISTEN_RATE}; channels=1",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                                      "X-Sample-Rate": str(LISTEN_RATE)})


ROUTES = [Route("/api/session", session), Route("/api/live/audio", listen), Route("/api/login", login, methods=["POST"]),
          Route("/api/logout", logout, methods=["POST"]), Route("/api/live", snapshot),
          Route("/api/live/stream", stream)]
