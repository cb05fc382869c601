"""ONNX Runtime sessions, and the audio encoder that runs the exported CLAP graph on them.

One function opens every session: explicit thread counts, execution providers chosen from config with a CPU
fallback that is logged (never silent), a TensorRT shape profile where TensorRT runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamdetect.embed.encoder.base import GPU_PROVIDERS, RuntimeOptions, check_features, in_chunks
from streamdetect.embed.encoder.device import audio_encoder_file, onnxruntime_providers
from streamdetect.model.manifest import AUDIO_INPUT, REDUCED_PRECISIONS, ModelBundle

log = logging.getLogger(__name__)


def tensorrt_profile(input_name: str, shape: tuple[int, ...], max_batch: int) -> dict[str, str]:
    """One explicit shape range for a batch-first input. Without it TensorRT builds an engine for the first
    batch size it sees and rebuilds (seconds to minutes, on the inference thread) whenever a larger one comes."""
    dims = "x".join(map(str, shape))
    return {"trt_profile_min_shapes": f"{input_name}:1x{dims}",
            "trt_profile_opt_shapes": f"{input_name}:{max_batch}x{dims}",
            "trt_profile_max_shapes": f"{input_name}:{max_batch}x{dims}"}


def _provider_options(provider: str, path: Path, profile: dict[str, str]) -> dict[str, str]:
    """TensorRT builds an engine per model and shape range; caching it next to the model makes that a one-off
    cost (minutes) instead of one at every start. fp16 engines unless the model is int8-quantised."""
    if provider != "TensorrtExecutionProvider":
        return {}
    return {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(path.parent / "trt_cache"), "trt_timing_cache_enable": "True", **profile}


def open_session(path: Path, options: RuntimeOptions, trt_profile: dict[str, str] | None = None) -> Any:
    """Create a session; with device 'auto', a CUDA provider that fails to start falls back to CPU with a log line."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not options.spin:  # idle ORT threads otherwise spin on both cores and slow the numpy front end 5x
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_cpu_mem_arena = options.memory_arena
    so.enable_mem_pattern = options.memory_arena
    so.log_severity_level = 3  # onnxruntime's own warnings go to stderr unstructured; we log what matters
    wanted = onnxruntime_providers(options.device)
    session = ort.InferenceSession(str(path), sess_options=so, providers=wanted,
                                   provider_options=[_provider_options(p, path, trt_profile or {}) for p in wanted])
    used = session.get_providers()
    if wanted[0] not in used:
        if options.device in ("cuda", "tensorrt"):
            raise RuntimeError(
                f"runtime.device is '{options.device}' but onnxruntime could not start {wanted[0]} for {path.name} "
                f"(running on {', '.join(used)}); check the CUDA/cuDNN (and TensorRT) libraries or set "
                "runtime.device: cpu"
            )
        log.warning("%s: %s did not start (missing CUDA/cuDNN libraries? pip install 'streamdetect[gpu]'), "
                    "running on %s", path.name, wanted[0], used[0])
    log.info("%s runs on %s", path.name, used[0])
    return session


class OnnxAudioEncoder:
    """The exported audio tower on onnxruntime: the CPU, CUDA or TensorRT."""

    def __init__(self, bundle: ModelBundle, options: RuntimeOptions):
        params = bundle.frontend_params
        self.options = options
        self.feature_shape = (1, params.n_frames, params.n_mels)
        self.embedding_dim = bundle.embedding_dim
        self.file = audio_encoder_file(bundle, options)
        self.precision = {f: p for p, f in REDUCED_PRECISIONS.items()}.get(self.file, "fp32")
        profile = tensorrt_profile(AUDIO_INPUT, self.feature_shape, options.max_batch)
        self.session = open_session(bundle.path(self.file), options, profile)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RuntimeError(f"{self.file} should take one input, it takes {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()
        self.on_gpu = self.providers[0] in GPU_PROVIDERS
        # Dynamic int8 quantises activations with one scale per call, so a window's embedding would depend on
        # the other windows of its batch; running int8 one window at a time keeps every result independent.
        # TensorRT's engine takes at most max_batch windows (its profile).
        self.call_batch: int | None = None
        if self.precision == "int8":
            self.call_batch = 1
        elif self.providers[0] == "TensorrtExecutionProvider":
            self.call_batch = options.max_batch
        # On a GPU, IO binding lets onnxruntime copy the features in and the embeddings out once per call
        # instead of going through its generic feed/fetch path.
        self.io_binding = self.on_gpu
        self(np.zeros((1, *self.feature_shape), dtype=np.float32))  # warm-up: first run allocates and plans

    def describe(self) -> str:
        return f"onnxruntime {self.providers[0]}"

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return in_chunks(self._run, check_features(features, self.feature_shape), self.call_batch)

    def _run(self, features: np.ndarray) -> np.ndarray:
        if not self.io_binding:
            return self.session.run([self.output_name], {self.input_name: features})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, features)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]
