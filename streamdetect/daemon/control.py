"""A small loopback HTTP API to read and replace the running events: ``GET /events``, ``PUT /events``.

A ``PUT`` goes through the same path as SIGHUP: the new events are validated with the config's own pydantic
models (errors come back with key paths, status 400), then the inference thread applies them between two
batches and the answer waits (bounded) for that. Changes live in memory only: the YAML file is not rewritten,
so the next SIGHUP or restart goes back to what the file says.

The stdlib ``ThreadingHTTPServer`` is enough for two routes used by one operator or script on loopback, and
adds no dependency to the run-time path (the metrics endpoint uses it the same way).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streamdetect.config import Config, ConfigError
from streamdetect.config.edit import events_payload, replace_events

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
MAX_JSON_DEPTH = 32  # an events list is 4 deep; Python's json parser recurses and fails near 1,000
IDLE_TIMEOUT_S = 10.0  # a connection that sends nothing for this long is closed (and its thread ends)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays/objects deeper than ``limit``: one pass over the bytes, no recursion, so a
    200,000-deep body is refused before ``json.loads`` could fail with ``RecursionError``. Brackets inside
    strings do not count."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class ControlError(RuntimeError):
    """The control API cannot start (no token in the environment, port in use)."""


def control_token(env_var: str, environ: dict[str, str] | None = None) -> str:
    token = (environ if environ is not None else os.environ).get(env_var, "")
    if not token.strip():
        raise ControlError(f"control.port is set but the environment variable {env_var} holding the control API "
                           "token is empty or unset; export it (e.g. a long random string) or remove control.port")
    return token


MAX_CONNECTIONS = 32  # handler threads at once; more connections are closed at once, without a thread


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` of them: 400 held sockets cost 32 threads for at
    most the idle timeout, not 400 threads for as long as the clients like."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        log.debug("control API: connection from %s ended with an error", client_address, exc_info=True)


class ControlServer:
    """Serves the API in a background thread; ``request_reload(config)`` returns a ticket with a ``done`` event."""

    def __init__(self, current: Callable[[], Config], request_reload: Callable[[Config], Any], token: str,
                 host: str = "127.0.0.1", port: int = 0, apply_timeout_s: float = 30.0,
                 idle_timeout_s: float = IDLE_TIMEOUT_S):
        secret = token.encode("utf-8")

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout_s  # socket timeout: a held, silent connection is closed and its thread ends

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                given = header[7:].encode("utf-8") if header.startswith("Bearer ") else b""
                if hmac.compare_digest(given, secret):
                    return True
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Bearer")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_GET(self):
                if self.path.split("?")[0] != "/events":
                    return self._send(404, {"error": "not found; the API has GET and PUT /events"})
                if self._authorised():
                    self._send(200, events_payload(current()))

            def do_PUT(self):
                try:
                    self._put()
                except OSError:
                    raise  # the client went away or timed out: nothing to answer
                except Exception as e:  # noqa: BLE001 - answer, never drop the connection
                    log.exception("control API: PUT /events failed")
                    self._send(500, {"error": f"internal error, the running events are unchanged: "
                                              f"{type(e).__name__}: {e}"})

            def _put(self):
                if self.path.split("?")[0] != "/events":
                    return self._send(404, {"error": "not found; the API has GET and PUT /events"})
                if not self._authorised():
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = 0
                if length <= 0 or length > MAX_BODY_BYTES:
                    return self._send(400, {"error": f"send a JSON body of 1 to {MAX_BODY_BYTES} bytes"})
                raw = self.rfile.read(length)
                if json_depth_exceeds(raw, MAX_JSON_DEPTH):
                    return self._send(400, {"error": f"JSON nested more than {MAX_JSON_DEPTH} levels deep"})
                try:
                    body = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                    return self._send(400, {"error": f"body is not JSON: {e}"})
                try:
                    config = replace_events(current(), body)
                except ConfigError as e:
                    return self._send(400, {"error": "invalid events",
                                            "problems": [{"key": k, "message": m} for k, m in e.problems]})
                log.info("control API: reloading events %s", ", ".join(ev.label for ev in config.events))
                ticket = request_reload(config)
                if not ticket.done.wait(apply_timeout_s):
                    return self._send(202, {"status": "pending", "check": "GET /events shows the running events"})
                if ticket.error is not None:
                    return self._send(500, {"error": f"reload failed, the previous events keep running: "
                                                     f"{ticket.error}"})
                self._send(200, events_payload(current()))

            def log_message(self, *args):
                pass  # request lines would carry nothing useful; the token is never logged

        try:
            self.server = _BoundedServer((host, port), Handler)
        except OSError as e:
            raise ControlError(f"control API cannot listen on {host}:{port} ({e.strerror}); change control.port") from None
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="control-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
