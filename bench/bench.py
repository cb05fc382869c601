"""Speed benchmark, all in one process on the same generated audio, ratios against a baseline measured in the
same run:

  (a) the tutorial loop: ``ClapProcessor`` + ``ClapModel.get_audio_features``, one 3 s window at a time;
  (b) streamdetect's front end + ONNX encoder at each precision it offers (and fp32 in batches);
  (c) the whole pipeline (paced live sources -> windows -> batching engine -> events) on N streams, to find the
      largest N that stays real time at a 1 s hop; plus start-up time to the first window and the peak RSS of
      a ``streamdetect run`` subprocess.

Without real weights it builds the full-size architecture with random weights (``streamdetect export --random-weights``),
which costs the same compute as laion/clap-htsat-unfused; its scores mean nothing.

    python -m bench.bench [--checkpoint DIR --model DIR] [--json bench.json] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streamdetect.export.precisions import cosine_rows

SR = 48_000


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "windows_per_s": round(1000.0 / float(np.mean(a)), 2)}


def bench_audio(n: int, seed: int = 0) -> list[np.ndarray]:
    """3 s windows: noise, tones, chirps and bursts, different in every window."""
    rng = np.random.default_rng(seed)
    t = np.arange(3 * SR) / SR
    out = []
    for i in range(n):
        f = 200 + 300 * i
        x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (f + 500 * t) * t) * (rng.random() > 0.3)
        out.append(x.astype(np.float32))
    return out


def baseline(checkpoint: Path, windows: list[np.ndarray]) -> tuple[dict, np.ndarray]:
    import torch
    from transformers import ClapModel, ClapProcessor

    processor = ClapProcessor.from_pretrained(checkpoint)
    model = ClapModel.from_pretrained(checkpoint).eval()
    ms, fe_ms, embeddings = [], [], []
    with torch.inference_mode():
        for i, w in enumerate(windows):
            t0 = time.perf_counter()
            inputs = processor(audio=w, sampling_rate=SR, return_tensors="pt")
            t1 = time.perf_counter()
            emb = model.get_audio_features(**inputs).pooler_output
            if i:  # the first call warms up
                ms.append(1000 * (time.perf_counter() - t0))
                fe_ms.append(1000 * (t1 - t0))
            embeddings.append(emb.numpy()[0])
    result = percentiles(ms)
    result["feature_extraction_p50_ms"] = round(float(np.median(fe_ms)), 2)
    return result, np.stack(embeddings)


def streamdetect_stage(model_dir: Path, windows: list[np.ndarray], precision: str,
                       batch: int, device: str = "cpu") -> tuple[dict, np.ndarray]:
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.model.manifest import ModelBundle

    bundle = ModelBundle.load(model_dir)
    frontend = LogMelFrontend(bundle.frontend_params)
    encoder = open_audio_encoder(bundle, RuntimeOptions(device=device, precision=precision))
    encoder(frontend(windows[:batch]))  # warm-up at this batch size
    ms, fe_ms, embeddings = [], [], []
    for i in range(0, len(windows) - batch + 1, batch):
        chunk = windows[i : i + batch]
        t0 = time.perf_counter()
        feats = frontend(chunk)
        t1 = time.perf_counter()
        embeddings.append(encoder(feats))
        ms += [1000 * (time.perf_counter() - t0) / batch] * batch
        fe_ms.append(1000 * (t1 - t0) / batch)
    result = percentiles(ms)
    result["front_end_p50_ms"] = round(float(np.median(fe_ms)), 2)
    result["encoder_p50_ms"] = round(float(np.median(np.asarray(ms[::batch]) - np.asarray(fe_ms))), 2)
    result["encoder_file"] = encoder.file
    return result, np.concatenate(embeddings)


def batch_sweep(model_dir: Path, windows: list[np.ndarray], precision: str, device: str,
                sizes: list[int], repeats: int = 5) -> list[dict]:
    """Encoder throughput per batch size (features computed once, so this is the encoder alone): where a
    GPU stops gaining from larger batches, and how many 1 s-hop streams one encoder call per second serves."""
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.model.manifest import ModelBundle

    bundle = ModelBundle.load(model_dir)
    encoder = open_audio_encoder(bundle, RuntimeOptions(device=device, precision=precision, max_batch=max(sizes)))
    feats = LogMelFrontend(bundle.frontend_params)(windows)
    out = []
    for size in sizes:
        batch = np.ascontiguousarray(np.resize(feats, (size, *feats.shape[1:])))
        encoder(batch)  # warm-up: allocations (and TensorRT engines) for this shape
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            encoder(batch)
            times.append(time.perf_counter() - t0)
        median = float(np.median(times))
        out.append({"batch": size, "ms_per_call": round(1000 * median, 2),
                    "windows_per_s": round(size / median, 1), "providers": encoder.describe()})
        print(f"  {precision} batch {size:4d}: {1000 * median:8.2f} ms/call, {size / median:9.1f} windows/s",
              flush=True)
    return out


def frontend_throughput(model_dir: Path, windows: list[np.ndarray], thread_counts: list[int]) -> dict:
    """Log-mel windows per second with the front end on 1..N threads: on a GPU machine the front end, not the
    encoder, can be what limits the streams (runtime.frontend_threads)."""
    from streamdetect.embed.frontend import ParallelFrontend
    from streamdetect.model.manifest import ModelBundle

    params = ModelBundle.load(model_dir).frontend_params
    batch = (windows * (64 // len(windows) + 1))[:64]
    out = {}
    for threads in thread_counts:
        frontend = ParallelFrontend(params, threads)
        frontend(batch)  # warm-up: each thread's buffers
        t0 = time.perf_counter()
        for _ in range(3):
            frontend(batch)
        out[str(threads)] = round(3 * len(batch) / (time.perf_counter() - t0), 1)
    return out


def streams_trial(model_dir: Path, n_streams: int, seconds: float, precision: str, device: str = "cpu",
                  runtime: dict | None = None) -> dict:
    """N paced live streams for ``seconds``: real time if nothing is dropped and the backlog does not grow;
    ``runtime`` adds to the config's runtime section (``triton`` for bench/triton.py)."""
    from streamdetect.config import parse_config
    from streamdetect.daemon.service import DetectorService
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.sinks.base import SinkSet
    from streamdetect.sources.base import AudioSource

    class Paced(AudioSource):
        live = True

        def __init__(self, audio: np.ndarray, name: str):
            super().__init__(AudioSource.Options(), SR, name)
            self.audio = audio

        def blocks(self, stop):
            block = SR // 10
            start = time.monotonic()
            for i in range(0, self.audio.size, block):
                if stop.is_set():
                    return
                time.sleep(max(0.0, start + i / SR - time.monotonic()))
                yield self.audio[i : i + block]

    batch = min(max(1, n_streams), 1024)  # one batch per tick up to the config's limit (GPU trials reach 2048)
    config = parse_config({"events": [{"label": "x", "prompts": ["birdsong"], "threshold": 0.3}],
                           "runtime": {"device": device, "precision": precision, "batch_size": batch,
                                       **(runtime or {})}})
    service = DetectorService(config, ModelBundle.load(model_dir), sinks=SinkSet([]), max_wait_s=0.05,
                              backlog_warn_s=3600)
    engine = service.engine
    rng = np.random.default_rng(n_streams)
    sources = [Paced((0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32), f"s{i}")
               for i in range(n_streams)]
    backlog: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            backlog.append(engine.stats.backlog)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with service:
        summaries, stats = service.run(sources, threading.Event())
    done.set()
    expected = n_streams * (int(seconds) - 2)
    late = backlog[len(backlog) // 2 :] or [0]
    realtime = (stats.windows >= expected and sum(s.dropped_windows for s in summaries) == 0
                and max(late) <= 2 * n_streams and stats.latency_ms(99) < 1000)
    return {"streams": n_streams, "windows": stats.windows, "batches": stats.batches,
            "max_backlog": stats.max_backlog, "late_backlog_max": max(late),
            "latency_p50_ms": round(stats.latency_ms(50), 1), "latency_p99_ms": round(stats.latency_ms(99), 1),
            "realtime": bool(realtime)}


def run_subprocess_metrics(model_dir: Path, device: str = "auto") -> dict:
    """Start-up to first window and peak RSS of a real `streamdetect run` on a 60 s file."""
    import soundfile as sf
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        sf.write(wav, np.concatenate(bench_audio(20)), SR)
        cfg = Path(tmp) / "cfg.yaml"
        cfg.write_text(yaml.safe_dump({"model": str(model_dir), "runtime": {"device": device},
                                       "events": [{"label": "x", "prompts": ["birdsong"], "threshold": -1.0}]}))
        # `prompts` fills the prompt cache and a first run the bytecode cache, as a restarted daemon has them (an
        # installed package has its .pyc; under PYTHONDONTWRITEBYTECODE every start would compile ~90 modules)
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "streamdetect", "prompts", "--config", str(cfg)], check=True,
                       capture_output=True, env=env)
        command = [sys.executable, "-m", "streamdetect", "run", "--config", str(cfg), "--input", str(wav)]
        subprocess.run(command, check=True, capture_output=True, env=env)
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = proc.stdout.readline()
        startup = time.perf_counter() - t0
        proc.stdout.read()
        runs_on = [m[1] for line in proc.stderr.read().splitlines()
                   if (m := re.search(r"streamdetect\.embed\.encoder\.\w+: (audio_encoder\S* runs on .*)", line))]
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the prompts run's
        proc.returncode = os.waitstatus_to_exitcode(status)
        total = time.perf_counter() - t0
    rss_mb = usage.ru_maxrss / 1024
    return {"device": device, "encoder": runs_on[0] if runs_on else "?",
            "startup_to_first_window_s": round(startup, 3), "first_record_seen": bool(first.strip()),
            "run_60s_file_wall_s": round(total, 2), "peak_rss_mb": round(rss_mb, 1),
            "second_start": "prompts and bytecode cached by a first run"}


def percent(fraction: float | None) -> str:
    return "?" if fraction is None else f"{100 * fraction:.1f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="HF CLAP checkpoint directory (default: random full size)")
    parser.add_argument("--model", type=Path, help="its exported model directory")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clap-random"), help="where the random model goes")
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--stream-seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="fewer windows and stream trials")
    parser.add_argument("--json", type=Path, default=Path("bench.json"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                        help="where streamdetect's encoder runs (the tutorial baseline stays on the CPU)")
    parser.add_argument("--batch-sweep", default="", help="also time the encoder alone at these batch sizes, "
                        "e.g. 1,8,64,512 (GPU: where batching stops paying)")
    args = parser.parse_args()
    if args.quick:
        args.windows, args.stream_seconds = 8, 4.0

    results: dict = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                                 "cores": os.cpu_count()},
                     "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.checkpoint is None:
        from streamdetect.export.random_weights import random_full_size

        args.checkpoint, args.model = random_full_size(args.work)
        results["weights"] = "random (full-size architecture)"
    from bench.hardware import hardware_lines, hardware_report, peak_fraction

    results["machine"].update(hardware_report(args.model))
    print("\n".join(hardware_lines(results["machine"])), flush=True)
    from streamdetect.embed.encoder import runtime_choice
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.model.manifest import ModelBundle

    if args.device == "cpu":  # what `auto` runs here, timed now unless cached: start-up below is then a restart's
        chosen = runtime_choice(ModelBundle.load(args.model), RuntimeOptions())
        results["auto"] = {"device": chosen.device, "precision": chosen.precision}
    # the default (device auto) and onnxruntime on the CPU, which auto picks where OpenVINO bf16 cannot run
    results["run"] = [run_subprocess_metrics(args.model, device)
                      for device in (("auto", "cpu") if args.device == "cpu" else (args.device,))]

    windows = bench_audio(args.windows)
    # streamdetect first: torch's OpenMP threads keep spinning after the baseline and would slow what follows
    stages, embeddings = {}, {}
    # streamdetect's stages run as `streamdetect` runs them: numpy's BLAS on one thread (limit_blas_threads);
    # the tutorial baseline below runs with the library defaults, as the tutorial does.
    from threadpoolctl import threadpool_limits

    from streamdetect.embed.encoder.device import limit_blas_threads

    blas = threadpool_limits(None)  # remembers the defaults to restore
    limit_blas_threads()
    plan = [("fp32", "fp32", 1, args.device), ("fp32 batch 4", "fp32", 4, args.device), ("int8", "int8", 1, args.device),
            ("int8_static", "int8_static", 1, args.device),
            ("fp16", "fp16", 1, args.device)]
    if args.device == "cpu" and importlib.util.find_spec("openvino") is not None:
        plan += [("openvino fp32", "fp32", 1, "openvino"), ("openvino bf16", "bf16", 1, "openvino")]
    for name, precision, batch, device in plan:
        try:
            stages[name], embeddings[name] = streamdetect_stage(args.model, windows, precision, batch, device)
        except Exception as e:  # noqa: BLE001 - a refused precision is a result, not a crash
            stages[name] = {"error": str(e)}
    cores = os.cpu_count() or 1
    results["frontend_windows_per_s"] = frontend_throughput(args.model, windows, sorted({1, max(1, cores - 2), cores}))
    if args.batch_sweep:
        sizes = [int(x) for x in args.batch_sweep.split(",")]
        results["batch_sweep"] = {p: batch_sweep(args.model, windows, p, args.device, sizes)
                                  for p in ("fp32", "fp16") if "error" not in stages[p]}
    trials, best = [], 0
    # the streams run at what 'auto' picks: on a CPU the engine and precision measured fastest; fp16 on a GPU
    if args.device == "cpu":
        device, precision = chosen.device, chosen.precision
    else:
        device, precision = args.device, "fp16" if "error" not in stages["fp16"] else "fp32"
    counts = ((4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64) if args.device == "cpu"
              else (32, 64, 128, 256, 512, 1024, 2048))
    for n in counts if not args.quick else (2, 4):
        trial = streams_trial(args.model, n, args.stream_seconds, precision, device)
        trials.append(trial)
        print(f"  {n:3d} streams: realtime={trial['realtime']} latency p99 {trial['latency_p99_ms']} ms, "
              f"late backlog {trial['late_backlog_max']}", flush=True)
        if not trial["realtime"]:
            break
        best = n
    results["streams"] = {"device": device, "precision": precision, "trials": trials, "max_realtime_streams": best}

    blas.restore_original_limits()
    base, reference = baseline(args.checkpoint, windows)
    results["baseline"] = base
    base["fp32_peak_fraction"] = peak_fraction(results["machine"], base["p50_ms"] - base["feature_extraction_p50_ms"])
    for name, emb in embeddings.items():
        stages[name]["fp32_peak_fraction"] = peak_fraction(results["machine"], stages[name]["encoder_p50_ms"])
        stages[name]["speedup_vs_baseline"] = round(base["p50_ms"] / stages[name]["p50_ms"], 2)
        stages[name]["cosine_min_vs_fp32_reference"] = round(float(cosine_rows(emb, reference[: len(emb)]).min()), 6)
    results["stages"] = stages

    print(f"\nstreamdetect bench, {results['date']}, {results['machine']['cores']} cores, "
          f"{results.get('weights', 'given weights')}")
    print("\n".join(hardware_lines(results["machine"])))
    print(f"{'stage':28s} {'p50 ms':>8s} {'p99 ms':>8s} {'win/s':>7s} {'speed-up':>9s} {'cos vs fp32':>12s} "
          f"{'% peak':>7s}")
    print(f"{'tutorial loop (HF + torch)':28s} {base['p50_ms']:8.1f} {base['p99_ms']:8.1f} "
          f"{base['windows_per_s']:7.1f} {1.0:9.2f} {1.0:12.6f} {percent(base['fp32_peak_fraction']):>7s}")
    for name, r in stages.items():
        if "error" in r:
            print(f"{'streamdetect ' + name:28s} refused: {r['error']}")
            continue
        print(f"{'streamdetect ' + name:28s} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['windows_per_s']:7.1f} "
              f"{r['speedup_vs_baseline']:9.2f} {r['cosine_min_vs_fp32_reference']:12.6f} "
              f"{percent(r['fp32_peak_fraction']):>7s}")
    print(f"front end: HF feature extraction {base['feature_extraction_p50_ms']} ms vs streamdetect "
          f"{stages['fp32']['front_end_p50_ms']} ms per window "
          f"({base['feature_extraction_p50_ms'] / stages['fp32']['front_end_p50_ms']:.1f}x)")
    print("front end throughput: " + ", ".join(f"{n} thread(s) {rate:.0f} windows/s"
                                               for n, rate in results["frontend_windows_per_s"].items()))
    print(f"real-time streams at 1 s hop ({device} {precision}): {best}")
    for run in results["run"]:
        print(f"streamdetect run, device {run['device']} ({run['encoder']}): start-up to first window "
              f"{run['startup_to_first_window_s']} s, peak RSS {run['peak_rss_mb']} MB")
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
