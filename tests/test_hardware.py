"""What the bench reports about the machine: the CPU's flags and fp32 peak, and the FLOP of an exported graph."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.hardware import hardware_lines, hardware_report, peak_fraction
from streamdetect.export.flops import count_flops
from streamdetect.util.cpu import CpuInfo

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
cpu MHz\t\t: 2449.998
flags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni

processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni
"""


def test_an_avx2_only_cpu_is_read_as_such_and_its_peak_reckoned(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(EPYC)
    cpu = CpuInfo.read(info, tmp_path / "no-cpufreq")
    assert cpu.model == "AMD EPYC 7B13" and cpu.vector_extensions == ["avx2", "fma"] and not cpu.has_int8_dot
    assert cpu.max_mhz == 2449.998 and "current clock" in cpu.clock_source
    peak = cpu.fp32_peak()  # the figure for these cores: 2 FMA x 8 lanes x 2 FLOP x 2.45 GHz per core
    assert abs(peak.gflops - cpu.cores * 2 * 8 * 2 * 2.449998) < 1e-6
    assert f"{cpu.cores} cores x 2 FMA units (assumed) x 8 fp32 lanes x 2 FLOP x 2450 MHz" in peak.assumptions
    freq = tmp_path / "max_freq"
    freq.write_text("3500000\n")  # kHz, as cpufreq reports it
    avx512 = tmp_path / "avx512"
    avx512.write_text(EPYC.replace("avx2", "avx2 avx512f avx512_vnni amx_tile"))
    wide = CpuInfo.read(avx512, freq)
    assert wide.max_mhz == 3500.0 and wide.has_int8_dot and "16 fp32 lanes" in wide.fp32_peak().assumptions
    assert wide.vector_extensions == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"]
    assert wide.flags_digest != cpu.flags_digest and len(cpu.flags_digest) == 16
    this = CpuInfo.read()  # this machine: whatever it is, its flags are read
    assert this.cores >= 1 and set(this.vector_extensions) <= this.flags


def graph_with_known_flops(path: Path) -> int:
    """MatMul, Gemm and Conv of known sizes, and a MatMul whose shape no inference can know."""
    rng = np.random.default_rng(0)
    w = {"mm_w": rng.standard_normal((20, 30)), "gemm_w": rng.standard_normal((8, 5)),
         "conv_w": rng.standard_normal((6, 3, 3, 3))}
    nodes = [helper.make_node("MatMul", ["a", "mm_w"], ["a_out"], name="mm"),
             helper.make_node("Gemm", ["g", "gemm_w"], ["g_out"], name="gemm"),
             helper.make_node("Conv", ["x", "conv_w"], ["x_out"], name="conv"),
             helper.make_node("MatMul", ["u", "v"], ["u_out"], name="unknowable")]
    graph = helper.make_graph(
        nodes, "known",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 10, 20]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [4, 8]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16]),
         helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, "t", "k"]),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, "k", 7])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a_out", "g_out", "x_out", "u_out")],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return 2 * (10 * 30 * 20) + 2 * (4 * 5 * 8) + 2 * (6 * 14 * 14 * 3 * 3 * 3)


def test_flops_are_counted_from_the_graph_and_unknown_shapes_are_named(tmp_path):
    path = tmp_path / "known.onnx"
    expected = graph_with_known_flops(path)
    ort.InferenceSession(str(path))  # a valid graph
    flops = count_flops(path)
    assert flops.total == expected and flops.per_op == {"MatMul": 12000, "Gemm": 320, "Conv": 63504}
    assert flops.unknown == ["unknowable"]


def test_bench_hardware_report_on_the_tiny_model(tiny_model):
    flops = count_flops(tiny_model / "audio_encoder.onnx")
    assert flops.unknown == [] and flops.per_op["MatMul"] > flops.per_op.get("Conv", 0) > 0
    report = hardware_report(tiny_model)
    assert report["gflop_per_window"] == round(flops.total / 1e9, 4) and report["flop_by_op"] == flops.per_op
    cpu = CpuInfo.read()
    assert report["fp32_peak_gflops"] == round(cpu.fp32_peak().gflops, 1) and report["cores"] == cpu.cores
    # a stage at 10 ms per window: FLOP / 10 ms against the peak
    assert peak_fraction(report, 10.0) == round(report["gflop_per_window"] / 0.010 / report["fp32_peak_gflops"], 4)
    lines = "\n".join(hardware_lines(report))
    assert f"CPU: {cpu.model}" in lines and "onnxruntime " in lines and "GFLOP per window" in lines
