"""The audio encoder compiled by OpenVINO for the CPU, at fp32 or (on CPUs with bf16 units) bf16."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from streamdetect.embed.encoder.base import RuntimeOptions, check_features, in_chunks
from streamdetect.embed.encoder.device import openvino_module, openvino_precision
from streamdetect.model.manifest import ModelBundle

log = logging.getLogger(__name__)


def compile_openvino(path: Path, precision: str) -> Any:
    """The audio encoder compiled by OpenVINO for the CPU at fp32 or bf16 inference precision, one window per call.

    A static batch of 1 measured best on the full-size model (2 cores, AMX): 21 ms per window against 25 ms, and
    with a dynamic batch OpenVINO keeps memory for every batch size it has seen (peak RSS of `streamdetect run`
    from the fp32 ONNX graph 520 MB against 473 MB). Batching buys nothing on a CPU; callers go row by row.
    """
    core = openvino_module().Core()
    model = core.read_model(str(path))
    model.reshape([1, *model.input(0).get_partial_shape()[1:]])
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})


class OpenVinoAudioEncoder:
    """OpenVINO compiles the fp32 graph itself, at bf16 on CPUs that have it (AMX, AVX-512 BF16)."""

    on_gpu = False

    def __init__(self, bundle: ModelBundle, options: RuntimeOptions):
        params = bundle.frontend_params
        self.options = options
        self.feature_shape = (1, params.n_frames, params.n_mels)
        self.embedding_dim = bundle.embedding_dim
        self.precision = openvino_precision(bundle, options.precision)
        self.file = bundle.audio_encoder_file(self.precision, on_gpu=False)  # the IR at bf16, the ONNX graph at fp32
        self._compiled = compile_openvino(bundle.path(self.file), self.precision)
        self._request = self._compiled.create_infer_request()
        # one request object, not safe from two threads: the engine's and a reload's (embedding its examples)
        self._lock = threading.Lock()
        log.info("%s runs on OpenVINO %s, CPU, %s", self.file, openvino_module().__version__, self.precision)
        self(np.zeros((1, *self.feature_shape), dtype=np.float32))  # warm-up: first run allocates and plans

    def describe(self) -> str:
        return f"OpenVINO CPU {self.precision}"

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return in_chunks(self._run, check_features(features, self.feature_shape), 1)  # compiled for batch 1

    def _run(self, features: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._request.infer({0: features})[self._compiled.output(0)].copy()
