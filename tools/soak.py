"""Soak test: push a generated stream faster than real time through the daemon's own pipeline for the
equivalent of many hours of audio, sampling RSS and open file descriptors, and check that nothing is lost.

The pipeline is the one ``streamdetect run`` builds (``DetectorService``: config -> sinks, metrics, detector,
batching engine), with real jsonl, sqlite and webhook sinks (the webhook posts to a
receiver on loopback). Only the source is synthetic: noise with a 3 kHz tone for 5 s every 30 s, generated
block by block, so any number of hours costs no disk. The event threshold is set between the model's
scores for a noise window and a tone window, so events start and end all the time and every sink works.

Reports the RSS growth per simulated day (least-squares slope after a warm-up), the open file descriptors at
the start and the end, dropped windows, and lost records (each sink's count against the detector's).

    python tools/soak.py --model models/clap-htsat-unfused --hours 24 [--max-wall-s 1800] [--json soak.json]

With ``--max-wall-s`` the run stops early and the figures cover the audio that was analysed.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

SR = 48_000
TONE_EVERY_S, TONE_LEN_S = 30, 5


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


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
    from streamdetect.pipeline.build import build_detector
    from streamdetect.pipeline.windows import Window
    from streamdetect.sinks.base import SinkSet

    detector = build_detector(config, bundle, SinkSet([]))
    noise = np.concatenate([synthetic_block(i) for i in (10, 11, 12)])
    tone = np.concatenate([synthetic_block(i) for i in (0, 1, 2)])
    scores = detector.scores([Window(0, 0, noise, SR), Window(1, 0, tone, SR)]).event[:, 0]
    if abs(scores[1] - scores[0]) < 1e-4:
        raise SystemExit(f"soak: the model scores noise and tone alike ({scores}); cannot make events fire")
    return float((scores[0] + scores[1]) / 2)


def fit_slope_mb_per_day(samples: list[tuple[float, float, int]], warmup: float = 0.1) -> float:
    """Least-squares RSS slope against audio time, after the first ``warmup`` share of the run."""
    pts = [(a, r) for a, r, _ in samples if a >= warmup * samples[-1][0]]
    if len(pts) < 3:
        return float("nan")
    audio_s, rss = np.array(pts).T
    return float(np.polyfit(audio_s / 86_400, rss, 1)[0])


def soak(model: Path, hours: float, max_wall_s: float, sample_every_s: float, workdir: Path) -> dict:
    from streamdetect.config import parse_config
    from streamdetect.daemon.service import DetectorService
    from streamdetect.model.manifest import ModelBundle

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

    samples: list[tuple[float, float, int]] = []  # (audio seconds analysed, RSS MB, open fds)
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(sample_every_s):
            analysed = sum(s.windows_processed for s in detector.streams) * config.windows.hop_s
            samples.append((analysed, rss_mb(), open_fds()))

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
    samples.append((summary.audio_s, rss_mb(), open_fds()))
    return {
        "model": str(model), "audio_hours": round(summary.audio_s / 3600, 3), "wall_s": round(wall_s, 1),
        "speed_x_real_time": round(summary.audio_s / wall_s, 1), "windows": summary.windows,
        "dropped_windows": summary.dropped_windows, "records": emitted,
        "lost_records": {"jsonl": emitted - len(phases), "sqlite": emitted - stored,
                         "webhook": emitted - receiver.count},
        "unmatched_starts": phases.count("start") - phases.count("end"),
        "sink_failures": dict(sinks.failures), "sqlite_integrity": integrity,
        "rss_mb": {"before": round(start_rss, 1), "peak_sampled": round(max(r for _, r, _ in samples), 1),
                   "end": round(samples[-1][1], 1)},
        "rss_growth_mb_per_day": round(fit_slope_mb_per_day(samples), 2),
        "rss_growth_second_half_mb_per_day": round(fit_slope_mb_per_day(samples, warmup=0.5), 2),
        "rss_curve_mb": [(round(a / 3600, 2), round(r, 1)) for a, r, _ in samples[:: max(1, len(samples) // 24)]],
        "open_fds": {"before": start_fds, "end": samples[-1][2], "max": max(f for _, _, f in samples)},
        "latency_p99_ms": round(stats.latency_ms(99), 1), "samples": len(samples),
    }


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/clap-htsat-unfused"), help="exported model dir")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours of audio")
    p.add_argument("--max-wall-s", type=float, default=3600.0, help="stop early after this much wall time")
    p.add_argument("--sample-every-s", type=float, default=2.0, help="RSS / fd sampling interval (wall)")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="streamdetect-soak-") as tmp:
        report = soak(args.model, args.hours, args.max_wall_s, args.sample_every_s, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = report["dropped_windows"] == 0 and not any(report["lost_records"].values()) \
        and report["unmatched_starts"] == 0 and report["sqlite_integrity"] == "ok"
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
