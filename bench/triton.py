"""The audio encoder through a Triton server against the local encoder, measured in one run on this machine:

  - latency per window: one window per request (station -> server -> station) against the same window through
    the local onnxruntime encoder, p50/p99, and what the server adds;
  - bytes per second per stream: what a station sends (log-mel features, binary tensors) and receives, against
    what sending the window's audio would cost;
  - real-time streams: the largest N paced live streams that stay real time with the encoder on the server
    against the local encoder (bench/bench.py's trial), as a ratio.

The server is the tritonserver bundled in the nvidia-pytriton wheel (scripts/triton_local.py: the Python backend
running the exported fp32 ONNX through onnxruntime on the CPU, with Triton's dynamic batcher) on this same
machine, so both sides share its cores: the streams ratio says what the protocol and batcher cost, not what a
GPU server would give. Both sides run fp32, so the comparison is like for like. Without --model it uses the
full-size random-weight CLAP of ``streamdetect export --random-weights`` (same compute as laion/clap-htsat-unfused).

    python -m bench.triton [--model DIR] [--json bench_triton.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from streamdetect.util.cpu import CpuInfo

SR = 48_000


def stats_ms(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def latency(model_dir: Path, url: str, windows: int) -> dict:
    """Per-window latency, remote against local, on the same features; and the bytes of each request."""
    from bench.bench import bench_audio
    from streamdetect.config import TritonConfig
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.encoder.kserve import KServeClient
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.model.manifest import ModelBundle

    bundle = ModelBundle.load(model_dir)
    features = LogMelFrontend(bundle.frontend_params)(bench_audio(windows))
    local = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp32"))
    remote = open_audio_encoder(bundle, RuntimeOptions(device="triton", triton=TritonConfig(url=url, timeout_s=60)))
    timings: dict[str, list[float]] = {"local": [], "triton": []}
    cosines = []
    for i in range(-1, windows):  # the first round warms both up
        one = features[max(i, 0) : max(i, 0) + 1]
        t0 = time.perf_counter()
        a = local(one)
        t1 = time.perf_counter()
        b = remote(one)
        t2 = time.perf_counter()
        if i >= 0:
            timings["local"].append(1000 * (t1 - t0))
            timings["triton"].append(1000 * (t2 - t1))
            cosines.append(float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b))))
    added = [r - loc for r, loc in zip(timings["triton"], timings["local"], strict=True)]
    client = KServeClient(url, 60)
    sent = client.infer("streamdetect_audio", "input_features", "audio_embedding", features[:1])
    client.close()
    return {"windows": windows, "local": stats_ms(timings["local"]), "triton": stats_ms(timings["triton"]),
            "added": stats_ms(added), "cosine_min_triton_vs_local": round(min(cosines), 6),
            "request_bytes_per_window": sent.sent_bytes, "response_bytes_per_window": sent.received_bytes}


def bytes_per_stream(per_window: dict, hop_s: float = 1.0, window_s: float = 3.0) -> dict:
    """Bytes per second per stream at one window per hop: features as sent, against the alternatives."""
    return {"features_fp32_sent": round(per_window["request_bytes_per_window"] / hop_s),
            "embeddings_received": round(per_window["response_bytes_per_window"] / hop_s),
            "audio_window_fp32": round(window_s * SR * 4 / hop_s),
            "audio_window_int16": round(window_s * SR * 2 / hop_s),
            "audio_hop_only_int16 (a stateful server)": round(SR * 2)}


def max_streams(model_dir: Path, seconds: float, counts: tuple[int, ...], runtime: dict | None,
                device: str) -> dict:
    from bench.bench import streams_trial

    trials, best = [], 0
    for n in counts:
        trial = streams_trial(model_dir, n, seconds, "fp32", device, runtime)
        trials.append(trial)
        print(f"  {device:6s} {n:3d} streams: realtime={trial['realtime']} p99 {trial['latency_p99_ms']} ms",
              flush=True)
        if not trial["realtime"]:
            break
        best = n
    return {"max_realtime_streams": best, "trials": trials}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="exported model directory (default: random full size)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clap-random"), help="where the random model goes")
    parser.add_argument("--windows", type=int, default=30, help="windows timed one by one")
    parser.add_argument("--stream-seconds", type=float, default=12.0)
    parser.add_argument("--counts", default="1,2,3,4,5,6,8,10,12,16", help="stream counts tried, in order")
    parser.add_argument("--quick", action="store_true", help="fewer windows and stream counts")
    parser.add_argument("--json", type=Path, default=Path("bench_triton.json"))
    args = parser.parse_args()
    if args.quick:
        args.windows, args.stream_seconds, args.counts = 8, 8.0, "1,2"
    if args.model is None:
        from streamdetect.export.random_weights import random_full_size

        _, args.model = random_full_size(args.work)
    from scripts.triton_local import TritonServer
    from streamdetect.embed.encoder.device import limit_blas_threads
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.model.triton_repo import TritonRepoOptions, write_triton_repo

    limit_blas_threads()
    counts = tuple(int(n) for n in args.counts.split(","))
    results: dict = {"machine": {"cpu": CpuInfo.read().model, "cores": os.cpu_count(), "python": platform.python_version()},
                     "date": time.strftime("%Y-%m-%d %H:%M"), "model": str(args.model),
                     "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0 wheel), Python backend + onnxruntime, "
                               "CPU, fp32, dynamic batcher, on this same machine"}
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as work:
        repo = Path(work) / "repo"
        write_triton_repo(ModelBundle.load(args.model), repo, TritonRepoOptions(
            kind="cpu", backend="python", max_batch_size=64, preferred_batch_sizes=(4, 8, 16), max_queue_delay_us=5000))
        server = TritonServer(repo, Path(work)).start(timeout_s=300)
        try:
            print(f"server {server.url} (pid {server.process.pid})", flush=True)
            results["latency"] = latency(args.model, server.url, args.windows)
            results["bytes_per_s_per_stream"] = bytes_per_stream(results["latency"])
            local = max_streams(args.model, args.stream_seconds, counts, None, "cpu")
            remote = max_streams(args.model, args.stream_seconds, counts,
                                 {"triton": {"url": server.url, "timeout_s": 30}}, "triton")
            stats = server.statistics("streamdetect_audio")
        finally:
            server.stop()
    results["streams"] = {"local": local, "triton": remote, "server_statistics": stats,
                          "ratio_triton_vs_local": round(remote["max_realtime_streams"]
                                                         / max(1, local["max_realtime_streams"]), 2)}
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    lat = results["latency"]
    print(f"\nbench_triton {results['date']} on {results['machine']['cpu']} ({results['machine']['cores']} cores)")
    print(f"  per window: local p50 {lat['local']['p50_ms']} ms p99 {lat['local']['p99_ms']} ms; through Triton "
          f"p50 {lat['triton']['p50_ms']} ms p99 {lat['triton']['p99_ms']} ms; added p50 {lat['added']['p50_ms']} ms "
          f"p99 {lat['added']['p99_ms']} ms; cosine min {lat['cosine_min_triton_vs_local']}")
    print(f"  bytes/s per stream: {results['bytes_per_s_per_stream']}")
    print(f"  real-time streams: local {local['max_realtime_streams']}, Triton {remote['max_realtime_streams']} "
          f"(ratio {results['streams']['ratio_triton_vs_local']}); server executions {stats['execution_count']} "
          f"for {stats['inference_count']} windows")
    print(f"  written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
