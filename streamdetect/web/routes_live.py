"""Session and live view: who am I, log in and out, and the live event stream (server-sent events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import soxr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from streamdetect.web.auth import COOKIE, SESSION_S, TooManyGuesses, too_many_guesses
from streamdetect.web.common import api, body
from streamdetect.web.defs.query import ListenQuery, StreamQuery
from streamdetect.web.defs.response import DoneAnswer, LiveDelta, LoginAnswer, SessionAnswer
from streamdetect.web.listen import Pacer
from streamdetect.web.live import LiveHub, Slot
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


def _refused(hub: LiveHub, slot: Slot) -> Response:
    if slot is Slot.SESSION_FULL:
        return JSONResponse({"error": f"this session has {hub.max_per_session} live views or listeners open "
                                      f"already; close one"}, 429, headers={"Retry-After": "5"})
    return JSONResponse({"error": f"{hub.max_clients} live views are open already (web.max_live_clients)"}, 503)


class LiveResponse(StreamingResponse):
    """A live view or listener, holding the hub slot taken for it until the response ends, however it ends.

    The slot used to be given back in the body's own ``finally``, which never runs when sending the answer's
    start fails (a client gone by then: the body never started, so it has nothing to finish), and that slot was
    lost for good. ``sent`` is the body's running byte count, for the hub's total.
    """

    def __init__(self, chunks: AsyncIterator[str | bytes], hub: LiveHub, owner: str | None, sent: list[int],
                 media_type: str, headers: dict[str, str]):
        super().__init__(chunks, media_type=media_type, headers=headers)
        self.hub, self.owner, self.sent = hub, owner, sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.sent[0], self.owner)


@api
async def stream(request: Request) -> Response:
    hub, owner = context(request).hub, request.scope["session"].owner
    selected = query(request, StreamQuery).stream  # before a slot is taken: a bad query must not keep one
    slot = hub.subscribe(owner)
    if not slot:
        return _refused(hub, slot)
    sent = [0]

    async def events() -> AsyncIterator[str]:
        after, quiet_s = 0, 0.0
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
                sent[0] += len(chunk)
                yield chunk
            await asyncio.sleep(PUSH_INTERVAL_S)
            quiet_s += PUSH_INTERVAL_S

    return LiveResponse(events(), hub, owner, sent, "text/event-stream",
                        {"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@api
async def listen(request: Request) -> Response:
    """The shown audio of one stream as it arrives: raw ``audio/L16`` (big-endian PCM16) at ``LISTEN_RATE``,
    with the privacy filter's private stretches silent and nothing played before it was judged."""
    hub, name, owner = context(request).hub, query(request, ListenQuery).stream, request.scope["session"].owner
    _, rate, _ = hub.listen(name, None)  # LookupError (404) for a stream that sent no audio
    slot = hub.subscribe(owner)
    if not slot:
        return _refused(hub, slot)
    sent = [0]

    async def chunks() -> AsyncIterator[bytes]:
        after: int | None = None
        resample = soxr.ResampleStream(rate, LISTEN_RATE, 1, dtype="int16", quality="MQ")
        pace = Pacer(rate)
        while not hub.closed.is_set():
            after, _, samples = hub.listen(name, after)
            samples = pace.take(samples, time.monotonic())
            if samples.size:
                out = resample.resample_chunk(samples).astype(">i2").tobytes()
                sent[0] += len(out)
                yield out
            await asyncio.sleep(LISTEN_INTERVAL_S)

    return LiveResponse(chunks(), hub, owner, sent, f"audio/L16; rate={LISTEN_RATE}; channels=1",
                        {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Sample-Rate": str(LISTEN_RATE)})


ROUTES = [Route("/api/session", session), Route("/api/live/audio", listen), Route("/api/login", login, methods=["POST"]),
          Route("/api/logout", logout, methods=["POST"]), Route("/api/live", snapshot),
          Route("/api/live/stream", stream)]
