"""What every route handler reads from its request and how it answers.

``build_app`` puts the ``WebContext`` and the ``Auth`` on the app's state once; the handlers are plain
module-level functions that read them from there, so two apps (two tests, two daemons) never share one, and a
handler can be read without the closure that used to build it. Queries are parsed into the models of
``defs.query`` (a bad value: ``ValueError`` naming the key, which ``common.api`` answers with 400) and answers are
the models of ``defs.response``.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from streamdetect.web.auth import Auth
from streamdetect.web.context import WebContext

Q = TypeVar("Q", bound=BaseModel)


def install(app: Starlette, ctx: WebContext, auth: Auth) -> None:
    app.state.ctx, app.state.auth = ctx, auth


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def auth_of(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def query_problem(error: ValidationError) -> str:
    """One line for the first problem, naming its key (a validator's own message already does)."""
    first = error.errors()[0]
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])
    key = ".".join(str(part) for part in first["loc"])
    return f"{key}: {first['msg'].replace('Input should be', 'expected')} (found {first.get('input')!r})"


def query(request: Request, model: type[Q]) -> Q:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as e:
        raise ValueError(query_problem(e)) from None


def reply(answer: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer's JSON: its keys by their wire names, only those that were set (an absent key stays absent)."""
    return JSONResponse(answer.model_dump(mode="json", by_alias=True, exclude_unset=True), status, headers=headers)
