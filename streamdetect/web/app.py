"""The dashboard app: pages, static assets (shipped in the package, nothing from a CDN), the API routes behind
one guard, and ``start_web`` which the daemon calls with its running parts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from streamdetect.config import Config
from streamdetect.config.gate import ConfigGate
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.text import TextEncoder
from streamdetect.model.manifest import ModelBundle
from streamdetect.prompts.bank import PromptBank
from streamdetect.prompts.cache import KeptInMemory, PromptCache, TextEmbedder, embed_texts
from streamdetect.web import routes_events, routes_live, routes_settings, routes_tune
from streamdetect.web.auth import Auth, GuardMiddleware
from streamdetect.web.context import WebContext, store_places
from streamdetect.web.live import LiveHub
from streamdetect.web.routing import install
from streamdetect.web.server import HttpSurface, Listener, Served
from streamdetect.web.tokens import web_tokens

STATIC = files("streamdetect.web") / "static"
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


# Typed queries kept embedded in memory, newest used last: 2 KB each at 512 dimensions, so at most about
# 0.5 MB; a page of typing and going back hits them, and one past the bound is only embedded again.
QUERIES_KEPT = 256


class TextQueries:
    """Prompt -> unit text embedding for the playground and search, which are GET requests: nothing is written.
    A query is read from the prompt cache when it is there (the configured events' prompts are), else from the
    last ``kept`` queries in memory, else embedded into that memory (``KeptInMemory``); the text encoder opens
    on the first."""

    def __init__(self, cache: PromptCache, open_encoder: Callable[[], TextEmbedder], kept: int = QUERIES_KEPT):
        self.cache, self.store, self.open_encoder = cache, KeptInMemory(cache, kept), open_encoder
        self._encoder: TextEmbedder | None = None
        self._lock = threading.Lock()

    def _open(self) -> TextEmbedder:
        if self._encoder is None:
            self._encoder = self.open_encoder()
        return self._encoder

    def __call__(self, text: str) -> np.ndarray:
        with self._lock:
            return embed_texts([text], self.store, self._open)[0]


async def index_page(_request: Request) -> Response:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


async def login_page(_request: Request) -> Response:
    return HTMLResponse((STATIC / "login.html").read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


# The route table: every handler is a module-level function reading the app's WebContext and Auth from
# ``request.app.state`` (``routing.install``), so the table is built once, not once per app.
ROUTES = [Route("/", index_page), Route("/login", login_page),
          *routes_live.ROUTES, *routes_events.ROUTES, *routes_tune.ROUTES, *routes_settings.ROUTES,
          Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static")]


def build_app(ctx: WebContext, auth: Auth) -> Starlette:
    app = Starlette(routes=ROUTES, middleware=[Middleware(GuardMiddleware, auth=auth,
                                                          max_body_bytes=ctx.web.max_body_kb * 1024,
                                                          max_upload_bytes=ctx.web.max_upload_kb * 1024)])
    install(app, ctx, auth)
    return app


def new_hub(config: Config) -> LiveHub:
    return LiveHub(config.web.history_s, config.web.stale_after_s, max_clients=config.web.max_live_clients)


def start_web(config: Config, bundle: ModelBundle, hub: LiveHub, current: Callable[[], Config],
              bank: Callable[[], PromptBank], gate: ConfigGate, surface: HttpSurface,
              config_path: Path | None = None) -> Served:
    """Serve the dashboard for a running detector on ``surface``; raises ``WebError`` (no token, port in use)."""
    db, clips = store_places(config)
    runtime = RuntimeOptions.from_config(config.runtime)
    cache = PromptCache(Path(config.prompt_cache) if config.prompt_cache else bundle.directory / "prompt_cache",
                        bundle.text_key, bundle.embedding_dim)
    ctx = WebContext(config.web, current, bank, gate, bundle, hub,
                     TextQueries(cache, lambda: TextEncoder(bundle, runtime)), db, clips, config_path)
    app = build_app(ctx, Auth(config.web, web_tokens(config.web)))

    def on_close() -> None:
        hub.close()
        ctx.close()

    return surface.serve(Listener("dashboard", "web.port", config.web.host, config.web.port or 0, app, on_close))
