"""A station under test: a ``DetectorService`` whose audio encoder is a real tritonserver, fed by a live source
that the test hands audio to, so each fault happens at a known point of the stream."""

from __future__ import annotations

import threading
import time

import numpy as np
from fakes import LiveSource
from helpers import SAMPLE_RATE, collecting_sink, immediate_event, make_config

from streamdetect.daemon.service import DetectorService
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.windows import Windower
from streamdetect.sinks.base import SinkSet


def windows_in(seconds: float) -> int:
    """How many windows the station cuts from ``seconds`` of audio (3 s windows, 1 s hop, the tail included)."""
    windower = Windower(3.0, 1.0, SAMPLE_RATE)
    return len(list(windower.push(np.zeros(int(seconds * SAMPLE_RATE), np.float32)))) + len(list(windower.finish()))


class Station:
    """``runtime.device: triton`` against ``url``; ``triton`` overrides the rest of the section."""

    def __init__(self, model, url: str, metrics_port: int | None = None, **triton):
        section = {"url": url, "timeout_s": 2.0, "retries": 1, "retry_min_s": 0.2, "retry_max_s": 0.5, **triton}
        config = make_config(model, [immediate_event("x", threshold=1.0)],
                             runtime={"device": "triton", "precision": "fp32", "batch_size": 4, "triton": section},
                             metrics={"port": metrics_port})
        self.sink = collecting_sink()
        self.service = DetectorService(config, ModelBundle.load(model), sinks=SinkSet([("c", self.sink)]),
                                       metrics=True)
        # noise the test hands in (feed(seconds)), so each fault happens at a known point of the stream
        self.source = LiveSource(name="mic", noise=0.1, hand_fed=True)
        self.stop = threading.Event()
        self.result: tuple | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.result = self.service.run([self.source], self.stop)

    @property
    def stats(self):
        return self.service.engine.stats

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value

    def health(self) -> dict:
        return self.service.metrics.health()[1]

    def wait(self, condition, timeout_s: float = 60.0, what: str = "", feeding: bool = False) -> None:
        """Until ``condition()``; ``feeding``: the stream goes on meanwhile (0.5 s of audio every 0.5 s), as a live
        one does, so the encoder keeps being called."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: stats {self.stats}, " \
                                                f"health {self.health()}"
            if feeding:
                self.source.feed(0.5)
                time.sleep(0.5)
            else:
                time.sleep(0.05)

    def finish(self, timeout_s: float = 60.0):
        """End the stream, wait for the run to return; its (summaries, engine stats)."""
        self.source.end()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the station did not finish"
        self.service.close()
        return self.result

    def close(self) -> None:
        self.stop.set()
        self.source.end()
        self._thread.join(30)
        self.service.close()
