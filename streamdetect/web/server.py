"""The daemon's one HTTP surface: ASGI apps under uvicorn, one event loop in a thread the daemon owns.

Each configured port (``web.port``, ``control.port``, ``metrics.port``) is a ``Listener``: its own socket and
its own app (the dashboard, the control routes, or ``/metrics`` and ``/healthz``), so every port answers the
routes, and asks for the login, it did when each had a server of its own. They share one loop and one thread.

The socket is bound by ``serve``, in the caller's thread, so a port in use is a clear error at start-up (and
port 0 gives a free port that ``address`` reports), not a log line from a thread that then dies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamdetect.util.ratelimit import RateLimitedLog
from streamdetect.web.guard import IDLE_TIMEOUT_S
from streamdetect.web.tokens import WebError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    what: str  # for messages: "dashboard", "control API", "metrics"
    key: str  # the config key of its port, named when it cannot listen
    host: str
    port: int
    app: ASGIApp
    on_close: Callable[[], None] | None = None  # before the server stops (the dashboard ends its live views)


class Served:
    """One listener being served; ``close`` stops it (the surface's other ports go on)."""

    def __init__(self, listener: Listener, sock: socket.socket, server: uvicorn.Server,
                 running: concurrent.futures.Future[Any]):
        self.listener, self._sock, self.server, self._running = listener, sock, server, running
        self.address = sock.getsockname()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.listener.on_close is not None:
            self.listener.on_close()
        self.server.should_exit = True
        try:
            self._running.result(10)
        except Exception:  # noqa: BLE001 - stopping: there is nobody left to tell
            log.debug("%s: the server ended with an error", self.listener.what, exc_info=True)
        self._sock.close()


PEER_WARNINGS = frozenset({"Invalid HTTP request received.", "Unsupported upgrade request."})


class PeerMistakes(logging.LoggerAdapter):
    """uvicorn's error logger as one surface's connections use it, with uvicorn's warnings about what a peer
    sent (``PEER_WARNINGS``, one per request) logged at most once a minute with a count (``RateLimitedLog``):
    any client that reaches the port could otherwise write a log line per request. Everything else (an
    exception in the app) passes unchanged."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0):
        super().__init__(logger, {})
        self._limited = RateLimitedLog(log, interval_s)

    @property
    def level(self) -> int:  # uvicorn compares it with its TRACE level
        return self.logger.level

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level == logging.WARNING and msg in PEER_WARNINGS and not args:
            self._limited("a peer sent what HTTP cannot carry: uvicorn answered 400 (%s)", msg, key=msg)
        else:
            self.logger.log(level, msg, *args, **kwargs)


class IdleClosingH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that sends nothing of a request for ``idle_timeout_s``.

    uvicorn's own keep-alive timer starts only after a response, so a client that connects and sends nothing
    (or trickles a request) would hold its socket for ever; the stdlib servers closed it after their socket
    timeout, and every port of the surface does the same. A request being answered (a live view's event
    stream included) is never cut: the timer runs only while a request is awaited or arriving.
    """

    idle_timeout_s = IDLE_TIMEOUT_S
    peer_log: PeerMistakes | None = None  # the surface's (None: uvicorn's own logger)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.peer_log is not None:
            self.logger = self.peer_log  # type: ignore[assignment]  # handed to each request's cycle too
        super().connection_made(transport)
        self._idle: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # still waiting for (the rest of) a request
        elif self._idle is not None:
            self._idle.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(self.idle_timeout_s, self._close_idle)

    def _close_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def _bind(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listener.host, listener.port))
    except OSError as e:
        sock.close()
        raise WebError(f"{listener.what} cannot listen on {listener.host}:{listener.port} ({e.strerror}); "
                       f"change {listener.key}") from None
    sock.listen(128)
    return sock


class HttpSurface:
    """The event loop thread; ``serve`` adds a port to it, ``close`` stops every port and the thread."""

    def __init__(self, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        # a subclass per surface, so two surfaces in one process (tests) have their own timeout and log limit
        self._protocol = type("IdleClosingH11", (IdleClosingH11,), {
            "idle_timeout_s": idle_timeout_s, "peer_log": PeerMistakes(logging.getLogger("uvicorn.error"))})
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="web-http", daemon=True)
        self._thread.start()
        self._served: list[Served] = []

    def serve(self, listener: Listener) -> Served:
        sock = _bind(listener)
        config = uvicorn.Config(listener.app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2, ws="none", http=self._protocol)
        server = uvicorn.Server(config)
        running = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), self._loop)
        deadline = time.monotonic() + 10
        while not server.started and not running.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if running.done():
            sock.close()
            error = running.exception()
            raise WebError(f"{listener.what} could not start on {listener.host}:{listener.port} ({error}); "
                           f"change {listener.key}")
        served = Served(listener, sock, server, running)
        self._served.append(served)
        return served

    def close(self) -> None:
        """Stop the ports still served (newest first), then the loop and its thread."""
        for served in reversed(self._served):
            served.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
