"""Small helpers every route module uses: JSON errors, the request body, applying a config."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streamdetect.config import Config, ConfigError
from streamdetect.config.gate import Outcome
from streamdetect.web.auth import BodyError, read_json
from streamdetect.web.context import WebContext

Handler = Callable[[Request], Awaitable[Response]]


def problems_response(error: ConfigError) -> JSONResponse:
    return JSONResponse({"error": "invalid config", "problems": [{"key": k, "message": m} for k, m in error.problems]},
                        400)


def api(func: Callable[..., Awaitable[Response]]) -> Handler:
    """Turns the usual failures into JSON answers: a missing store (404), bad input (400), a bad body."""

    @wraps(func)
    async def handler(request: Request) -> Response:
        try:
            return await func(request)
        except BodyError as e:
            return JSONResponse({"error": e.message}, e.status)
        except ConfigError as e:
            return problems_response(e)
        except LookupError as e:
            return JSONResponse({"error": str(e.args[0]) if e.args else "not found"}, 404)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)

    return handler


async def body(request: Request, ctx: WebContext) -> Any:
    return await read_json(request, ctx.web.max_body_kb * 1024)


async def apply_config(ctx: WebContext, config: Config) -> tuple[int, str]:
    """Apply a validated config through the reload gate (SIGHUP's and the control API's) and wait, bounded."""
    result = await run_in_threadpool(ctx.gate.apply, config, "dashboard")
    messages = {Outcome.APPLIED: "applied", Outcome.PENDING: "pending: the detector has not applied it yet",
                Outcome.FAILED: f"reload failed, the previous config keeps running: {result.error}",
                Outcome.REJECTED: "invalid config: " + "; ".join(f"{k}: {m}" for k, m in result.problems),
                Outcome.STOPPED: "the daemon is stopping; the config was not applied"}
    return result.status, messages[result.outcome]

