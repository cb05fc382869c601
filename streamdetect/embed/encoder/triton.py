"""The audio encoder on a Triton Inference Server that many stations share.

The station keeps its front end, prompts, scoring, events and sinks; only the audio tower runs on the server.
Log-mel features travel rather than audio: a 3 s window's features are 1001 x 64 float32 (256 kB), its audio at
48 kHz 576 kB as float32 (288 kB as int16), and the front end would have to run on the server too
(bench/triton.py measures the bytes per stream).

Every engine batch is one request (split only where the server's ``max_batch_size`` is smaller), under one
deadline (``timeout_s``, the whole request: a server that trickles its answer fails like a silent one). A request
that failed fast (refused, an HTTP error) is retried ``retries`` times at once (with jittered waits); one that
ran out its deadline is not, as that already cost the inference thread a whole deadline. Then the server counts
as away: with ``fallback: local`` the exported encoder on this machine runs the windows, otherwise
``EncoderUnavailable`` tells the batching engine to keep them queued. While away, a probe thread (never the
inference thread, which would stall detection for a deadline per probe) checks the server's model after each
``Backoff`` wait; once it answers with this station's model, the windows go to the server again. A server can also
restart between two batches unseen; a request that arrives over a new connection is therefore not used until
the model's identity was checked again (and at least every ``RECHECK_S`` on one connection). Each outage is logged
once when it starts and once when it ends; the observer counts everything else.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np

from streamdetect.embed.encoder.base import (
    AudioEncoder,
    EncoderUnavailable,
    RemoteEncoderObserver,
    RuntimeOptions,
    check_features,
    in_chunks,
)
from streamdetect.embed.encoder.kserve import KServeClient, RemoteError, bearer_token
from streamdetect.model.identity import served_file
from streamdetect.model.manifest import ModelBundle, ModelError
from streamdetect.util.backoff import Backoff

log = logging.getLogger(__name__)
RECHECK_S = 60.0  # the model is checked again this often even on one connection (a reload in place)
ANSWER_ROOM_BYTES = 1 << 20  # of an answer beyond the largest batch's embeddings: JSON headers, a model config


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items() if isinstance(v, dict)}


class TritonAudioEncoder:
    """``AudioEncoder`` over KServe v2 HTTP; ``local`` (built by the caller) runs the windows while the server is
    away when the config asks for ``fallback: local``."""

    on_gpu = True  # the station's front end is the bottleneck: give it the cores

    def __init__(self, bundle: ModelBundle, options: RuntimeOptions, local: AudioEncoder | None = None,
                 observer: RemoteEncoderObserver | None = None, sleep: Any = time.sleep):
        cfg = options.triton
        params = bundle.frontend_params
        self.bundle, self.config, self.local, self.observer, self._sleep = bundle, cfg, local, observer, sleep
        self.feature_shape = (1, params.n_frames, params.n_mels)
        self.embedding_dim = bundle.embedding_dim
        self.file, self.precision = "audio_encoder.onnx", "fp32"  # until the server says which file it runs
        self.client = KServeClient(cfg.url, cfg.timeout_s, bearer_token(cfg.token_env), cfg.ca_file, cfg.verify_tls,
                                   max_answer_bytes=ANSWER_ROOM_BYTES + 4 * options.max_batch * self.embedding_dim)
        self.backoff = Backoff(cfg.retry_min_s, cfg.retry_max_s)
        self.input_name, self.output_name, self.server_batch = "input_features", "audio_embedding", 0
        self.state = "unchecked"  # -> up | away | fallback
        self._verified = False
        self._next_try = 0.0
        self._away_since = 0.0
        self._away_kind = ""
        self._trusted: Any = None  # the connection the model was last checked over
        self._recheck = 0.0
        self._lock = threading.Lock()  # one request at a time: the engine thread, the prompt bank's examples
        self._closed = threading.Event()
        self._probing = False  # a probe thread runs (set and cleared under _lock, so an outage never lacks one)
        self._prober: threading.Thread | None = None
        try:
            self._verify()
            self._set_state("up", "")
        except RemoteError as e:
            if e.kind == "wrong_model":
                self.client.close()
                raise ModelError(f"runtime.triton: {self.client.url} model {cfg.model!r}: {e}") from e
            with self._lock:
                self._went_away(e)

    def describe(self) -> str:
        return f"Triton {self.client.url} model {self.config.model} ({self.state})"

    def close(self) -> None:
        self._closed.set()
        if self._prober is not None:
            self._prober.join(self.config.timeout_s + 1.0)  # a probe in flight ends within its deadline
        self.client.close()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        features = check_features(features, self.feature_shape)
        with self._lock:
            if self.state != "up":  # the probe thread says when it is back
                return self._without_server(features)
            for attempt in range(self.config.retries + 1):
                try:
                    return in_chunks(self._remote, features, self.server_batch or None)
                except RemoteError as e:
                    if self.observer is not None:
                        self.observer.remote_error(e.kind)
                    if e.kind in ("wrong_model", "timeout") or attempt == self.config.retries:
                        self._went_away(e)
                        return self._without_server(features)
                    self._sleep(self.backoff.delay(attempt + 1))
        raise AssertionError("unreachable")  # the loop returns or hands over on its last attempt

    def _probe(self) -> None:
        """The probe thread of one outage: after each back-off wait, fetch the model's configuration (outside
        ``_lock``, so the inference thread runs the fallback meanwhile) and check it; ends when it is ours."""
        while not self._closed.wait(max(0.0, self._next_try - time.monotonic())):
            try:
                self.client.model_ready(self.config.model)  # an unloaded model is not back, configured or not
                config = self.client.model_config(self.config.model)
                with self._lock:
                    self._accept(config)
                    self._probing = False
                    self._came_back()
                return
            except RemoteError as e:
                if self.observer is not None:
                    self.observer.remote_error(e.kind)
                with self._lock:
                    self._went_away(e)
        with self._lock:
            self._probing = False

    def _remote(self, features: np.ndarray) -> np.ndarray:
        if not self._verified:
            self._verify()
        t0 = time.perf_counter()
        result = self.client.infer(self.config.model, self.input_name, self.output_name, features)
        if result.connection is None or result.connection is not self._trusted or time.monotonic() > self._recheck:
            self._verify()  # a new connection: maybe a restarted server with another model; its answer waits
            self._trusted = result.connection
        if result.outputs.shape != (features.shape[0], self.embedding_dim):
            raise RemoteError("protocol", f"the server answered shape {result.outputs.shape} for "
                              f"{features.shape[0]} windows, expected ({features.shape[0]}, {self.embedding_dim})")
        if self.observer is not None:
            self.observer.remote_call(time.perf_counter() - t0, features.shape[0], result.sent_bytes,
                                      result.received_bytes)
        return result.outputs

    def _verify(self) -> None:
        self._accept(self.client.model_config(self.config.model))

    def _accept(self, config: dict[str, Any]) -> None:
        """Refuse a server whose model is not this station's export (a ``wrong_model`` RemoteError)."""
        try:
            file = served_file(self.bundle, _parameters(config))
            inputs, outputs = config.get("input", []), config.get("output", [])
            if len(inputs) != 1 or len(outputs) != 1:
                raise ValueError(f"it takes {len(inputs)} inputs and gives {len(outputs)} outputs, expected 1 and 1")
            dims = [int(d) for d in inputs[0].get("dims", [])]
            if dims != list(self.feature_shape) or inputs[0].get("data_type") != "TYPE_FP32":
                raise ValueError(f"its input is {inputs[0].get('data_type')} {dims}, expected TYPE_FP32 "
                                 f"{list(self.feature_shape)}")
        except ValueError as e:
            raise RemoteError("wrong_model", f"refused: {e}") from e
        self.file, self.precision = file, {"audio_encoder.fp16.onnx": "fp16"}.get(file, "fp32")
        self.input_name, self.output_name = inputs[0]["name"], outputs[0]["name"]
        self.server_batch = int(config.get("max_batch_size", 0))
        self._verified = True
        self._recheck = time.monotonic() + RECHECK_S

    def _without_server(self, features: np.ndarray) -> np.ndarray:
        if self.local is not None:
            if self.observer is not None:
                self.observer.fallback_windows(features.shape[0])
            return self.local(features)
        # after the next probe; while one is in flight, after the shortest back-off (each try recomputes features)
        raise EncoderUnavailable(f"the Triton server {self.client.url} is away",
                                 max(self.config.retry_min_s, self._next_try - time.monotonic()))

    def _went_away(self, error: RemoteError) -> None:
        """(``_lock`` held.) Count the server as away, and make sure one probe thread looks for its return."""
        self._verified = False
        self._next_try = time.monotonic() + self.backoff.next_delay()
        if not self._probing and not self._closed.is_set():
            self._probing = True
            self._prober = threading.Thread(target=self._probe, name="triton-probe", daemon=True)
            self._prober.start()
        if self.state in ("away", "fallback"):
            if error.kind != self._away_kind:  # down, then up with another model: say so, once
                self._away_kind = error.kind
                log.warning("Triton server %s model %s is still away, now: %s", self.client.url,
                            self.config.model, error)
                self._set_state(self.state, str(error))
            return
        self._away_since, self._away_kind = time.monotonic(), error.kind
        then = ("running the windows on the local encoder until it returns" if self.local is not None
                else f"windows wait (at most runtime.triton.queue_windows={self.config.queue_windows} of them)")
        log.warning("Triton server %s model %s is away (%s): %s", self.client.url, self.config.model, error, then)
        self._set_state("fallback" if self.local is not None else "away", str(error))

    def _came_back(self) -> None:
        self.backoff.reset()
        if self.state != "unchecked":
            log.warning("Triton server %s model %s is back after %.1f s", self.client.url, self.config.model,
                        time.monotonic() - self._away_since)
        self._set_state("up", "")

    def _set_state(self, state: str, detail: str) -> None:
        self.state = state
        if self.observer is not None:
            self.observer.remote_state(state, detail)


def open_triton_encoder(bundle: ModelBundle, options: RuntimeOptions, open_local: Any,
                        observer: RemoteEncoderObserver | None = None) -> TritonAudioEncoder:
    """The remote encoder; with ``fallback: local`` also the local one (what ``device: auto`` picks), opened now
    so that the first outage does not stall the engine while a model loads."""
    local = None
    if options.triton.fallback == "local":
        local = open_local(bundle, dataclasses.replace(options, device="auto"))
    return TritonAudioEncoder(bundle, options, local, observer)
