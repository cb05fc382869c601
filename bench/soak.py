"""Soak test: push a generated stream faster than real time through the daemon's own pipeline for the
equivalent of many hours of audio, sampling RSS and open file descriptors, and check that nothing is lost.

The pipeline is the one ``streamdetect run`` builds (``DetectorService``: config -> sinks, metrics, detector,
batching engine), with real jsonl, sqlite and webhook sinks (the webhook posts to a
receiver on loopback). Only the source is synthetic: noise with a 3 kHz tone for 5 s every 30 s, generated
block by block, so any number of hours costs no disk. The event threshold is set between the model's
scores for a noise window and a tone window, so events start and end all the time and every sink works.

Reports the RSS growth per simulated day (least-squares slopes against audio time: after a warm-up of the first
10 %, and separately for the first and the second half of what follows the warm-up), glibc's heap next to it
(in use by C code, and free inside the heap: growth there is fragmentation, not a leak), the open file
descriptors at the start and the end, dropped windows, and lost records (each sink's count against the
detector's). The memory criterion: after warm-up RSS grows less than 2 MB per simulated day, and the second
half is no steeper than the first (0.5 MB/day allowed for noise); ``--check-memory`` makes the exit code
include it (without it, the exit code says only that nothing was dropped or lost, as before).

    python -m bench.soak --model models/clap-htsat-unfused --hours 24 [--max-wall-s 1800] [--json soak.json]
                         [--plot docs/images/soak-rss.png] [--check-memory]

With ``--max-wall-s`` the run stops early and the figures cover the audio that was analysed.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from streamdetect.util.cpu import CpuInfo

SR = 48_000
TONE_EVERY_S, TONE_LEN_S = 30, 5


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_split_mb() -> tuple[float, float]:
    """(anonymous, file-backed) resident MB: heap and stacks against mapped model files and libraries."""
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:")):
                found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found.get("RssAnon", float("nan")), found.get("RssFile", float("nan"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def synthetic_block(index: int, block_s: int = 1) -> np.ndarray:
    """Second ``index`` of the stream: noise, plus the tone during the first TONE_LEN_S of every period."""
    rng = np.random.default_rng(index)
    t = (np.arange(block_s * SR) / SR).astype(np.float32)
    x = 0.05 * rng.standard_normal(t.size).astype(np.float32)
    if index % TONE_EVERY_S < TONE_LEN_S:
        x += 0.5 * np.sin(2 * np.pi * 3000 * t).astype(np.float32)
    return x


def make_source_class():
    from streamdetect.sources.base import AudioSource

    class SyntheticSource(AudioSource):
        """A finite stream of generated audio, delivered as fast as the engine takes it."""

        live = False

        def __init__(self, seconds: int, stop_at: float):
            super().__init__(AudioSource.Options(), SR, "soak")
            self.seconds, self.stop_at = seconds, stop_at

        def blocks(self, stop: threading.Event) -> Iterator[np.ndarray]:
            for i in range(self.seconds):
                if stop.is_set() or time.monotonic() > self.stop_at:
                    return
                yield synthetic_block(i)

    return SyntheticSource


class Receiver:
    """A webhook receiver on loopback that counts the records it is sent."""

    def __init__(self):
        self.count = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.count += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def midway_threshold(config, bundle) -> float:
    """A threshold between the model's score for a noise window and for a tone window (any weights)."""
    from streamdetect.daemon.build import build_detector
    from streamdetect.pipeline.windows import Window
    from streamdetect.sinks.base import SinkSet

    detector = build_detector(config, bundle, SinkSet([]))
    noise = np.concatenate([synthetic_block(i) for i in (10, 11, 12)])
    tone = np.concatenate([synthetic_block(i) for i in (0, 1, 2)])
    scores = detector.scores([Window(0, 0, noise, SR), Window(1, 0, tone, SR)]).event[:, 0]
    if abs(scores[1] - scores[0]) < 1e-4:
        raise SystemExit(f"soak: the model scores noise and tone alike ({scores}); cannot make events fire")
    return float((scores[0] + scores[1]) / 2)


WARMUP = 0.1  # share of the run before the slopes are fitted (model load, first allocations, sqlite cache)
MAX_GROWTH_MB_PER_DAY = 2.0
HALF_NOISE_MB_PER_DAY = 0.5


def fit_line(samples: list[tuple], warmup: float = WARMUP, until: float = 1.0,
             column: int = 1) -> tuple[float, float]:
    """Least-squares line of ``column`` (1: RSS) against audio time in days, over the share ``warmup`` ..
    ``until`` of the audio analysed: (MB per simulated day, MB at audio time 0); NaNs with under 3 samples."""
    end = samples[-1][0]
    pts = [(s[0], s[column]) for s in samples if warmup * end <= s[0] <= until * end and s[column] == s[column]]
    if len(pts) < 3:
        return float("nan"), float("nan")
    audio_s, mb = np.array(pts).T
    slope, offset = np.polyfit(audio_s / 86_400, mb, 1)
    return float(slope), float(offset)


def fit_slope_mb_per_day(samples: list[tuple], warmup: float = WARMUP, until: float = 1.0, column: int = 1) -> float:
    return fit_line(samples, warmup, until, column)[0]


def memory_criterion(samples: list[tuple]) -> dict:
    mid = WARMUP + (1 - WARMUP) / 2
    overall, first, second = (fit_slope_mb_per_day(samples), fit_slope_mb_per_day(samples, WARMUP, mid),
                              fit_slope_mb_per_day(samples, mid, 1.0))
    holds = bool(overall < MAX_GROWTH_MB_PER_DAY and second <= max(first, 0.0) + HALF_NOISE_MB_PER_DAY)
    return {"rule": f"after {WARMUP:.0%} warm-up: RSS slope < {MAX_GROWTH_MB_PER_DAY:g} MB/day and second half <= "
                    f"max(first half, 0) + {HALF_NOISE_MB_PER_DAY:g} MB/day",
            "after_warmup_mb_per_day": round(overall, 2), "first_half_mb_per_day": round(first, 2),
            "second_half_mb_per_day": round(second, 2), "holds": holds}


def plot(report: dict, samples: list[tuple], path: Path) -> None:
    """RSS on its own scale above (a growth of 1 MB a day is invisible next to 300 MB), with the line fitted
    after the warm-up; the C heap below, in use and free, to tell a leak from fragmentation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.array([s[0] for s in samples]) / 3600
    rss = np.array([s[1] for s in samples])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), dpi=110, sharex=True, height_ratios=(3, 2))
    top.plot(hours, rss, label="RSS", color="tab:blue", lw=1)
    slope, offset = fit_line(samples)  # the line the report's slope comes from
    if slope == slope:
        fitted = hours >= WARMUP * hours[-1]
        top.plot(hours[fitted], slope * hours[fitted] / 24 + offset, color="black", ls="--", lw=1,
                 label=f"fit after warm-up: {slope:+.2f} MB/day")
    bottom.plot(hours, [s[3] for s in samples], label="C heap in use (glibc)", color="tab:green", lw=1)
    bottom.plot(hours, [s[4] for s in samples], label="C heap free (fragmentation)", color="tab:orange", lw=1)
    for ax in (top, bottom):
        ax.axvline(WARMUP * hours[-1], color="grey", ls=":", lw=1)
        ax.axvline((WARMUP + (1 - WARMUP) / 2) * hours[-1], color="grey", ls=":", lw=1)
        ax.set_ylabel("MB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    m = report["memory"]
    model = "/".join(Path(report["model"]).parts[-2:])
    top.set_title(f"{model}: {report['audio_hours']:g} h of audio in {report['wall_s'] / 3600:.1f} h; "
                  f"RSS {m['after_warmup_mb_per_day']:+.2f} MB/day after warm-up (halves "
                  f"{m['first_half_mb_per_day']:+.2f} / {m['second_half_mb_per_day']:+.2f}, dotted lines)"
                  f"\n{report['cpu']}", fontsize=8)
    bottom.set_xlabel("simulated hours of audio")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def soak(model: Path, hours: float, max_wall_s: float, sample_every_s: float, workdir: Path) -> dict:
    from streamdetect.config import parse_config
    from streamdetect.daemon.service import DetectorService
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.util.memory import NativeHeap

    receiver = Receiver()
    jsonl, db = workdir / "events.jsonl", workdir / "events.db"
    data = {"model": str(model), "runtime": {"batch_size": 4},
            "events": [{"label": "tone", "prompts": ["a beeping tone"], "threshold": 0.0, "hysteresis": 0.0,
                        "cooldown_s": 0.0}],
            "sinks": [{"type": "jsonl", "path": str(jsonl)}, {"type": "sqlite", "path": str(db)},
                      {"type": "webhook", "url": receiver.url, "spool_dir": str(workdir / "spool")}]}
    bundle = ModelBundle.load(model)
    data["events"][0]["threshold"] = midway_threshold(parse_config(data), bundle)
    config = parse_config(data)
    service = DetectorService(config, bundle, metrics=True)
    detector, sinks = service.detector, service.sinks
    source = make_source_class()(int(hours * 3600), time.monotonic() + max_wall_s)

    # (audio seconds analysed, RSS MB, open fds, C heap in use MB, C heap free MB, RSS anon MB, RSS file MB)
    samples: list[tuple] = []
    done = threading.Event()
    heap = NativeHeap()

    def sample(analysed: float) -> tuple:
        stats = heap.stats()
        in_use, free = (stats.in_use_bytes / 2**20, stats.free_bytes / 2**20) if stats else (float("nan"),) * 2
        return analysed, rss_mb(), open_fds(), in_use, free, *rss_split_mb()

    def sampler() -> None:
        while not done.wait(sample_every_s):
            samples.append(sample(sum(s.windows_processed for s in detector.streams) * config.windows.hop_s))

    start_fds, start_rss = open_fds(), rss_mb()
    thread = threading.Thread(target=sampler, daemon=True)
    t0 = time.monotonic()
    thread.start()
    try:
        [summary], stats = service.run([source], threading.Event())
    finally:
        done.set()
        thread.join()
        service.close()
    wall_s = time.monotonic() - t0
    receiver.close()

    emitted = summary.records
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    phases = [json.loads(line)["phase"] for line in jsonl.read_text().splitlines()]
    running = list(samples)  # the slopes: the run itself, not the sample taken after everything was closed
    samples.append(sample(summary.audio_s))
    report = {
        "model": str(model), "audio_hours": round(summary.audio_s / 3600, 3), "wall_s": round(wall_s, 1),
        "speed_x_real_time": round(summary.audio_s / wall_s, 1), "windows": summary.windows,
        "dropped_windows": summary.dropped_windows, "records": emitted,
        "lost_records": {"jsonl": emitted - len(phases), "sqlite": emitted - stored,
                         "webhook": emitted - receiver.count},
        "unmatched_starts": phases.count("start") - phases.count("end"),
        "sink_failures": dict(sinks.failures), "sqlite_integrity": integrity,
        "rss_mb": {"before": round(start_rss, 1), "peak_sampled": round(max(s[1] for s in samples), 1),
                   "end": round(samples[-1][1], 1)},
        "rss_growth_mb_per_day": round(fit_slope_mb_per_day(running), 2),
        "rss_growth_second_half_mb_per_day": round(fit_slope_mb_per_day(running, warmup=0.5), 2),
        "memory": memory_criterion(running),
        "c_heap_in_use_growth_mb_per_day": round(fit_slope_mb_per_day(running, column=3), 2),
        "c_heap_free_growth_mb_per_day": round(fit_slope_mb_per_day(running, column=4), 2),
        "rss_anon_growth_mb_per_day": round(fit_slope_mb_per_day(running, column=5), 2),
        "rss_file_growth_mb_per_day": round(fit_slope_mb_per_day(running, column=6), 2),
        "heap_trims": stats.heap_trims, "queue_dropped_windows": stats.dropped_windows,
        "rss_curve_mb": [(round(s[0] / 3600, 2), round(s[1], 1)) for s in samples[:: max(1, len(samples) // 24)]],
        "open_fds": {"before": start_fds, "end": samples[-1][2], "max": max(s[2] for s in samples)},
        "latency_p99_ms": round(stats.latency_ms(99), 1), "samples": len(samples),
        "cpu": f"{CpuInfo.read().model}, {os.cpu_count()} logical CPUs",
    }
    return report, samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/clap-htsat-unfused"), help="exported model dir")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours of audio")
    p.add_argument("--max-wall-s", type=float, default=3600.0, help="stop early after this much wall time")
    p.add_argument("--sample-every-s", type=float, default=2.0, help="RSS / fd sampling interval (wall)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--samples", type=Path, help="write every sample (audio s, RSS MB, fds, heap in use, heap free, RSS anon, RSS file)")
    p.add_argument("--plot", type=Path, help="draw the RSS curve to this PNG (needs matplotlib: the plot extra)")
    p.add_argument("--check-memory", action="store_true", help="exit 1 also when the memory criterion fails")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="streamdetect-soak-") as tmp:
        report, samples = soak(args.model, args.hours, args.max_wall_s, args.sample_every_s, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.samples:
        args.samples.write_text(json.dumps(samples) + "\n")
    if args.plot:
        plot(report, samples[:-1], args.plot)  # the last sample: after the sinks closed and were read back
    ok = report["dropped_windows"] == 0 and not any(report["lost_records"].values()) \
        and report["unmatched_starts"] == 0 and report["sqlite_integrity"] == "ok"
    if args.check_memory:
        ok = ok and report["memory"]["holds"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
