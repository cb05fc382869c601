"""Prometheus metrics and /healthz state of a remote audio encoder (the Triton server stations share).

Kept beside ``Metrics`` rather than in it: the encoder reports through the pipeline's ``RemoteEncoderObserver``
interface, and only a station with ``runtime.device: triton`` has these series.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RemoteEncoderMetrics:
    """A ``RemoteEncoderObserver``: counters and latency in ``registry``, and a health report (``health``)."""

    def __init__(self, registry: CollectorRegistry, url: str, model: str):
        r, self.url, self.model = registry, url, model
        self.requests = Counter("streamdetect_remote_encoder_requests_total", "Requests answered by the server",
                                registry=r)
        self.windows = Counter("streamdetect_remote_encoder_windows_total", "Windows embedded by the server",
                               registry=r)
        self.errors = Counter("streamdetect_remote_encoder_errors_total", "Failed requests to the server, by kind "
                              "(connect, timeout, http, protocol, wrong_model)", ["kind"], registry=r)
        self.latency = Histogram("streamdetect_remote_encoder_latency_seconds", "One request's round trip",
                                 registry=r, buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.sent = Counter("streamdetect_remote_encoder_sent_bytes_total", "Request bytes (features)", registry=r)
        self.received = Counter("streamdetect_remote_encoder_received_bytes_total", "Response bytes", registry=r)
        self.outages = Counter("streamdetect_remote_encoder_outages_total", "Times the server went away", registry=r)
        self.fallbacks = Counter("streamdetect_remote_encoder_fallback_windows_total",
                                 "Windows the local encoder ran while the server was away", registry=r)
        self.up = Gauge("streamdetect_remote_encoder_up", "1 while the server answers, else 0", registry=r)
        self.degraded = Gauge("streamdetect_remote_encoder_degraded", "1 while the station runs without its server "
                              "(windows on the local fallback, or waiting), else 0", registry=r)
        self._state, self._detail, self._since = "unchecked", "", time.monotonic()
        self._lock = threading.Lock()

    def remote_call(self, seconds: float, windows: int, sent_bytes: int, received_bytes: int) -> None:
        self.requests.inc()
        self.windows.inc(windows)
        self.latency.observe(seconds)
        self.sent.inc(sent_bytes)
        self.received.inc(received_bytes)

    def remote_error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def remote_state(self, state: str, detail: str) -> None:
        with self._lock:
            if state != "up" and self._state in ("up", "unchecked"):
                self.outages.inc()
            self._state, self._detail, self._since = state, detail, time.monotonic()
        self.up.set(1 if state == "up" else 0)
        self.degraded.set(0 if state == "up" else 1)

    def fallback_windows(self, count: int) -> None:
        self.fallbacks.inc(count)

    def health(self) -> tuple[bool, dict]:
        """Not ok while windows wait for an away server; running on the local fallback is degraded but ok
        (``degraded``: /healthz's ``status`` says so while the answer stays 200)."""
        with self._lock:
            state, detail, since = self._state, self._detail, self._since
        report = {"url": self.url, "model": self.model, "state": state, "degraded": state not in ("up", "unchecked"),
                  "seconds_in_state": round(time.monotonic() - since, 3)}
        if detail:
            report["detail"] = detail
        return state != "away", report
