"""Prometheus metrics and a health endpoint, served on loopback by default.

Every metric lives in the ``Metrics`` object's own registry (nothing global), so two detectors in one process
keep separate counts. ``/metrics`` is the Prometheus text format; ``/healthz`` is JSON with each stream's
liveness (seconds since it last delivered audio) and answers 503 when a live stream has gone quiet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from streamdetect.daemon.control import BoundedServer, send_answer
from streamdetect.pipeline.events import Catalog, EventRecord
from streamdetect.pipeline.results import WindowResult
from streamdetect.web.endpoints import METRICS_NOT_FOUND, health_answer, metrics_answer
from streamdetect.web.guard import IDLE_TIMEOUT_S

PHASES = ("start", "end")


# Where a label's scores fall, per scoring mode. Both are non-negative quantities, so the histogram keeps its
# ``_sum`` (prometheus_client leaves ``_sum`` out when a bucket is negative, as a cosine's would be).
SCORE_HISTOGRAMS = {
    # cosine: 1 - cosine similarity, 0 (same direction) .. 2; CLAP's audio-text cosines lie around -0.2..0.6
    "cosine": ("streamdetect_score_cosine_distance",
               "1 - cosine similarity of each window to each label's prompts (cosine mode; threshold t is 1 - t)",
               [0.1, 0.2, 0.3, 0.4, *(round(0.45 + 0.05 * i, 2) for i in range(16)), 1.3, 1.5, 2.0]),
    # softmax: a probability 0..1
    "softmax": ("streamdetect_score_probability", "Softmax probability of each label per window (softmax mode)",
                [0.01, 0.02, 0.05, *(round(0.1 * i, 1) for i in range(1, 10)), 0.95, 0.99, 1.0]),
}


class SinkTotals(Collector):
    """The sinks' running totals as counters, read at each scrape: the sinks count in their own threads and
    objects, so the metric is collected from them rather than copied into a second counter."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._failures: Callable[[str], int] = lambda _n: 0
        self._dropped: Callable[[str], int] = lambda _n: 0

    def watch(self, names: list[str], failures: Callable[[str], int], dropped: Callable[[str], int]) -> None:
        self._names, self._failures, self._dropped = list(names), failures, dropped

    def collect(self) -> list[CounterMetricFamily]:
        failures = CounterMetricFamily("streamdetect_sink_failures", "Records a sink failed to deliver",
                                       labels=["sink"])
        dropped = CounterMetricFamily("streamdetect_sink_dropped", "Records dropped by a full sink queue",
                                      labels=["sink"])
        for name in self._names:
            failures.add_metric([name], self._failures(name))
            dropped.add_metric([name], self._dropped(name))
        return [failures, dropped]


class Metrics:
    """``score_mode`` (the config's ``scoring.mode``) picks the score histogram that fits its values."""

    def __init__(self, stale_after_s: float = 5.0, score_mode: str = "cosine"):
        self.registry = CollectorRegistry()
        self.stale_after_s = stale_after_s
        r = self.registry
        # RSS, CPU seconds, open file descriptors (process_*), the interpreter (python_info) and its GC: the
        # memory growth a months-long run could show is watched here.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
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
        self.score_mode = score_mode
        name, help_text, buckets = SCORE_HISTOGRAMS[score_mode]
        self.scores = Histogram(name, help_text, ["label"], buckets=buckets, registry=r)
        self.latency = Histogram("streamdetect_inference_latency_seconds",
                                 "From a window being complete to its records being emitted", registry=r,
                                 buckets=[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.backlog = Gauge("streamdetect_backlog_windows", "Windows waiting for the inference thread", registry=r)
        self.sink_totals = SinkTotals()
        r.register(self.sink_totals)
        self._labels: set[str] = set()  # of the last catalog: their series exist, at zero until counted
        self._last_audio: dict[str, tuple[float, bool]] = {}
        self._never_heard: set[str] = set()  # expected streams that have not delivered audio yet
        self._lock = threading.Lock()
        self._health_parts: dict[str, Callable[[], tuple[bool, dict]]] = {}

    def expect(self, stream: str, live: bool) -> None:
        """A configured stream is starting: from now on it is in /healthz, stale if no audio comes within
        ``stale_after_s`` (a camera down since start-up must not look healthy)."""
        with self._lock:
            self._last_audio[stream] = (time.monotonic(), live)
            self._never_heard.add(stream)

    def heard(self, stream: str, live: bool) -> None:
        with self._lock:
            self._last_audio[stream] = (time.monotonic(), live)
            self._never_heard.discard(stream)

    def forget(self, stream: str) -> None:
        with self._lock:
            self._last_audio.pop(stream, None)
            self._never_heard.discard(stream)

    # A WindowListener (streamdetect.pipeline.results): every judged window.
    def window(self, result: WindowResult) -> None:
        if result.scheduled_out:
            self.scheduled_out.labels(result.stream).inc()
            return
        self.windows.labels(result.stream).inc()
        if result.private:
            self.private_windows.labels(result.stream).inc()
        if result.gated:
            self.gated.labels(result.stream).inc()
            return
        cosine = self.score_mode == "cosine"
        for label, value in zip(result.labels, result.scores, strict=True):
            self.scores.labels(label).observe(1.0 - float(value) if cosine else float(value))

    # DetectorObserver and EngineObserver (streamdetect.pipeline.observers): the pipeline reports through these.

    def windows_dropped(self, stream: str, count: int) -> None:
        self.dropped_windows.labels(stream).inc(count)

    def record_emitted(self, record: EventRecord) -> None:
        self.records.labels(record.label, record.phase).inc()

    def backlog_changed(self, windows: int) -> None:
        self.backlog.set(windows)

    def window_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def catalog_changed(self, catalog: Catalog) -> None:
        """Series at zero for every stream and label, so a rate over them works from the first scrape; the
        series of labels that are gone are dropped (a reload that replaces 3,000 labels frees theirs)."""
        for stream, _ in catalog.streams:
            for counter in (self.windows, self.gated, self.dropped_windows, self.private_windows, self.scheduled_out):
                counter.labels(stream)
        labels = catalog.labels
        with self._lock:
            gone, self._labels = self._labels - labels, labels
        for label in gone:
            for phase in PHASES:
                self.records.remove(label, phase)
            self.scores.remove(label)
        for label in labels:
            for phase in PHASES:
                self.records.labels(label, phase)
            self.scores.labels(label)

    def watch_sinks(self, names: list[str], failures: Callable[[str], int], dropped: Callable[[str], int]) -> None:
        """Expose each sink's running failure and drop counts (read at each scrape), at zero from the start."""
        self.sink_totals.watch(names, failures, dropped)

    def watch_health(self, name: str, report: Callable[[], tuple[bool, dict]]) -> None:
        """Add ``report()``'s (ok, details) to /healthz under ``name`` (the remote encoder's state)."""
        self._health_parts[name] = report

    def health(self) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            streams = {name: _stream_health(now - t, live, name not in self._never_heard, self.stale_after_s)
                       for name, (t, live) in self._last_audio.items()}
        ok = all(s["ok"] for s in streams.values())
        parts = {name: report() for name, report in self._health_parts.items()}
        ok = ok and all(part_ok for part_ok, _ in parts.values())
        # "degraded": answering 200, but a part runs on a stand-in (the local encoder for an away server)
        status = "down" if not ok else "degraded" if any(d.get("degraded") for _, d in parts.values()) else "up"
        return ok, {"ok": ok, "status": status, "streams": streams,
                    **{name: details for name, (_, details) in parts.items()}}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _stream_health(quiet_s: float, live: bool, heard: bool, stale_after_s: float) -> dict:
    """One stream's entry in /healthz. A stream that never delivered audio reports how long it has been
    waiting since start-up under ``seconds_since_audio`` and ``heard: false``."""
    return {"seconds_since_audio": round(quiet_s, 3), "live": live, "heard": heard,
            "ok": (not live) or quiet_s < stale_after_s}


class MetricsServer:
    """``/metrics`` and ``/healthz`` on the stdlib server in a background thread: the fallback when the ``web``
    extra is missing (with it, the daemon serves them from its ASGI app, ``web.routes_metrics``), sending the
    same answers (``web.endpoints``)."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 9464,
                 idle_timeout_s: float = IDLE_TIMEOUT_S):
        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout_s  # socket timeout: a held, silent connection is closed and its thread ends

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                send_answer(self, metrics_answer(metrics) if path == "/metrics" else
                            health_answer(metrics) if path == "/healthz" else METRICS_NOT_FOUND)

            def log_message(self, *args: object) -> None:
                pass

        self.server = BoundedServer((host, port), Handler, "metrics")
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
