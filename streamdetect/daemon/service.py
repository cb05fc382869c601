"""The daemon assembled from a config: sinks, metrics, embedding log, detector, engine and control API.

``streamdetect run``, ``bench/soak.py`` and ``bench/bench.py`` all build their daemon here, so the wiring is
written once and what the tools measure is what runs. ``DetectorService`` owns everything it opens and closes it
in reverse order, also when building fails halfway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from streamdetect.analysis.embedding_log import log_key
from streamdetect.config import Config
from streamdetect.daemon.build import build_detector
from streamdetect.daemon.control import control_token
from streamdetect.daemon.embedding_log import EmbeddingLogWriter
from streamdetect.daemon.engine import BatchingEngine, EngineStats, run_sources
from streamdetect.daemon.metrics import Metrics
from streamdetect.daemon.reload import ReloadGate
from streamdetect.daemon.remote_metrics import RemoteEncoderMetrics
from streamdetect.daemon.serving import HttpPorts
from streamdetect.daemon.startup import check_outputs
from streamdetect.daemon.summary import SummaryScheduler, summary_senders
from streamdetect.embed.encoder.base import AudioEncoder
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.results import WindowListener
from streamdetect.pipeline.streams import RunSummary, StreamSettings
from streamdetect.pipeline.tap import AudioTap
from streamdetect.schedule import Clock, utc_now
from streamdetect.sinks.base import SinkContext, SinkSet, build_sinks
from streamdetect.sources.base import AudioSource
from streamdetect.util.memory import NativeHeap
from streamdetect.util.times import iso_of
from streamdetect.web.tokens import WebError, web_tokens

log = logging.getLogger(__name__)


def preflight(config: Config) -> str | None:
    """Check what the services need from outside before any audio is opened: every output path is writable
    (``StartupError``, one line per path naming the user) and the control API's token is in the environment
    (``ControlError`` naming the variable). Returns the token (None when the API is off)."""
    check_outputs(config)
    if config.web.port is not None:
        web_tokens(config.web)
    return control_token(config.control.token_env) if config.control.port is not None else None


class DetectorService:
    """A running detector with its services; ``run`` drives sources through it, ``close`` releases it all.

    ``metrics`` forces Prometheus metrics on (the tools read them) even where the config serves none; the HTTP
    endpoint is started only when ``metrics.port`` is configured. ``sinks`` and ``encoder`` replace the
    configured ones; ``max_wait_s`` and ``backlog_warn_s`` tune the batching engine (see ``BatchingEngine``).
    """

    def __init__(self, config: Config, bundle: ModelBundle, *, sinks: SinkSet | None = None,
                 encoder: AudioEncoder | None = None, metrics: bool = False, max_wait_s: float = 0.02,
                 backlog_warn_s: float = 10.0, clock: Clock = utc_now, config_path: Path | None = None):
        self.config, self.bundle = config, bundle
        self._closing = ExitStack()
        try:
            token = preflight(config)
            scheduled = any(e.schedule for e in config.events) or any(s.schedule for s in config.all_sources)
            if (scheduled or config.summary.at) and "timezone" not in config.site.model_fields_set:
                log.warning("schedules and the summary time are read in UTC: set site.timezone (e.g. "
                            "Europe/Berlin) for local time")
            self.sinks = sinks if sinks is not None else build_sinks(
                config.sinks, keep_audio=config.privacy.store_audio, context=SinkContext(
                    config.site.site(), config.site.name or ""))
            self._closing.callback(self.sinks.close)
            self.metrics = Metrics(config.metrics.stale_after_s, config.scoring.mode) if metrics or config.metrics.port is not None \
                else None
            if self.metrics is not None:
                self.metrics.watch_sinks(list(self.sinks.failures), self.sinks.failures.__getitem__,
                                         lambda name: self.sinks.dropped.get(name, 0))
            remote = config.runtime.device == "triton" and encoder is None
            self.remote_metrics = None
            if remote and self.metrics is not None:
                self.remote_metrics = RemoteEncoderMetrics(self.metrics.registry, config.runtime.triton.url,
                                                           config.runtime.triton.model)
                self.metrics.watch_health("remote_encoder", self.remote_metrics.health)
            self.embedding_log = None
            if config.embedding_log.dir is not None and not config.privacy.store_audio:
                log.warning("privacy.store_audio is false: the embedding log in %s is not written",
                            config.embedding_log.dir)
            elif config.embedding_log.dir is not None:
                self.embedding_log = EmbeddingLogWriter(
                    Path(config.embedding_log.dir), log_key(bundle), config.embedding_log.max_days,
                    config.embedding_log.queue_windows)
                self._closing.callback(self.embedding_log.close)
            ports = HttpPorts(self._closing)  # the ASGI surface, or the stdlib servers without the web extra
            if config.metrics.port is not None and self.metrics is not None:
                served = ports.metrics(self.metrics, config.metrics.host, config.metrics.port)
                log.info("metrics on http://%s:%d/metrics and /healthz", *served.address[:2])
            self.live = None
            if config.web.port is not None:
                try:  # the dashboard's framework is an extra: a daemon without `web:` does not need it
                    from streamdetect.web.app import new_hub, start_web
                except ImportError as e:
                    raise WebError(f"web.port is set but the dashboard's packages are missing ({e.name}): "
                                   "pip install 'streamdetect[web]'") from e
                self.live = new_hub(config)
            listeners: list[WindowListener] = [x for x in (self.metrics, self.embedding_log, self.live)
                                               if x is not None]
            self.detector: Detector = build_detector(config, bundle, self.sinks, encoder=encoder,
                                                     observer=self.metrics, listeners=listeners,
                                                     encoder_observer=self.remote_metrics, clock=clock)
            close_encoder = getattr(self.detector.encoder, "close", None)  # a remote one's probe thread and pool
            if encoder is None and callable(close_encoder):
                self._closing.callback(close_encoder)
            self.summary: SummaryScheduler | None = None
            if config.summary.at is not None:
                self.summary = SummaryScheduler(config, summary_senders(config, self.sinks.sinks),
                                                self.sinks.report, clock=clock)
                self.summary.start()
                self._closing.callback(self.summary.close)
            self.engine = BatchingEngine(self.detector, max_wait_s, backlog_warn_s, observer=self.metrics,
                                         max_queue_windows=config.runtime.triton.queue_windows if remote else None,
                                         heap=NativeHeap(), tap=AudioTap(self.sinks, self.live))
            # the one way a config is applied while running: SIGHUP, the control API and the dashboard
            self.gate = ReloadGate(lambda: self.detector.config, self.engine.request_reload)
            self.web = None
            if self.live is not None:
                if (surface := ports.surface) is None:
                    raise WebError("web.port is set but the dashboard's server is missing: "
                                   "pip install 'streamdetect[web]'")
                self.web = start_web(config, bundle, self.live, lambda: self.detector.config,
                                     lambda: self.detector.bank, self.gate, surface, config_path)
                self._closing.callback(self.web.close)
                log.info("dashboard on http://%s:%d/", *self.web.address[:2])
            if token is not None and config.control.port is not None:
                control = ports.control(self.gate, token, config.control.host, config.control.port)
                log.info("control API on http://%s:%d/events", *control.address[:2])
            self._closing.callback(self.gate.close)  # closed first: waits end, no reload is applied after
        except BaseException:
            self._closing.close()
            raise

    def run(self, sources: list[AudioSource], stop: threading.Event,
            settings: Sequence[StreamSettings] | None = None) -> tuple[list[RunSummary], EngineStats]:
        """Drive the sources until they end or ``stop`` is set; ``settings[i]``: source i's own gate and labels."""
        log.info("listening to %s for %s (%s, %s)", ", ".join(s.name for s in sources),
                 ", ".join(self.detector.bank.labels), self.detector.encoder.file, self.detector.encoder.describe())
        # what a crash (SIGKILL, power cut) of an earlier run left open gets its end before any new record
        for record in self.sinks.close_left_open({s.name for s in sources}, iso_of(time.time())):
            if self.metrics is not None:
                self.metrics.record_emitted(record)
        return run_sources(self.detector, sources, stop, engine=self.engine, settings=settings)

    def close(self) -> None:
        """Stop the control API and the dashboard first (no reload may arrive after), then the sinks, the log and
        the metrics."""
        self._closing.close()

    def __enter__(self) -> DetectorService:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
