"""Where the audio encoder runs: the CPU's and GPU's capabilities and the choice ``runtime.device: auto`` makes.

Kept apart from the backends so that a tool can ask which file and device a config would run without opening a
session.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
from typing import Any

from streamdetect.embed.encoder.base import GPU_PROVIDERS, RuntimeOptions
from streamdetect.model.manifest import ModelBundle, ModelError

log = logging.getLogger(__name__)


def limit_blas_threads() -> None:
    """Run numpy's BLAS (the front end's mel product) on one thread for the rest of the process.

    An idle OpenBLAS pool spins on the cores the encoder needs: with it, OpenVINO bf16 took 41 ms per window
    instead of 25 ms on 2 cores. A user's own OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS wins.
    """
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


def openvino_module() -> Any:
    """The openvino package, or an error naming the extra that installs it."""
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
    return "BF16" in openvino_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def onnxruntime_providers(device: str) -> list[str]:
    """The execution providers to ask onnxruntime for, best first, always ending on the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    # openvino and triton run the audio encoder elsewhere; onnxruntime sessions (the text encoder) stay on the CPU
    if device in ("cpu", "openvino", "triton") or (device == "auto" and not nvidia_driver_present()):
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


def resolve_device(bundle: ModelBundle, options: RuntimeOptions) -> str:
    """Where the audio encoder runs. ``open_audio_encoder`` has already turned 'auto' on a CPU into the engine
    measured fastest there (``runtime_choice``); what still arrives as 'auto' (a GPU machine, or a caller that
    asks without timing) follows the rule measured on 2 AMX cores: OpenVINO bf16 where the export shipped it and
    the CPU has bf16 units (22 ms per window against 29 ms for onnxruntime int8), else onnxruntime's (the GPU
    where there is one, else the CPU); an explicit precision other than bf16 keeps onnxruntime too."""
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


def audio_encoder_file(bundle: ModelBundle, options: RuntimeOptions) -> str:
    """Which exported audio encoder these options run ('auto': bf16 on OpenVINO or int8 on a CPU, fp16 on a GPU,
    when shipped; see resolve_device)."""
    if resolve_device(bundle, options) == "openvino":  # bf16 from its IR; fp32 from the ONNX graph, for parity
        precision = openvino_precision(bundle, options.precision)
        return bundle.audio_encoder_file(precision, on_gpu=False)
    if options.precision == "bf16":
        raise ModelError("runtime.precision bf16 runs only with runtime.device: openvino")
    on_gpu = onnxruntime_providers(options.device)[0] in GPU_PROVIDERS
    return bundle.audio_encoder_file(options.precision, on_gpu)
