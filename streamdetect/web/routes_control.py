"""The control API as ASGI routes: ``GET /events`` and ``PUT /events`` with the control token.

Module-level handlers: the port's app holds the gate and the token in ``app.state.control`` (``ControlState``).
The answers are ``web.endpoints``' own, the ones the stdlib fallback sends too; the gate's wait runs in a worker
thread, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamdetect.config.gate import ConfigGate
from streamdetect.web.auth import read_body
from streamdetect.web.endpoints import (
    EVENTS_PATH,
    NOT_FOUND,
    UNAUTHORISED,
    Answer,
    authorised,
    declared_length,
    get_events,
    json_answer,
    put_events,
)
from streamdetect.web.guard import BodyError


@dataclass(frozen=True)
class ControlState:
    gate: ConfigGate
    token: str


def respond(answer: Answer) -> Response:
    return Response(answer.body, answer.status, dict(answer.headers), media_type=answer.content_type)


def _state(request: Request) -> ControlState:
    state: ControlState = request.app.state.control
    return state


async def events(request: Request) -> Response:
    state = _state(request)
    if not authorised(request.headers.get("authorization", ""), state.token):
        return respond(UNAUTHORISED)
    if request.method != "PUT":
        return respond(await run_in_threadpool(get_events, state.gate))
    try:
        raw = await read_body(request, declared_length(request.headers.get("content-length")))
    except BodyError as e:
        return respond(json_answer(e.status, {"error": e.message}))
    return respond(await run_in_threadpool(put_events, state.gate, raw))


ROUTES = [Route(EVENTS_PATH, events, methods=["GET", "PUT"])]


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return respond(NOT_FOUND)


def control_app(gate: ConfigGate, token: str) -> Starlette:
    """The app of the ``control.port``: these routes and nothing else, as the stdlib server answers."""
    app = Starlette(routes=ROUTES, exception_handlers={404: _not_found})
    app.state.control = ControlState(gate, token)
    return app
