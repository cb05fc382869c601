"""Prometheus metrics and a health endpoint, served on loopback by default.

Every metric lives in the ``Metrics`` object's own registry (nothing global), so two detectors in one process
keep separate counts. ``/metrics`` is the Prometheus text format; ``/healthz`` is JSON with each stream's
liveness (seconds since it last delivered audio) and answers 503 when a live stream has gone quiet.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamdetect.pipeline.events import EventRecord


class Metrics:
    def __init__(self, stale_after_s: float = 10.0):
        self.registry = CollectorRegistry()
        self.stale_after_s = stale_after_s
        r = self.registry
        self.windows = Counter("streamdetect_windows", "Windows analysed", ["stream"], registry=r)
        self.gated = Counter("streamdetect_gated_windows", "Windows skipped by the energy gate", ["stream"],
                             registry=r)
        self.dropped_windows = Counter("streamdetect_dropped_windows", "Windows lost to overruns", ["stream"],
                                       registry=r)
        self.private_windows = Counter("streamdetect_private_windows", "Windows the privacy filter found speech "
                                       "in (their audio is not stored)", ["stream"], registry=r)
        self.scheduled_out = Counter("streamdetect_scheduled_out_windows", "Windows outside every active period "
                                     "(not encoded)", ["stream"], registry=r)
        self.records = Counter("streamdetect_event_records", "Event records emitted", ["label", "phase"], registry=r)
        self.scores = Histogram("streamdetect_score", "Cosine score of each window per label", ["label"],
                                buckets=[round(-0.2 + 0.05 * i, 2) for i in range(19)], registry=r)
        self.latency = Histogram("streamdetect_inference_latency_seconds",
                                 "From a window being complete to its records being emitted", registry=r,
                                 buckets=[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.backlog = Gauge("streamdetect_backlog_windows", "Windows waiting for the inference thread", registry=r)
        self.sink_failures = Gauge("streamdetect_sink_failures", "Records a sink failed to deliver", ["sink"],
                                   registry=r)
        self.sink_dropped = Gauge("streamdetect_sink_dropped", "Records dropped by a full sink queue", ["sink"],
                                  registry=r)
        self._last_audio: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self._health_parts: dict[str, Callable[[], tuple[bool, dict]]] = {}

    def heard(self, stream: str, live: bool) -> None:
        with self._lock:
            self._last_audio[stream] = (time.monotonic(), live)

    def forget(self, stream: str) -> None:
        with self._lock:
            self._last_audio.pop(stream, None)

    # DetectorObserver and EngineObserver (streamdetect.pipeline.observers): the pipeline reports through these.
    def window_scored(self, stream: str, labels: tuple[str, ...], scores: np.ndarray, gated: bool) -> None:
        self.windows.labels(stream).inc()
        if gated:
            self.gated.labels(stream).inc()
            return
        for label, value in zip(labels, scores, strict=True):
            self.scores.labels(label).observe(float(value))

    def windows_dropped(self, stream: str, count: int) -> None:
        self.dropped_windows.labels(stream).inc(count)

    def windows_private(self, stream: str, count: int) -> None:
        self.private_windows.labels(stream).inc(count)

    def windows_scheduled_out(self, stream: str, count: int) -> None:
        self.scheduled_out.labels(stream).inc(count)

    def record_emitted(self, record: EventRecord) -> None:
        self.records.labels(record.label, record.phase).inc()

    def backlog_changed(self, windows: int) -> None:
        self.backlog.set(windows)

    def window_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def watch_sinks(self, names: list[str], failures: Callable[[str], int], dropped: Callable[[str], int]) -> None:
        """Expose each sink's running failure and drop counts, read at each scrape."""
        for name in names:
            self.sink_failures.labels(name).set_function(lambda n=name: failures(n))
            self.sink_dropped.labels(name).set_function(lambda n=name: dropped(n))

    def watch_health(self, name: str, report: Callable[[], tuple[bool, dict]]) -> None:
        """Add ``report()``'s (ok, details) to /healthz under ``name`` (the remote encoder's state)."""
        self._health_parts[name] = report

    def health(self) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            streams = {name: {"seconds_since_audio": round(now - t, 3), "live": live,
                              "ok": (not live) or now - t < self.stale_after_s}
                       for name, (t, live) in self._last_audio.items()}
        ok = all(s["ok"] for s in streams.values())
        parts = {name: report() for name, report in self._health_parts.items()}
        ok = ok and all(part_ok for part_ok, _ in parts.values())
        return ok, {"ok": ok, "streams": streams, **{name: details for name, (_, details) in parts.items()}}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP in a background thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 9464):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] == "/metrics":
                    body, status, kind = metrics.exposition(), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    ok, report = metrics.health()
                    body, status, kind = json.dumps(report).encode(), 200 if ok else 503, "application/json"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
