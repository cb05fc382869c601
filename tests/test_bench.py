"""The speed benchmark, run quick on the tiny model: every stage it promises is measured and reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamdetect.embed.encoder.calibration import CALIBRATION_NAME
from streamdetect.export.flops import count_flops
from streamdetect.util.cpu import CpuInfo

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_quick_bench_reports_every_stage_against_one_baseline(tiny_checkpoint, tiny_model, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench.bench", "--checkpoint", str(tiny_checkpoint),
                             "--model", str(tiny_model), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # the bench package, run from elsewhere
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    base = report["baseline"]["p50_ms"]
    assert base > 0 and report["baseline"]["feature_extraction_p50_ms"] > 0
    stages = report["stages"]
    assert {"fp32", "fp32 batch 4", "int8", "int8_static", "fp16", "openvino fp32", "openvino bf16"} <= set(stages)
    # the machine it ran on, and each stage's share of its fp32 peak from the graph's FLOP and the stage's time
    machine, cpu = report["machine"], CpuInfo.read()
    assert (machine["cpu"], machine["cores"], machine["vector_extensions"]) == (cpu.model, cpu.cores,
                                                                                cpu.vector_extensions)
    assert machine["gflop_per_window"] == round(count_flops(tiny_model / "audio_encoder.onnx").total / 1e9, 4)
    assert machine["engines"]["onnxruntime"] and machine["engines"]["numpy"]
    for line in (f"CPU: {cpu.model}, {cpu.cores} cores", f"fp32 peak {machine['fp32_peak_gflops']} GFLOP/s = ",
                 "FMA units (assumed)", "% peak"):
        assert line in result.stdout, line
    # what the export decided on this CPU (a precision is shipped or refused by its parity with fp32)
    decided = json.loads((tiny_model / "manifest.json").read_text())["precisions"]
    for name, stage in stages.items():
        precision = name.split()[1] if name.startswith("openvino ") else name.split()[0]
        info = decided[precision]
        if info["status"] == "refused":  # a refused precision is a result, reported with the export's figure
            assert set(stage) == {"error"}, name
            assert (f"no {precision} encoder: it was refused at export (min cosine vs fp32 "
                    f"{info['cosine_min_vs_fp32']:.5f} < {info['required']})") in stage["error"], name
            continue
        assert info["status"] == "shipped" and "error" not in stage, name
        assert stage["speedup_vs_baseline"] == round(base / stage["p50_ms"], 2)
        assert 0 < stage["encoder_p50_ms"] <= stage["p50_ms"]
        assert stage["fp32_peak_fraction"] == round(machine["gflop_per_window"] / (stage["encoder_p50_ms"] / 1000)
                                                    / machine["fp32_peak_gflops"], 4)
        # every precision the export shipped is within its bound of the tutorial loop's fp32 embeddings
        assert stage["cosine_min_vs_fp32_reference"] >= (0.9999 if precision == "fp32" else info["required"]), name
    if decided["bf16"]["status"] == "shipped":
        assert stages["openvino bf16"]["encoder_file"] == "audio_encoder.openvino.xml"
    int8 = decided["int8"]["status"] == "shipped"
    # `streamdetect run` is measured at the default and on onnxruntime, each naming what ran
    runs = {run["device"]: run for run in report["run"]}
    assert set(runs) == {"auto", "cpu"} and all(r["first_record_seen"] and r["peak_rss_mb"] > 0 for r in runs.values())
    cpu_file = "audio_encoder.int8.onnx" if int8 else "audio_encoder.onnx"
    assert f"{cpu_file} runs on CPUExecutionProvider" in runs["cpu"]["encoder"]
    streams = report["streams"]  # at what `auto` measured fastest on this machine for this export
    fastest = json.loads((tiny_model / CALIBRATION_NAME).read_text())["fastest"]
    engine = {"openvino": "OpenVINO", "cpu": "onnxruntime"}[streams["device"]]
    assert f"{engine} {streams['precision']}" == fastest
    assert report["auto"] == {"device": streams["device"], "precision": streams["precision"]}
    trials = streams["trials"]
    assert [t["streams"] for t in trials][:1] == [2] and all(t["windows"] > 0 for t in trials)
    kept = 0
    for trial in trials:  # the count is the last trial of the unbroken run of real-time ones
        if not trial["realtime"]:
            break
        kept = trial["streams"]
    assert streams["max_realtime_streams"] == kept
    assert set(report["frontend_windows_per_s"]) >= {"1"} and all(v > 0 for v in report["frontend_windows_per_s"].values())
    assert "tutorial loop (HF + torch)" in result.stdout and "real-time streams at 1 s hop" in result.stdout
