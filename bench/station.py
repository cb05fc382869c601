"""What the station features cost at run time, measured in one process on this machine:

  (a) the detector's own work per window (scoring, trackers, and the features), without and with the privacy
      filter and with schedules on every event; the front end and the encoder (the same in every case, and
      tens of times larger) are left out by subtracting the time the detector itself measures in them; and
      what a window outside every period costs in all (it skips both);
  (b) one spectrogram PNG of a 9 s clip at 48 kHz;
  (c) one report over a day of 2,000 events in the store;
  (d) one Apprise notification to a loopback json:// receiver, with a spectrogram attached.

    python -m bench.station --model DIR [--windows 400] [--json out.json]

DIR is any export (the tests' tiny CLAP will do: only the front end and the prompt embeddings are used).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from streamdetect.config import parse_config
from streamdetect.daemon.build import build_detector
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.windows import Window
from streamdetect.sinks.base import SinkSet
from streamdetect.util.cpu import CpuInfo

SR = 48_000


class ConstantEncoder:
    """Random unit embeddings, computed once: the encoder's cost is left out of the comparison."""

    def __init__(self, bundle: ModelBundle):
        params = bundle.frontend_params
        self.feature_shape = (1, params.n_frames, params.n_mels)
        self.embedding_dim, self.file, self.precision, self.on_gpu = bundle.embedding_dim, "constant", "fp32", False
        rows = np.random.default_rng(0).standard_normal((64, bundle.embedding_dim))
        self.rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.rows[: features.shape[0]]

    def describe(self) -> str:
        return "constant"


def per_window_us(model: Path, n_windows: int, privacy: bool, schedules: bool, inside: bool = True) -> float:
    events = [{"label": f"e{i}", "prompts": [p], "threshold": 0.9} for i, p in
              enumerate(["birdsong", "a dog barking", "rain"])]
    if schedules:
        for e in events:
            e["schedule"] = ["sunrise-30m..sunrise+3h", "18:00-22:00"]
    config = parse_config({"model": str(model), "events": events, "runtime": {"device": "cpu", "batch_size": 4},
                           "site": {"timezone": "Europe/Berlin", "latitude": 52.5, "longitude": 13.4},
                           "privacy": {"enabled": privacy}})
    bundle = ModelBundle.load(model)
    when = datetime(2026, 6, 1, 19, 0, tzinfo=timezone.utc) if inside else datetime(2026, 6, 1, 1, 0,
                                                                                       tzinfo=timezone.utc)
    detector = build_detector(config, bundle, SinkSet([]), encoder=ConstantEncoder(bundle), clock=lambda: when)
    stream = detector.open_stream("bench", live=True)
    samples = (0.1 * np.random.default_rng(1).standard_normal(3 * SR)).astype(np.float32)
    windows = [(stream, Window(i, i * SR, samples, SR)) for i in range(n_windows)]
    best = float("inf")
    for _ in range(3):
        front = detector.frontend_seconds + detector.encoder_seconds
        t0 = time.perf_counter()
        for k in range(0, n_windows, 4):
            detector.analyse(windows[k : k + 4])
        own = time.perf_counter() - t0 - (detector.frontend_seconds + detector.encoder_seconds - front)
        best = min(best, own / n_windows * 1e6)
    return best


def front_end_ms(model: Path) -> float:
    from streamdetect.embed.frontend import LogMelFrontend

    frontend = LogMelFrontend(ModelBundle.load(model).frontend_params)
    samples = [(0.1 * np.random.default_rng(1).standard_normal(3 * SR)).astype(np.float32)] * 4
    frontend(samples)
    t0 = time.perf_counter()
    for _ in range(25):
        frontend(samples)
    return (time.perf_counter() - t0) / 100 * 1000


def spectrogram_ms() -> float:
    from streamdetect.sinks.spectrogram import Marked, spectrogram_png

    clip = np.round(0.2 * np.random.default_rng(2).standard_normal(9 * SR) * 32767).astype(np.int16)
    spectrogram_png(clip, SR, [Marked(3, 6, "x")], "warm-up")
    t0 = time.perf_counter()
    for _ in range(5):
        spectrogram_png(clip, SR, [Marked(3, 6, "x")], "bench")
    return (time.perf_counter() - t0) / 5 * 1000


def report_ms(folder: Path) -> tuple[float, int]:
    from streamdetect.pipeline.events import EventRecord
    from streamdetect.report import day_summary
    from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink

    sink = SqliteSink(SqliteOptions(path=str(folder / "events.db")))
    base = datetime(2026, 5, 31, 22, 0, tzinfo=timezone.utc)
    for i in range(2000):
        when = (base + timedelta(seconds=43 * i)).isoformat(timespec="milliseconds")
        for phase in ("start", "end"):
            sink.emit(EventRecord(f"{i:032x}", f"label{i % 7}", phase, 1.0, 4.0 if phase == "end" else None,
                                  0.3 + (i % 10) / 20, 2.0, "s", when, ()))
    sink.close()
    t0 = time.perf_counter()
    summary = day_summary(folder / "events.db", date(2026, 6, 1), "Europe/Berlin")
    return (time.perf_counter() - t0) * 1000, summary.events


def apprise_ms(folder: Path) -> float:
    from streamdetect.pipeline.events import EventRecord
    from streamdetect.sinks.apprise import AppriseOptions, AppriseSink
    from streamdetect.sinks.spectrogram import spectrogram_png

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    label_dir = folder / "clips" / "bird"
    label_dir.mkdir(parents=True)
    clip = np.round(0.2 * np.random.default_rng(3).standard_normal(9 * SR) * 32767).astype(np.int16)
    (label_dir / "x_00000000.png").write_bytes(spectrogram_png(clip, SR, [], "bench"))
    sink = AppriseSink(AppriseOptions(urls=[f"json://127.0.0.1:{server.server_address[1]}/x"], min_interval_s=0,
                                      attach_spectrogram=True, clips_dir=str(folder / "clips")))
    times = []
    for i in range(10):
        record = EventRecord("0" * 32, "bird", "end", 1.0, 4.0, 0.5, 2.0, "s",
                             f"2026-06-01T0{i}:00:00.000+00:00", ())
        t0 = time.perf_counter()
        sink.emit(record)
        times.append(time.perf_counter() - t0)
    server.shutdown()
    server.server_close()
    return float(np.median(times) * 1000)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--windows", type=int, default=400)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    base = per_window_us(args.model, args.windows, False, False)
    frontend_ms = front_end_ms(args.model)
    out = {
        "cpu": CpuInfo.read().model,
        "per_window_us": {
            "baseline (scoring + trackers)": round(base, 1),
            "privacy filter": round(per_window_us(args.model, args.windows, True, False), 1),
            "schedules on 3 events (inside a period)": round(per_window_us(args.model, args.windows, False, True), 1),
            "outside every period (no front end, no encoder)": round(
                per_window_us(args.model, args.windows, False, True, inside=False), 1),
        },
        "front_end_ms_per_window (skipped outside every period, like the encoder)": round(frontend_ms, 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        ms, events = report_ms(Path(tmp))
        out["report_ms"] = {f"one day, {events} events in the store": round(ms, 1)}
        out["spectrogram_png_ms_per_9s_clip"] = round(spectrogram_ms(), 1)
        out["apprise_ms_per_notification_loopback_with_png"] = round(apprise_ms(Path(tmp)), 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
