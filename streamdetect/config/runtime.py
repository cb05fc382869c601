"""The ``windows``, ``runtime`` and ``gate`` sections: how audio is cut and where the encoder runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from streamdetect.config.base import Strict
from streamdetect.config.triton import TritonConfig


class WindowConfig(Strict):
    window_s: float = Field(3.0, gt=0, le=10.0, description="analysis window length; CLAP takes at most 10 s")
    hop_s: float = Field(1.0, gt=0, le=60.0, description="time between window starts")


class RuntimeConfig(Strict):
    device: Literal["auto", "cpu", "cuda", "tensorrt", "openvino", "triton"] = Field(
        "auto", description="auto: CUDA when an NVIDIA driver and onnxruntime-gpu are there, else the engine "
        "(onnxruntime or OpenVINO) and precision measured fastest on this CPU, timed once and cached in the model "
        "folder's calibration.json (`streamdetect devices` shows it); cpu: onnxruntime on the CPU; tensorrt: "
        "onnxruntime's TensorRT provider (engines cached next to the model), CUDA and CPU as fallbacks; openvino: "
        "the audio encoder on Intel's OpenVINO runtime on the CPU (pip install 'streamdetect[openvino]'); triton: the "
        "audio encoder on a Triton Inference Server (see runtime.triton; the text encoder stays here)")
    precision: Literal["auto", "fp32", "int8", "int8_static", "fp16", "bf16"] = Field(
        "auto", description="auto: with device auto on a CPU the fastest measured of those the export verified "
        "(cosine >= 0.999 vs fp32); with device cpu int8, with openvino bf16 on a CPU with bf16 units, fp16 on a "
        "GPU, when verified, else fp32. int8 quantises activations per call (dynamic), int8_static with scales "
        "calibrated at export")
    intra_op_threads: int = Field(0, ge=0, le=256, description="0 lets onnxruntime choose")
    batch_size: int = Field(4, ge=1, le=1024, description="windows per encoder call when several are ready; "
                            "with tensorrt also the largest batch its engine is built for")
    frontend_threads: int = Field(0, ge=0, le=256, description="threads computing log-mel features; 0: one when "
                                  "the encoder runs on the CPU (it needs the cores), all cores but two on a GPU")
    triton: TritonConfig = Field(TritonConfig(), description="the server for runtime.device: triton")


class GateConfig(Strict):
    min_dbfs: float | None = Field(None, ge=-200.0, le=0.0, description="windows quieter than this skip the "
                                   "encoder and count as silence (none: every window is analysed)")
