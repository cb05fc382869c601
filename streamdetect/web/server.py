"""The dashboard's HTTP server: the Starlette app under uvicorn, in a thread the daemon owns.

The socket is bound here, before the thread starts, so a port in use is a clear error at start-up (and port 0
gives a free port that ``address`` reports), not a log line from a thread that then dies.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from streamdetect.web.tokens import WebError

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, app: Starlette, host: str, port: int, on_close=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            raise WebError(f"dashboard cannot listen on {host}:{port} ({e.strerror}); change web.port") from None
        self._sock.listen(128)
        self.address = self._sock.getsockname()
        self._on_close = on_close
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2, ws="none")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="web-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self._sock]))

    def close(self) -> None:
        """Stop answering: live views end (their streams see the hub closed), then the server shuts down."""
        if self._on_close is not None:
            self._on_close()
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
