"""Regenerate the README's example figures with the commands themselves, on the full-size architecture with
RANDOM weights (no real checkpoint can be downloaded where this is run), labelled as such on the figures.

    python -m scripts.readme_figures [--work /tmp/clap-random]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
LABEL = "RANDOM WEIGHTS (shows the tool, not detection quality)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("/tmp/clap-random"))
    args = parser.parse_args()
    from mini.scenes import SR, noise_background, synthetic_library
    from streamdetect.export.random_weights import random_full_size

    _, model = random_full_size(args.work)
    figures = ROOT / "docs" / "images"
    figures.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    library = synthetic_library(rng)
    scene = noise_background(rng, 20.0)
    for label, at in (("tone", 3.0), ("chirp", 9.0), ("clicks", 14.0)):
        clip = library[label][0]
        start = int(at * SR)
        scene[start : start + clip.size] += 0.3 * clip
    wav = args.work / "scene.wav"
    sf.write(wav, scene, SR)
    cfg = args.work / "scene.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(model), "events": [
        {"label": "beep", "prompts": ["a beep"], "threshold": -0.029, "hysteresis": 0.0},
        {"label": "bird", "prompts": ["a bird chirping"], "threshold": -0.028, "hysteresis": 0.0},
        {"label": "clock", "prompts": ["a clock ticking"], "threshold": -0.027, "hysteresis": 0.0}]}))
    subprocess.run([sys.executable, "-m", "streamdetect", "scan", str(wav), "--config", str(cfg), "--plot",
                    str(figures / "scan_example.png"), "--title", "streamdetect scan of a generated scene"], check=True)  # the plot adds the random-weights label
    dataset = args.work / "dataset"
    for label, clips in library.items():
        major = "tonal" if label in ("tone", "chirp") else "impulsive"
        (dataset / major / label).mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(clips):
            sf.write(dataset / major / label / f"{label}{i}.wav", clip, SR)
    subprocess.run([sys.executable, "-m", "mini.embedding_map", str(dataset), "--model", str(model),
                    "--out", str(figures / "embedding_map_example.png"), "--heatmap",
                    str(figures / "similarity_heatmap_example.png"), "--title", LABEL], check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
