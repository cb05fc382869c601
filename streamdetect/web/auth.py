"""Who may do what: tokens from the environment, two roles, login sessions, CSRF and body limits.

On loopback with ``login: auto`` there is one local user, an admin, and no login; the Host header must then
name the loopback (a DNS-rebinding page cannot reach it). Anywhere else every request needs a session cookie
(from ``POST /api/login`` with a token) or ``Authorization: Bearer <token>``. Viewers may only read (GET);
every state-changing request needs an admin, and, when it rides on a cookie, the session's CSRF token in an
``X-CSRF-Token`` header (a cross-site form can neither read that token nor set the header) and a JSON body (an
upload: a raw ``application/octet-stream`` body, bounded on its own).

Every token check (a login, a bearer header) takes a token from one bucket shared by the whole app first; a
right token gives it back, so only wrong guesses spend it. When the bucket is empty a guess is answered 429
without being checked: an answer then says nothing of the token, whichever connection sent it.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from streamdetect.config.web import WebConfig
from streamdetect.util.ratelimit import TokenBucket
from streamdetect.web.guard import BodyError, bearer_token, parse_json, token_matches
from streamdetect.web.tokens import login_required

__all__ = ["Auth", "BodyError", "GuardMiddleware", "Session", "TooManyGuesses", "read_body", "read_json",
           "too_many_guesses"]

COOKIE = "streamdetect_session"
SESSION_S = 7 * 86400
ROLES = ("viewer", "admin")
PUBLIC_PATHS = {"/login", "/api/login", "/static/app.css", "/static/js/login.js"}
# Paths whose body is a file (raw bytes, ``application/octet-stream``: like JSON, a type no cross-site form can
# send), bounded by ``max_upload_bytes`` instead of ``max_body_bytes``.
UPLOAD_PATHS = {"/api/settings/examples"}
UPLOAD_TYPE = "application/octet-stream"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
# Wrong tokens checked per second by the whole app, after a burst: someone mistyping gets ten tries at once,
# and a guesser at most 2 a second (172,800 a day: nothing against a 16-character random token), however many
# connections it opens. As Frigate's ``failed_login_rate_limit``, but without a setting: no site needs more.
WRONG_TOKENS_PER_S = 2.0
WRONG_TOKEN_BURST = 10


class TooManyGuesses(Exception):
    """A token that was not checked because the app's guess budget is spent; ``retry_after_s`` until the next."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"too many wrong tokens: try again in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


def too_many_guesses(error: TooManyGuesses) -> JSONResponse:
    """429 with ``Retry-After`` in whole seconds (at least 1, as the header has no fractions)."""
    return JSONResponse({"error": f"too many wrong tokens lately; try again in {math.ceil(error.retry_after_s)} s"},
                        429, headers={"Retry-After": str(max(1, math.ceil(error.retry_after_s)))})


@dataclass(frozen=True)
class Session:
    role: str
    csrf: str
    expires: float
    # Who holds live slots (``LiveHub.subscribe``): one login, or one bearer token; None for the local user.
    owner: str | None = None


class Auth:
    """Sessions in memory (a restart logs everyone out, which is fine for a station's dashboard)."""

    def __init__(self, config: WebConfig, tokens: dict[str, str], guesses: TokenBucket | None = None):
        self.required = login_required(config)
        self.tokens = tokens
        self.guesses = guesses or TokenBucket(WRONG_TOKENS_PER_S, WRONG_TOKEN_BURST)
        self.local = Session("admin", secrets.token_urlsafe(24), float("inf"))  # the loopback user
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def role_of_token(self, token: str) -> str | None:
        found = None
        for role, secret in self.tokens.items():  # every token is compared: the time says nothing of which
            if token_matches(token, secret):
                found = role
        return found

    def check_token(self, token: str) -> str | None:
        """The token's role, None for a wrong one; ``TooManyGuesses`` (nothing checked) when the app's budget of
        wrong tokens is spent. A right token does not spend it."""
        wait_s = self.guesses.take()
        if wait_s:
            raise TooManyGuesses(wait_s)
        role = self.role_of_token(token)
        if role is not None:
            self.guesses.give_back()
        return role

    def login(self, token: str) -> tuple[str, Session] | None:
        role = self.check_token(token)
        if role is None:
            return None
        sid, session = secrets.token_urlsafe(32), Session(role, secrets.token_urlsafe(24), time.time() + SESSION_S,
                                                          "login:" + secrets.token_urlsafe(12))
        with self._lock:
            now = time.time()
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
            self._sessions[sid] = session
        return sid, session

    def logout(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def identify(self, request: Request) -> tuple[Session | None, bool]:
        """(session, by bearer token): who sent the request, None for nobody; ``TooManyGuesses`` for a bearer
        token that could not be checked (a bearer header is a guess as much as a login is)."""
        token = bearer_token(request.headers.get("authorization", ""))
        if token is not None:
            role = self.check_token(token)
            return (Session(role, "", float("inf"), f"bearer:{role}") if role else None), True
        if not self.required:
            return self.local, False
        with self._lock:
            session = self._sessions.get(request.cookies.get(COOKIE, ""))
        return (session if session is not None and session.expires > time.time() else None), False


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class GuardMiddleware:
    """Every request passes here: host check, body size, login, role and CSRF."""

    def __init__(self, app: ASGIApp, auth: Auth, max_body_bytes: int, max_upload_bytes: int | None = None):
        self.app, self.auth, self.max_body_bytes = app, auth, max_body_bytes
        self.max_upload_bytes = max_body_bytes if max_upload_bytes is None else max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        response = self.check(request)
        if response is not None:
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    def check(self, request: Request) -> Response | None:
        path, method = request.url.path, request.method
        if not self.auth.required and _host_name(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            return JSONResponse({"error": "this dashboard only answers to its loopback address"}, 421)
        bound = self.max_upload_bytes if path in UPLOAD_PATHS else self.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > bound):
            return JSONResponse({"error": f"request body over {bound} bytes"}, 413)
        if path in PUBLIC_PATHS:
            return self._csrf(request, None) if method not in SAFE_METHODS else None
        try:
            session, bearer = self.auth.identify(request)
        except TooManyGuesses as e:
            return too_many_guesses(e)
        if session is None:
            if method == "GET" and not path.startswith(("/api/", "/static/")):
                return RedirectResponse("/login", 303)
            return JSONResponse({"error": "log in first (POST /api/login) or send Authorization: Bearer TOKEN"},
                                401, headers={"WWW-Authenticate": "Bearer"})
        request.scope["session"] = session
        if method in SAFE_METHODS:
            return None
        if session.role != "admin" and path != "/api/logout":
            return JSONResponse({"error": "viewers may look and listen; this needs an admin"}, 403)
        return None if bearer else self._csrf(request, session)

    def _csrf(self, request: Request, session: Session | None) -> Response | None:
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return JSONResponse({"error": "cross-site request refused"}, 403)
        wanted = UPLOAD_TYPE if request.url.path in UPLOAD_PATHS else "application/json"
        if not request.headers.get("content-type", "").startswith(wanted):
            return JSONResponse({"error": f"send Content-Type: {wanted}"}, 415)
        if session is not None and not token_matches(request.headers.get("x-csrf-token"), session.csrf):
            return JSONResponse({"error": "missing or wrong X-CSRF-Token header (reload the page)"}, 403)
        return None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, read in chunks up to ``max_bytes`` (a chunked upload has no Content-Length to check). A client
    that hangs up before its body ends is a 400 nobody reads, not an exception (uvicorn logged each one as a
    traceback: any peer could fill the log)."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise BodyError(413, f"request body over {max_bytes} bytes")
    except ClientDisconnect:
        raise BodyError(400, "the client hung up before its request body ended") from None
    return bytes(body)


async def read_json(request: Request, max_bytes: int) -> object:
    """The body's JSON through the shared body guard (size, then depth, then the parse)."""
    return parse_json(await read_body(request, max_bytes), max_bytes)
