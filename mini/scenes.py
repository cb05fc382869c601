"""Synthetic evaluation scenes: event clips mixed into background audio at chosen onsets and SNRs.

Writes ``scene_NNN.wav`` files, a DCASE-style strong-label ``labels.tsv`` (filename, onset, offset,
event_label) and ``scenes.json`` with the SNR and source clip of every event. Seeded: the same arguments give
byte-identical output.

    python -m mini.scenes --events clips/ --backgrounds noise/ --out scenes/ --n 20 --seed 1
        clips/ holds one folder per class (clips/dog/*.wav, clips/siren/*.flac ...)
    python -m mini.scenes --synthetic --out scenes/   # generated tones/chirps/clicks over noise, no input
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streamdetect.sources.file import audio_files, read_audio

SR = 48_000


def load(path: Path, max_s: float | None = None) -> np.ndarray:
    """A file as 48 kHz mono float32 (at most ``max_s`` seconds)."""
    return read_audio(path, SR, max_s)


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) + 1e-12


def scale_for_snr(event: np.ndarray, background: np.ndarray, snr_db: float) -> float:
    """Gain for ``event`` so that its power over the background segment it covers is ``snr_db``."""
    return float(np.sqrt(power(background) / power(event) * 10 ** (snr_db / 10)))


def synthetic_library(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Three generated classes, a few clips each: a tone with harmonics, a chirp and a click train."""
    out: dict[str, list[np.ndarray]] = {"tone": [], "chirp": [], "clicks": []}
    for _ in range(3):
        n = int(rng.uniform(1.0, 3.0) * SR)
        t = np.arange(n) / SR
        f = rng.uniform(400, 2000)
        fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.02)
        out["tone"].append((fade * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))).astype(np.float32))
        out["chirp"].append((fade * np.sin(2 * np.pi * (300 + rng.uniform(1000, 4000) * t / t[-1]) * t))
                            .astype(np.float32))
        clicks = np.zeros(n, np.float32)
        clicks[:: int(SR / rng.uniform(5, 15))] = 1.0
        out["clicks"].append(np.convolve(clicks, np.hanning(64), mode="same").astype(np.float32))
    return out


def noise_background(rng: np.random.Generator, seconds: float) -> np.ndarray:
    white = rng.standard_normal(int(seconds * SR))
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(4800) / 4800, mode="same")  # keep it from drifting
    mix = 0.02 * white + 0.002 * brown
    return mix.astype(np.float32)


@dataclass
class Placed:
    label: str
    onset: float
    offset: float
    snr_db: float
    source: str


def make_scene(rng: np.random.Generator, background: np.ndarray, library: dict[str, list[tuple[str, np.ndarray]]],
               n_events: int, snr_range: tuple[float, float]) -> tuple[np.ndarray, list[Placed]]:
    scene = background.astype(np.float64).copy()
    placed: list[Placed] = []
    labels = sorted(library)
    for _ in range(n_events):
        label = labels[rng.integers(len(labels))]
        name, clip = library[label][rng.integers(len(library[label]))]
        clip = clip[: scene.size]
        taken = [(int(p.onset * SR), int(p.offset * SR)) for p in placed if p.label == label]
        for _ in range(50):  # events of one class must not touch: strong labels cannot express that
            onset = int(rng.integers(0, scene.size - clip.size + 1))
            if all(onset > end or onset + clip.size < start for start, end in taken):
                break
        else:
            continue
        snr = float(rng.uniform(*snr_range))
        gain = scale_for_snr(clip, background[onset : onset + clip.size], snr)
        scene[onset : onset + clip.size] += gain * clip
        placed.append(Placed(label, round(onset / SR, 3), round((onset + clip.size) / SR, 3), round(snr, 2), name))
    peak = np.abs(scene).max()
    if peak > 0.99:  # keep the file unclipped; SNRs are unchanged by a common gain
        scene *= 0.99 / peak
    return scene.astype(np.float32), sorted(placed, key=lambda p: p.onset)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=Path, help="folder with one sub-folder of clips per class")
    parser.add_argument("--backgrounds", type=Path, help="background recordings (file or folder)")
    parser.add_argument("--synthetic", action="store_true", help="generate classes and background instead")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=10, help="number of scenes")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per scene")
    parser.add_argument("--events-per-scene", type=int, nargs=2, default=(1, 4), metavar=("MIN", "MAX"))
    parser.add_argument("--snr", type=float, nargs=2, default=(0.0, 15.0), metavar=("MIN_DB", "MAX_DB"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    if args.synthetic:
        library = {k: [(f"synthetic:{k}:{i}", c) for i, c in enumerate(v)] for k, v in synthetic_library(rng).items()}
        backgrounds = None
    else:
        if not args.events or not args.backgrounds:
            parser.error("give --events and --backgrounds, or --synthetic")
        library = {d.name: [(str(f), load(f)) for f in audio_files(d)] for d in sorted(args.events.iterdir())
                   if d.is_dir()}
        library = {k: v for k, v in library.items() if v}
        backgrounds = audio_files(args.backgrounds)
        if not library or not backgrounds:
            parser.error(f"no class folders with audio under {args.events}, or no audio under {args.backgrounds}")

    args.out.mkdir(parents=True, exist_ok=True)
    rows, meta = ["filename\tonset\toffset\tevent_label"], []
    for i in range(args.n):
        if backgrounds is None:
            background = noise_background(rng, args.duration)
        else:
            source = load(backgrounds[rng.integers(len(backgrounds))])
            reps = int(np.ceil(args.duration * SR / max(source.size, 1)))
            long = np.tile(source, max(reps, 1) + 1)
            start = int(rng.integers(0, long.size - int(args.duration * SR) + 1))
            background = long[start : start + int(args.duration * SR)]
        n_events = int(rng.integers(args.events_per_scene[0], args.events_per_scene[1] + 1))
        scene, placed = make_scene(rng, background, library, n_events, tuple(args.snr))
        name = f"scene_{i:03d}.wav"
        sf.write(args.out / name, scene, SR, subtype="PCM_16")
        rows += [f"{name}\t{p.onset:.3f}\t{p.offset:.3f}\t{p.label}" for p in placed]
        meta.append({"file": name, "events": [asdict(p) for p in placed]})
    (args.out / "labels.tsv").write_text("\n".join(rows) + "\n")
    (args.out / "scenes.json").write_text(json.dumps({"seed": args.seed, "scenes": meta}, indent=1) + "\n")
    print(f"wrote {args.n} scenes and {len(rows) - 1} labelled events to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
