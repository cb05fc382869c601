"""The control API's token and its stdlib server: ``GET /events``, ``PUT /events`` on loopback.

A ``PUT`` goes through the reload gate, as SIGHUP and the dashboard do: the new events are validated with the
config's own pydantic models (errors come back with key paths, status 400), then the inference thread applies
them between two batches and the answer waits (bounded) for that. Changes live in memory only: the YAML file is
not rewritten, so the next SIGHUP or restart goes back to what the file says.

With the ``web`` extra installed the daemon serves these routes from its ASGI app (``web.routes_control``);
``ControlServer`` is the fallback without it, a stdlib ``ThreadingHTTPServer`` that sends the same answers
(``web.endpoints``), so the run-time path needs no web framework.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streamdetect.config.gate import ConfigGate
from streamdetect.web.endpoints import (
    EVENTS_PATH,
    MAX_BODY_BYTES,
    NOT_FOUND,
    UNAUTHORISED,
    Answer,
    authorised,
    declared_length,
    get_events,
    json_answer,
    put_events,
)
from streamdetect.web.guard import IDLE_TIMEOUT_S, MAX_JSON_DEPTH, BodyError, json_depth_exceeds

__all__ = ["MAX_BODY_BYTES", "MAX_CONNECTIONS", "BoundedServer", "MAX_JSON_DEPTH", "ControlError", "ControlServer", "control_token",
           "json_depth_exceeds", "send_answer"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32  # handler threads at once; more connections are closed at once, without a thread


class ControlError(RuntimeError):
    """The control API cannot start (no token in the environment, port in use)."""


def control_token(env_var: str, environ: dict[str, str] | None = None) -> str:
    token = (environ if environ is not None else os.environ).get(env_var, "")
    if not token.strip():
        raise ControlError(f"control.port is set but the environment variable {env_var} holding the control API "
                           "token is empty or unset; export it (e.g. a long random string) or remove control.port")
    return token


def send_answer(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
    """Write an ``Answer`` from a stdlib handler (the metrics fallback sends through this too)."""
    handler.send_response(answer.status)
    for name, value in answer.headers:
        handler.send_header(name, value)
    if answer.content_type is not None:
        handler.send_header("Content-Type", answer.content_type)
    handler.send_header("Content-Length", str(len(answer.body)))
    handler.end_headers()
    handler.wfile.write(answer.body)


# what socketserver hands a server for each connection (a TCP server's is the socket)
_Request = socket.socket | tuple[bytes, socket.socket]


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` of them: 400 held sockets cost 32 threads for at
    most the idle timeout (the handler's ``timeout``), not 400 threads for as long as the clients like. The
    stdlib servers of every port (the control API, the metrics) are these."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's 5 made a burst of clients wait on SYN retries)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], what: str):
        super().__init__(address, handler)
        self.what = what
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: _Request, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: _Request, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: _Request, client_address: Any) -> None:
        log.debug("%s: connection from %s ended with an error", self.what, client_address, exc_info=True)


class ControlServer:
    """The control API on the stdlib server, in a background thread; every reload goes through ``gate``."""

    def __init__(self, gate: ConfigGate, token: str, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout_s: float = IDLE_TIMEOUT_S):
        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout_s  # socket timeout: a held, silent connection is closed and its thread ends

            def _answer(self) -> Answer | None:
                """The answer before any body is read: not found, or not authorised (None: go on)."""
                if self.path.split("?")[0] != EVENTS_PATH:
                    return NOT_FOUND
                return None if authorised(self.headers.get("Authorization", ""), token) else UNAUTHORISED

            def do_GET(self) -> None:
                send_answer(self, self._answer() or get_events(gate))

            def do_PUT(self) -> None:
                answer = self._answer()
                if answer is None:
                    try:
                        raw = self.rfile.read(declared_length(self.headers.get("Content-Length")))
                    except BodyError as e:
                        answer = json_answer(e.status, {"error": e.message})
                    else:
                        answer = put_events(gate, raw)
                send_answer(self, answer)

            def log_message(self, *args: Any) -> None:
                pass  # request lines would carry nothing useful; the token is never logged

        try:
            self.server = BoundedServer((host, port), Handler, "control API")
        except OSError as e:
            raise ControlError(f"control API cannot listen on {host}:{port} ({e.strerror}); change control.port") from None
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="control-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
