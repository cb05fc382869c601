"""What the control API (``GET``/``PUT /events``) and the metrics endpoints (``/metrics``, ``/healthz``) answer,
written once with no web framework.

Two transports serve these answers: the Starlette routes (``routes_control``, ``routes_metrics``) when the ``web``
extra is installed, and the stdlib servers of ``streamdetect.daemon`` without it. Each hands over the request's
parts and sends back the ``Answer``, so both ports answer the same whichever serves them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamdetect.config.edit import events_payload, replace_events
from streamdetect.config.gate import ConfigGate, Outcome
from streamdetect.web.guard import BodyError, bearer_token, parse_json, token_matches

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # of a PUT /events body
EVENTS_PATH = "/events"
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None = JSON  # None: no body and no Content-Type (a 401)
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(status: int, payload: dict[str, Any]) -> Answer:
    return Answer(status, (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8"))


NOT_FOUND = json_answer(404, {"error": "not found; the API has GET and PUT /events"})
UNAUTHORISED = Answer(401, b"", None, (("WWW-Authenticate", "Bearer"),))


def authorised(authorization: str, token: str) -> bool:
    """The control API's one rule: ``Authorization: Bearer <the control token>``."""
    return token_matches(bearer_token(authorization), token)


def declared_length(content_length: str | None) -> int:
    """A PUT's body length from its header; ``BodyError`` (400) unless it is 1 to ``MAX_BODY_BYTES``."""
    try:
        length = int(content_length or 0)
    except ValueError:
        length = 0
    if length <= 0 or length > MAX_BODY_BYTES:
        raise BodyError(400, f"send a JSON body of 1 to {MAX_BODY_BYTES} bytes")
    return length


def get_events(gate: ConfigGate) -> Answer:
    return json_answer(200, events_payload(gate.current()))


def put_events(gate: ConfigGate, raw: bytes) -> Answer:
    """Replace the running events through the gate and wait for it (the caller runs this off its event loop)."""
    try:
        body = parse_json(raw, MAX_BODY_BYTES)
    except BodyError as e:
        return json_answer(e.status, {"error": e.message})
    try:
        result = gate.apply(lambda running: replace_events(running, body), "control API")
    except Exception as e:  # noqa: BLE001 - answer, never drop the connection
        log.exception("control API: PUT /events failed")
        return json_answer(500, {"error": f"internal error, the running events are unchanged: "
                                          f"{type(e).__name__}: {e}"})
    if result.outcome is Outcome.REJECTED:
        return json_answer(result.status, {"error": "invalid events", "problems": result.problem_list()})
    if result.outcome is Outcome.PENDING:
        return json_answer(result.status, {"status": "pending", "check": "GET /events shows the running events"})
    if result.outcome is Outcome.FAILED:
        return json_answer(result.status, {"error": f"reload failed, the previous events keep running: "
                                                    f"{result.error}"})
    if result.outcome is Outcome.STOPPED:
        return json_answer(result.status, {"error": "the daemon is stopping; the events were not applied"})
    return get_events(gate)


class MetricsSource(Protocol):
    """What ``/metrics`` and ``/healthz`` read (``streamdetect.daemon.metrics.Metrics``)."""

    def exposition(self) -> bytes: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...


def metrics_answer(source: MetricsSource) -> Answer:
    return Answer(200, source.exposition(), CONTENT_TYPE_LATEST)


def health_answer(source: MetricsSource) -> Answer:
    """200 with each stream's liveness, 503 when a live stream has gone quiet."""
    ok, report = source.health()
    return Answer(200 if ok else 503, json.dumps(report).encode())


METRICS_NOT_FOUND = Answer(404, b"not found\n", "text/plain")
