"""The machine a bench ran on, and how much of its fp32 peak each stage used (for the benches in bench/).

A speed figure means little without the CPU it came from: the same export runs 2x apart on an AVX2-only EPYC
and an AMX Xeon. So every bench prints the CPU model, its vector extensions, the engine versions and, per stage,
FLOP per window / time against cores x FMA units x lanes x 2 x clock, with the assumptions spelled out.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from streamdetect.export.flops import count_flops
from streamdetect.util.cpu import CpuInfo


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def hardware_report(model_dir: Path, encoder_file: str = "audio_encoder.onnx") -> dict:
    cpu = CpuInfo.read()
    peak = cpu.fp32_peak()
    flops = count_flops(model_dir / encoder_file)
    engines = {"onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
               "openvino": _version("openvino"), "numpy": _version("numpy")}
    return {"cpu": cpu.model, "cores": cpu.cores, "vector_extensions": cpu.vector_extensions,
            "int8_dot_products": cpu.has_int8_dot, "max_mhz": cpu.max_mhz, "fp32_peak_gflops": round(peak.gflops, 1),
            "peak_assumptions": peak.assumptions, "engines": engines,
            "gflop_per_window": round(flops.total / 1e9, 4), "flop_by_op": flops.per_op,
            "flop_ops_without_shapes": len(flops.unknown)}


def peak_fraction(hardware: dict, ms_per_window: float) -> float | None:
    """The share of the fp32 peak a stage reached: its FLOP per window over its time per window."""
    if not hardware["fp32_peak_gflops"] or ms_per_window <= 0:
        return None
    return round(hardware["gflop_per_window"] / (ms_per_window / 1000) / hardware["fp32_peak_gflops"], 4)


def hardware_lines(hardware: dict) -> list[str]:
    engines = ", ".join(f"{name} {version}" for name, version in hardware["engines"].items() if version)
    missing = hardware["flop_ops_without_shapes"]
    return [f"CPU: {hardware['cpu']}, {hardware['cores']} cores, {' '.join(hardware['vector_extensions']) or '-'}"
            f" ({'VNNI/AMX int8 dot products' if hardware['int8_dot_products'] else 'no VNNI: int8 sums saturate'})",
            f"engines: {engines}",
            f"fp32 peak {hardware['fp32_peak_gflops']} GFLOP/s = {hardware['peak_assumptions']}",
            f"audio encoder: {hardware['gflop_per_window']} GFLOP per window (MatMul, Gemm, Conv counted from the "
            f"ONNX graph at batch 1" + (f"; {missing} ops without inferred shapes left out)" if missing else ")")
            + "; '% peak' = that / encoder time per window"]
