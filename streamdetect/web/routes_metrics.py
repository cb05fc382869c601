"""``/metrics`` (Prometheus text) and ``/healthz`` (JSON, 503 when a live stream is quiet) as ASGI routes.

Module-level handlers reading ``app.state.metrics`` (a ``MetricsSource``); no login, as on the stdlib server:
the port listens on loopback unless ``metrics.host`` says otherwise.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamdetect.web.endpoints import METRICS_NOT_FOUND, MetricsSource, health_answer, metrics_answer
from streamdetect.web.routes_control import respond


def _source(request: Request) -> MetricsSource:
    source: MetricsSource = request.app.state.metrics
    return source


async def metrics(request: Request) -> Response:
    return respond(await run_in_threadpool(metrics_answer, _source(request)))


async def healthz(request: Request) -> Response:
    return respond(await run_in_threadpool(health_answer, _source(request)))


ROUTES = [Route("/metrics", metrics), Route("/healthz", healthz)]


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return respond(METRICS_NOT_FOUND)


def metrics_app(source: MetricsSource) -> Starlette:
    """The app of the ``metrics.port``: these two routes, no login."""
    app = Starlette(routes=ROUTES, exception_handlers={404: _not_found})
    app.state.metrics = source
    return app
