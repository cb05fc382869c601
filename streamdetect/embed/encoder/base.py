"""The one interface every audio encoder backend implements, and the options they are opened with.

The detector, the prompt bank's audio examples, the index and the tools only ever hold an ``AudioEncoder``;
which library runs it (onnxruntime on a CPU or GPU, OpenVINO, a server) is the backend's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run the encoders; built from the config's ``runtime`` section by ``from_config``."""

    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | int8 | fp16 | bf16 (openvino)
    intra_op_threads: int = 0  # 0: onnxruntime picks (one per physical core)
    inter_op_threads: int = 1
    spin: bool = False  # let idle onnxruntime threads busy-wait (lower latency, but they steal the CPU)
    memory_arena: bool = False  # onnxruntime's CPU arena + memory patterns: +135 MB at batch 4, no speed gain here
    max_batch: int = 64  # the largest encoder call; TensorRT builds its engine for batches 1..max_batch
    triton: Any = None  # the config's runtime.triton section (a TritonConfig), for device 'triton'

    @classmethod
    def from_config(cls, runtime: Any) -> RuntimeOptions:
        """Every verb opens its encoders through this, so each honours the whole ``runtime`` section."""
        return cls(device=runtime.device, precision=runtime.precision, intra_op_threads=runtime.intra_op_threads,
                   max_batch=runtime.batch_size, triton=runtime.triton)


class RemoteEncoderObserver(Protocol):
    """Counts what a remote audio encoder did (Prometheus metrics and /healthz in the daemon)."""

    def remote_call(self, seconds: float, windows: int, sent_bytes: int, received_bytes: int) -> None: ...

    def remote_error(self, kind: str) -> None: ...

    def remote_state(self, state: str, detail: str) -> None:
        """``up``, ``away`` (windows wait) or ``fallback`` (the local encoder runs them)."""
        ...

    def fallback_windows(self, count: int) -> None: ...


class EncoderUnavailable(RuntimeError):
    """The encoder cannot run these windows now (its server is away) but may later: the caller keeps them and
    tries again after ``retry_in_s``, instead of losing them."""

    def __init__(self, message: str, retry_in_s: float):
        super().__init__(message)
        self.retry_in_s = retry_in_s


@runtime_checkable
class AudioEncoder(Protocol):
    """Log-mel features ``(batch, 1, frames, mels)`` -> L2-normalised embeddings ``(batch, dim)``."""

    feature_shape: tuple[int, int, int]  # one window's features, without the batch axis
    embedding_dim: int
    file: str  # the exported file it runs (keys the embedding caches); a description for other encoders
    precision: str  # fp32 | int8 | fp16 | bf16
    on_gpu: bool  # sizes the front end's thread pool: a GPU encoder outruns one front-end thread

    def __call__(self, features: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str:
        """Where it runs, for the start-up log line (``onnxruntime CUDAExecutionProvider``, ...)."""
        ...


def check_features(features: np.ndarray, feature_shape: tuple[int, ...]) -> np.ndarray:
    """The features as one contiguous float32 batch, or a ValueError naming the shape that was expected."""
    if features.ndim != 4 or features.shape[1:] != feature_shape:
        raise ValueError(
            f"audio encoder expects features of shape (batch, {', '.join(map(str, feature_shape))}), "
            f"got {features.shape}"
        )
    return np.ascontiguousarray(features, np.float32)


def in_chunks(run: Any, features: np.ndarray, call_batch: int | None) -> np.ndarray:
    """Run ``run`` on at most ``call_batch`` windows at a time (None: all at once)."""
    step = call_batch or features.shape[0]
    if features.shape[0] > step:
        return np.concatenate([run(features[i : i + step]) for i in range(0, features.shape[0], step)])
    return run(features)
