"""Reduced precisions of the audio encoder (int8, fp16, OpenVINO bf16), each held to the fp32 graph.

Each one is converted from the fp32 ONNX graph, run on the same generated verification audio, and shipped only
if its embeddings stay within the required cosine of fp32's; the decision and its figure go into the manifest,
so what ships depends on the CPU that exported (int8 GEMMs round differently on AVX2 and on VNNI/AMX).
"""

from __future__ import annotations

import functools
import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import (
    AUDIO_ENCODER,
    AUDIO_ENCODER_FP16,
    AUDIO_ENCODER_INT8,
    AUDIO_ENCODER_INT8_STATIC,
    AUDIO_ENCODER_OPENVINO,
    AUDIO_ENCODER_OPENVINO_WEIGHTS,
    FrontendParams,
    sha256_file,
)
from streamdetect.util.cpu import CpuInfo

if TYPE_CHECKING:
    import onnx  # imported where used: only export needs it

# The cosine to fp32, on the verification audio, that each reduced precision must keep to ship. fp16 is for GPUs
# (on a CPU onnxruntime runs it through casts, slowly); bf16 is the fp32 file run by OpenVINO at bf16 inference
# precision (AMX on Intel CPUs).
PARITY_BOUNDS = {"int8": 0.999, "int8_static": 0.999, "fp16": 0.999, "bf16": 0.999}
# every file a reduced precision may add to an export (one per precision; OpenVINO's IR is two)
REDUCED_FILES = (AUDIO_ENCODER_INT8, AUDIO_ENCODER_INT8_STATIC, AUDIO_ENCODER_FP16, AUDIO_ENCODER_OPENVINO,
                 AUDIO_ENCODER_OPENVINO_WEIGHTS)


def verification_audio(sample_rate: int, seed: int = 0) -> list[np.ndarray]:
    """Generated clips of several lengths and kinds (noise, tones, chirp, bursts), all at most 10 s."""
    rng = np.random.default_rng(seed)
    clips = []
    for seconds in (0.5, 1.0, 3.0, 7.0, 10.0):
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        clips.append(0.1 * rng.standard_normal(t.size))
        clips.append(0.3 * np.sin(2 * np.pi * (400 + 2000 * t / seconds) * t) + 0.01 * rng.standard_normal(t.size))
    t = np.arange(3 * sample_rate) / sample_rate
    clips.append(0.5 * np.sin(2 * np.pi * 1000 * t) * (np.sin(2 * np.pi * 4 * t) > 0))
    return [c.astype(np.float32) for c in clips]


def calibration_features(params: FrontendParams) -> np.ndarray:
    """What static int8 learns its activation ranges from: clips of the verification kinds, from another seed
    than the verification audio, so the check that decides shipping is not run on what it was fitted to."""
    return LogMelFrontend(params)(verification_audio(params.sample_rate, seed=1))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)  # float32 would round 0.99999997 up to 1.0
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)



def _load_without_stale_shapes(path: Path) -> onnx.ModelProto:
    """The dynamo exporter leaves shape annotations that its own graph rewrites made stale; onnx shape
    inference (in the quantizer and the fp16 converter) rejects them, so drop them and let it infer afresh."""
    import onnx

    model = onnx.load(path)
    del model.graph.value_info[:]
    return model


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights (int8 GEMMs are what make a CPU faster)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean.onnx"
        onnx.save(_load_without_stale_shapes(fp32_path), clean)
        quantize_dynamic(clean, int8_path, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])


def quantize_int8_static(fp32_path: Path, int8_path: Path, features: np.ndarray, reduce_range: bool) -> None:
    """Static QDQ int8 with per-channel weights: activation scales calibrated (MinMax) on ``features``, so no
    per-call scale search and no dependence of a window on its batch. ``reduce_range`` keeps weights to 7 bits
    where the CPU lacks VNNI: AVX2's vpmaddubsw sums pairs of u8 x s8 products in 16 bits and saturates."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Rows(CalibrationDataReader):
        def __init__(self, name: str):
            self.name, self.rows = name, iter(features)

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {self.name: row[None]}

    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean.onnx"
        model = _load_without_stale_shapes(fp32_path)
        onnx.save(model, clean)
        quantize_static(clean, int8_path, Rows(model.graph.input[0].name), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                        calibrate_method=CalibrationMethod.MinMax)


def ship_or_refuse(manifest: dict, staging: Path, precision: str, files: tuple[str, ...], cosine: float,
                   required: float, report: Callable[[str], None], engine: str | None = None) -> None:
    """Record a reduced precision's check in the manifest: its files are hashed if it is within ``required`` of
    fp32, deleted from the staging directory if not."""
    shipped = cosine >= required
    manifest["precisions"][precision] = {**({"engine": engine} if engine else {}), "file": files[0],
                                         "status": "shipped" if shipped else "refused",
                                         "cosine_min_vs_fp32": cosine, "required": required}
    for name in files:
        if shipped:
            manifest["files"][name] = sha256_file(staging / name)
        else:
            (staging / name).unlink()
    label = f"{precision} (OpenVINO)" if engine == "openvino" else precision
    report(f"  {label}: min cosine vs fp32 {cosine:.5f} -> " + ("shipped" if shipped else f"refused (needs >= {required})"))


def convert_fp16(fp32_path: Path, fp16_path: Path) -> None:
    """fp16 weights and activations for GPU tensor cores; the input and output stay fp32, so callers and the
    front end are unchanged. Uses onnxruntime's own converter (no extra dependency)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(_load_without_stale_shapes(fp32_path), keep_io_types=True), fp16_path)


def convert_openvino(fp32_path: Path, xml_path: Path) -> None:
    """OpenVINO IR (``.xml`` + ``.bin``) with weights stored at fp16: at bf16 inference precision OpenVINO converts
    them anyway, and compiling from half the bytes keeps `streamdetect run` under its memory target."""
    import openvino as ov

    ov.save_model(ov.Core().read_model(str(fp32_path)), str(xml_path), compress_to_fp16=True)


@dataclass
class Fp32Reference:
    """The verification audio's features and the fp32 ONNX graph's embeddings of them, computed once per export."""

    features: np.ndarray
    embeddings: np.ndarray


def fp32_reference(fp32_path: Path, params: FrontendParams) -> Fp32Reference:
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.encoder.onnx import open_session

    features = LogMelFrontend(params)(verification_audio(params.sample_rate))
    session = open_session(fp32_path, RuntimeOptions(device="cpu"))
    return Fp32Reference(features, session.run(None, {session.get_inputs()[0].name: features})[0])


def openvino_bf16_cosine(reference: Fp32Reference, openvino_path: Path) -> float:
    """Min cosine of OpenVINO at bf16 (on its IR) vs onnxruntime fp32 on the verification audio."""
    from streamdetect.embed.encoder.openvino import compile_openvino

    compiled = compile_openvino(openvino_path, "bf16")
    request = compiled.create_infer_request()
    bf16 = np.concatenate([request.infer({0: row[None]})[compiled.output(0)] for row in reference.features])
    return float(cosine_rows(reference.embeddings, bf16).min())


def cosine_vs_fp32(reference: Fp32Reference, other_path: Path) -> float:
    """Min cosine between another encoder file's embeddings and the fp32 reference (onnxruntime, CPU)."""
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.encoder.onnx import open_session

    session = open_session(other_path, RuntimeOptions(device="cpu"))
    other = session.run(None, {session.get_inputs()[0].name: reference.features})[0]
    return float(cosine_rows(reference.embeddings, other).min())

def reduce_precisions(folder: Path, manifest: dict[str, Any], params: FrontendParams, bounds: dict[str, float],
                      report: Callable[[str], None]) -> None:
    """Steps 5-7 of an export: convert ``folder``'s fp32 audio encoder to each reduced precision and ship or refuse
    each one by its parity with fp32 against ``bounds`` (recorded in ``manifest``; refused files are deleted).
    Apart from the ONNX capture so the decisions can be taken again on an export's fp32 file, as the tests do
    with every bound flipped to take both branches on any CPU."""
    reference = fp32_reference(folder / AUDIO_ENCODER, params)  # what every reduced precision is held to
    # 7-bit weights where the CPU's int8 dot products saturate (AVX2 without VNNI); the choice is recorded
    reduce_range = not CpuInfo.read().has_int8_dot
    static = functools.partial(quantize_int8_static, features=calibration_features(params),
                               reduce_range=reduce_range)
    # precision -> (step, file, fp32 -> reduced converter, how)
    reduced: dict[str, tuple[int, str, Callable[[Path, Path], None], str]] = {
        "int8": (5, AUDIO_ENCODER_INT8, quantize_int8, "dynamic, per channel"),
        "int8_static": (5, AUDIO_ENCODER_INT8_STATIC, static,
                        f"static QDQ, per channel, {'7' if reduce_range else '8'}-bit weights"),
        "fp16": (6, AUDIO_ENCODER_FP16, convert_fp16, "inputs and outputs stay fp32")}
    for precision, (step, name, convert, how) in reduced.items():
        report(f"[{step}/7] converting the audio encoder to {precision} ({how})")
        convert(folder / AUDIO_ENCODER, folder / name)
        cosine = cosine_vs_fp32(reference, folder / name)
        ship_or_refuse(manifest, folder, precision, (name,), cosine, bounds[precision], report)
        manifest["precisions"][precision]["method"] = how
    if importlib.util.find_spec("openvino") is None:
        report("[7/7] bf16 (OpenVINO): not checked; pip install 'streamdetect[openvino]' and export again to use it")
    else:
        report("[7/7] converting the audio encoder to OpenVINO IR (fp16-stored weights, run at bf16)")
        convert_openvino(folder / AUDIO_ENCODER, folder / AUDIO_ENCODER_OPENVINO)
        bf16 = openvino_bf16_cosine(reference, folder / AUDIO_ENCODER_OPENVINO)
        ship_or_refuse(manifest, folder, "bf16", (AUDIO_ENCODER_OPENVINO, AUDIO_ENCODER_OPENVINO_WEIGHTS), bf16,
                       bounds["bf16"], report, engine="openvino")
