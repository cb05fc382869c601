"""ONNX Runtime sessions for the exported CLAP audio and text encoders.

Each class owns exactly one ``InferenceSession``: explicit thread counts, execution providers chosen from
config with a CPU fallback that is logged (never silent), input names read from the session, one warm-up run.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.manifest import (
    AUDIO_ENCODER_FP16,
    AUDIO_ENCODER_INT8,
    AUDIO_INPUT,
    TEXT_ENCODER,
    TOKENIZER,
    ModelBundle,
    ModelError,
)

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run the ONNX sessions; mirrors the ``runtime`` section of the config."""

    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | int8 | fp16 | bf16 (openvino)
    intra_op_threads: int = 0  # 0: onnxruntime picks (one per physical core)
    inter_op_threads: int = 1
    spin: bool = False  # let idle onnxruntime threads busy-wait (lower latency, but they steal the CPU)
    memory_arena: bool = False  # onnxruntime's CPU arena + memory patterns: +135 MB at batch 4, no speed gain here
    max_batch: int = 64  # the largest encoder call; TensorRT builds its engine for batches 1..max_batch


def limit_blas_threads() -> None:
    """Run numpy's BLAS (the front end's mel product) on one thread for the rest of the process.

    An idle OpenBLAS pool spins on the cores the encoder needs: with it, OpenVINO bf16 took 41 ms per window
    instead of 25 ms on 2 cores. A user's own OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS wins.
    """
    import os

    if any(name in os.environ for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded; without one, trying the CUDA provider only prints errors."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    # openvino runs the audio encoder itself; onnxruntime sessions (the text encoder) stay on the CPU there
    if device in ("cpu", "openvino") or (device == "auto" and not nvidia_driver_present()):
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels of streamdetect[gpu], if installed
        ort.preload_dlls()
    wanted = ["TensorrtExecutionProvider"] if device == "tensorrt" else []
    wanted.append("CUDAExecutionProvider")
    if wanted[0] not in available:
        if device in ("cuda", "tensorrt"):
            raise RuntimeError(
                f"runtime.device is '{device}' but this onnxruntime has no {wanted[0]} "
                f"(available: {', '.join(available)}); install onnxruntime-gpu (and TensorRT for 'tensorrt') "
                "or set runtime.device: cpu"
            )
        return ["CPUExecutionProvider"]
    return wanted + ["CPUExecutionProvider"]


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


def open_session(path: Path, options: RuntimeOptions, trt_profile: dict[str, str] | None = None):
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
    wanted = _providers(options.device)
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


def _openvino():
    try:
        import openvino
    except ImportError as e:
        raise RuntimeError("runtime.device is 'openvino' but the openvino package is not installed; "
                           "pip install 'streamdetect[openvino]' or set runtime.device: cpu") from e
    return openvino


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether OpenVINO finds bf16 units (AMX, AVX-512 BF16) on this CPU; False without openvino installed."""
    if importlib.util.find_spec("openvino") is None:
        return False
    return "BF16" in _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_device(bundle: ModelBundle, options: RuntimeOptions) -> str:
    """Where the audio encoder runs. 'auto' picks OpenVINO bf16 on a CPU with bf16 units when the export shipped
    bf16 and openvino is installed: on 2 AMX cores tools/bench.py measured 22 ms per window against 29 ms for
    onnxruntime int8 (44 real-time streams against 28), at cosine 0.99998 vs fp32 against 0.9998, and peak RSS
    289 MB against 250 MB. Otherwise 'auto' stays onnxruntime's (the GPU where there is one, else the CPU); an
    explicit precision other than bf16 keeps onnxruntime too."""
    if options.device != "auto" or nvidia_driver_present():
        return options.device
    if options.precision == "bf16" or (options.precision == "auto" and bundle.shipped("bf16")
                                       and cpu_has_native_bf16()):
        return "openvino"
    return options.device


def openvino_precision(bundle: ModelBundle, precision: str) -> str:
    """fp32 or bf16: bf16 where asked (or 'auto') and the export verified it on OpenVINO, and this CPU has it."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ModelError(f"runtime.precision {precision} does not run on openvino; use fp32, bf16 or auto")
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        bundle.audio_encoder_file("bf16", on_gpu=False)  # refused, with the reason, unless the export verified it
    native = cpu_has_native_bf16()
    if precision == "bf16" and not native:
        log.warning("this CPU has no native bf16; OpenVINO emulates it (slower than fp32)")
    return "bf16" if precision == "bf16" or (bundle.shipped("bf16") and native) else "fp32"


def compile_openvino(path: Path, precision: str):
    """The audio encoder compiled by OpenVINO for the CPU at fp32 or bf16 inference precision, one window per call.

    A static batch of 1 measured best on the full-size model (2 cores, AMX): 21 ms per window against 25 ms, and
    with a dynamic batch OpenVINO keeps memory for every batch size it has seen (peak RSS of `streamdetect run`
    from the fp32 ONNX graph 520 MB against 473 MB). Batching buys nothing on a CPU; callers go row by row.
    """
    core = _openvino().Core()
    model = core.read_model(str(path))
    model.reshape([1, *model.input(0).get_partial_shape()[1:]])
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})


def audio_encoder_file(bundle: ModelBundle, options: RuntimeOptions) -> str:
    """Which exported audio encoder these options run ('auto': bf16 on OpenVINO or int8 on a CPU, fp16 on a GPU,
    when shipped; see resolve_device)."""
    if resolve_device(bundle, options) == "openvino":  # bf16 from its IR; fp32 from the ONNX graph, for parity
        precision = openvino_precision(bundle, options.precision)
        return bundle.audio_encoder_file(precision, on_gpu=False)
    if options.precision == "bf16":
        raise ModelError("runtime.precision bf16 runs only with runtime.device: openvino")
    on_gpu = _providers(options.device)[0] in GPU_PROVIDERS
    return bundle.audio_encoder_file(options.precision, on_gpu)


class AudioEncoder:
    """Log-mel features ``(batch, 1, frames, mels)`` -> L2-normalised embeddings ``(batch, dim)``."""

    def __init__(self, bundle: ModelBundle, options: RuntimeOptions | None = None):
        self.options = options or RuntimeOptions()
        params = bundle.frontend_params
        self.feature_shape = (1, params.n_frames, params.n_mels)
        self.embedding_dim = bundle.embedding_dim
        self.session = self._openvino = None
        self.call_batch: int | None = None  # the most windows one call may take (None: any number)
        self.device = resolve_device(bundle, self.options)
        if self.device == "openvino":
            self._open_openvino(bundle)
        else:
            self._open_onnxruntime(bundle)
        self(np.zeros((1, *self.feature_shape), dtype=np.float32))  # warm-up: first run allocates and plans

    def _open_onnxruntime(self, bundle: ModelBundle) -> None:
        self.file = audio_encoder_file(bundle, self.options)
        self.precision = {AUDIO_ENCODER_INT8: "int8", AUDIO_ENCODER_FP16: "fp16"}.get(self.file, "fp32")
        profile = tensorrt_profile(AUDIO_INPUT, self.feature_shape, self.options.max_batch)
        self.session = open_session(bundle.path(self.file), self.options, profile)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RuntimeError(f"{self.file} should take one input, it takes {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()
        # Dynamic int8 quantises activations with one scale per call, so a window's embedding would depend on
        # the other windows of its batch; running int8 one window at a time keeps every result independent.
        # TensorRT's engine takes at most max_batch windows (its profile).
        if self.file == AUDIO_ENCODER_INT8:
            self.call_batch = 1
        elif self.providers[0] == "TensorrtExecutionProvider":
            self.call_batch = self.options.max_batch
        # On a GPU, IO binding lets onnxruntime copy the features in and the embeddings out once per call
        # instead of going through its generic feed/fetch path.
        self.io_binding = self.providers[0] in GPU_PROVIDERS

    def _open_openvino(self, bundle: ModelBundle) -> None:
        """OpenVINO compiles the fp32 graph itself, at bf16 on CPUs that have it (AMX, AVX-512 BF16)."""
        self.precision = openvino_precision(bundle, self.options.precision)
        self.file = bundle.audio_encoder_file(self.precision, on_gpu=False)  # the IR at bf16, the ONNX graph at fp32
        self._openvino = compile_openvino(bundle.path(self.file), self.precision)
        self._request = self._openvino.create_infer_request()
        self.providers = [f"OpenVINO CPU {self.precision}"]
        self.call_batch, self.io_binding = 1, False  # compiled for a batch of 1
        log.info("%s runs on OpenVINO %s, CPU, %s", self.file, _openvino().__version__, self.precision)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 4 or features.shape[1:] != self.feature_shape:
            raise ValueError(
                f"audio encoder expects features of shape (batch, {', '.join(map(str, self.feature_shape))}), "
                f"got {features.shape}"
            )
        features = np.ascontiguousarray(features, np.float32)
        step = self.call_batch or features.shape[0]
        if features.shape[0] > step:
            return np.concatenate([self._run(features[i : i + step]) for i in range(0, features.shape[0], step)])
        return self._run(features)

    def _run(self, features: np.ndarray) -> np.ndarray:
        if self._openvino is not None:
            return self._request.infer({0: features})[self._openvino.output(0)].copy()
        if not self.io_binding:
            return self.session.run([self.output_name], {self.input_name: features})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, features)
        binding.bind_output(self.output_name, "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class TextEncoder:
    """Prompts -> L2-normalised embeddings via the exported text tower and the checkpoint's fast tokenizer."""

    def __init__(self, bundle: ModelBundle, options: RuntimeOptions | None = None):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(bundle.path(TOKENIZER)))
        text = bundle.manifest.get("text", {})
        self.tokenizer.enable_truncation(bundle.text_max_length)
        self.tokenizer.enable_padding(pad_id=int(text.get("pad_id", 1)), pad_token=text.get("pad_token", "<pad>"))
        self.session = open_session(bundle.path(TEXT_ENCODER), options or RuntimeOptions())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        return self.session.run([self.output_name], {k: feeds[k] for k in self.input_names})[0]
