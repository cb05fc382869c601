"""A Triton Inference Server model repository for the exported audio encoder (``export --triton-repo DIR``).

``DIR/<name>/config.pbtxt`` + ``DIR/<name>/1/model.onnx``: the onnxruntime backend with Triton's dynamic batcher,
so the windows of many stations share one GPU call. The config names the exact input and output (the station
checks them), and its parameters carry the model's identity (``streamdetect.model.identity``), so a station
refuses a server that serves another model. On a GPU the fp16 graph is served where the export verified it
(cosine >= 0.999 against fp32, inputs and outputs stay fp32); on a CPU the fp32 graph (int8's per-call scales
would make a window's embedding depend on the other windows of its batch).

``backend="python"`` writes the same config for Triton's Python backend plus a ``model.py`` that runs the ONNX
file through onnxruntime: for a tritonserver without the onnxruntime backend (the one in the nvidia-pytriton
wheel, which the tests run on the CPU).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from streamdetect.model.identity import ModelIdentity
from streamdetect.model.manifest import AUDIO_ENCODER, AUDIO_INPUT, ModelBundle, ModelError
from streamdetect.util.files import atomic_write

AUDIO_OUTPUT = "audio_embedding"
PYTHON_MODEL = "triton_python_model.py"  # in streamdetect/data; the Python backend's model.py


@dataclass(frozen=True)
class TritonRepoOptions:
    name: str = "streamdetect_audio"
    kind: str = "gpu"  # gpu | cpu: the instance_group kind
    precision: str = "auto"  # auto (fp16 on a GPU where verified, else fp32) | fp32 | fp16
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 5000
    instances: int = 1
    backend: str = "onnxruntime"  # onnxruntime | python


def served_encoder(bundle: ModelBundle, options: TritonRepoOptions) -> str:
    """The exported file the server runs, or a ``ModelError`` saying why the asked precision cannot be served."""
    if options.precision == "fp32" or (options.precision == "auto" and (options.kind == "cpu"
                                                                         or not bundle.shipped("fp16"))):
        return AUDIO_ENCODER
    if options.precision in ("fp16", "auto"):
        return bundle.audio_encoder_file("fp16", on_gpu=True)  # refused, with the reason, unless verified
    raise ModelError(f"--triton-precision {options.precision}: a Triton repository serves fp32 or fp16")


def _check(bundle: ModelBundle, options: TritonRepoOptions) -> None:
    if not options.name.replace("_", "").replace("-", "").isalnum():
        raise ModelError(f"--triton-name {options.name!r}: use letters, digits, '_' and '-'")
    bad = [b for b in options.preferred_batch_sizes if not 1 <= b <= options.max_batch_size]
    if options.max_batch_size < 1 or bad:
        raise ModelError(f"Triton batch sizes: preferred {bad} must lie in 1..max_batch_size "
                         f"({options.max_batch_size})")
    if options.kind not in ("gpu", "cpu") or options.backend not in ("onnxruntime", "python"):
        raise ModelError(f"Triton repository: kind {options.kind!r} / backend {options.backend!r} unknown")


def _quoted(text: str) -> str:
    """A protobuf text-format string literal (a source path may hold quotes or backslashes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def config_pbtxt(bundle: ModelBundle, options: TritonRepoOptions, identity: ModelIdentity) -> str:
    """The model configuration in protobuf text format (Triton's ``ModelConfig`` message)."""
    params = bundle.frontend_params
    preferred = ", ".join(str(b) for b in options.preferred_batch_sizes)
    parameters = "".join(f'parameters {{ key: "{k}" value: {{ string_value: {_quoted(v)} }} }}\n'
                         for k, v in identity.parameters().items())
    return (
        f'name: "{options.name}"\n'
        f'backend: "{options.backend}"\n'
        f"max_batch_size: {options.max_batch_size}\n"
        f'input [ {{ name: "{AUDIO_INPUT}" data_type: TYPE_FP32 dims: [ 1, {params.n_frames}, {params.n_mels} ] }} ]\n'
        f'output [ {{ name: "{AUDIO_OUTPUT}" data_type: TYPE_FP32 dims: [ {bundle.embedding_dim} ] }} ]\n'
        f"dynamic_batching {{ preferred_batch_size: [ {preferred} ] "
        f"max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        f"instance_group [ {{ count: {options.instances} kind: KIND_{options.kind.upper()} }} ]\n"
        + parameters
    )


def write_triton_repo(bundle: ModelBundle, repo: Path, options: TritonRepoOptions | None = None) -> Path:
    """Write (or replace) ``repo/<name>/`` for this export; returns that model directory."""
    options = options or TritonRepoOptions()
    _check(bundle, options)
    file = served_encoder(bundle, options)
    identity = ModelIdentity.of(bundle, file)
    model_dir = repo / options.name
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle.path(file), version / "model.onnx.partial")  # path() checks the sha256 first
    (version / "model.onnx.partial").replace(version / "model.onnx")
    if options.backend == "python":
        code = (resources.files("streamdetect") / "data" / PYTHON_MODEL).read_text()  # one name a step on 3.10
        atomic_write(version / "model.py", code)
    else:
        (version / "model.py").unlink(missing_ok=True)
    atomic_write(model_dir / "config.pbtxt", config_pbtxt(bundle, options, identity))
    return model_dir
