"""Where the daemon's HTTP ports are served: routes of the ASGI surface when the ``web`` extra is installed,
the stdlib servers only as the fallback without it.

Each port keeps its own routes and its own auth whichever serves it: ``control.port`` the control API with its
token, ``metrics.port`` ``/metrics`` and ``/healthz`` with none, ``web.port`` the dashboard with its login.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol

from streamdetect.config.gate import ConfigGate
from streamdetect.daemon.control import ControlError, ControlServer
from streamdetect.daemon.metrics import Metrics, MetricsServer

if TYPE_CHECKING:
    from streamdetect.web.server import HttpSurface

log = logging.getLogger(__name__)


class Port(Protocol):
    """A served port (``web.server.Served``, ``ControlServer``, ``MetricsServer``)."""

    @property
    def address(self) -> tuple[Any, ...]: ...  # (host, port, ...) as the socket reports it

    def close(self) -> None: ...


def asgi_surface() -> HttpSurface | None:
    """The ASGI surface, or None when starlette or uvicorn is not installed (the ``web`` extra is optional)."""
    try:
        from streamdetect.web.server import HttpSurface
    except ImportError as e:
        log.debug("serving HTTP with the stdlib server (%s is not installed)", e.name)
        return None
    return HttpSurface()


class HttpPorts:
    """Opens the daemon's ports; each ``close`` goes on ``closing``, in the order the ports were opened."""

    def __init__(self, closing: ExitStack):
        self._closing = closing
        self._surface: HttpSurface | None = None
        self._looked = False

    @property
    def surface(self) -> HttpSurface | None:
        """The surface every ASGI port shares (started on first use; None: the stdlib fallback)."""
        if not self._looked:
            self._looked = True
            self._surface = asgi_surface()
            if self._surface is not None:
                self._closing.callback(self._surface.close)
        return self._surface

    def _opened(self, port: Port) -> Port:
        self._closing.callback(port.close)
        return port

    def metrics(self, metrics: Metrics, host: str, port: int) -> Port:
        surface = self.surface
        if surface is None:
            return self._opened(MetricsServer(metrics, host, port))
        from streamdetect.web.routes_metrics import metrics_app
        from streamdetect.web.server import Listener

        return self._opened(surface.serve(Listener("metrics", "metrics.port", host, port, metrics_app(metrics))))

    def control(self, gate: ConfigGate, token: str, host: str, port: int) -> Port:
        surface = self.surface
        if surface is None:
            return self._opened(ControlServer(gate, token, host, port))
        from streamdetect.web.routes_control import control_app
        from streamdetect.web.server import Listener
        from streamdetect.web.tokens import WebError

        try:
            served = surface.serve(Listener("control API", "control.port", host, port, control_app(gate, token)))
        except WebError as e:
            raise ControlError(str(e)) from None
        return self._opened(served)
