"""Build a full-size CLAP (``ClapConfig()`` defaults = laion/clap-htsat-unfused's architecture) with RANDOM
weights, export it with the real ``streamdetect export`` path and time the run-time stages.

For speed and export-parity work where the real weights cannot be downloaded, and to try the commands with
no checkpoint at all. The scores of this model mean nothing: it shows the tool, never detection. The manifest
says so (``source.random_weights``), `run` warns at start-up, and scan plots say it in their title.

By default the export goes where the ready-made configs look (models/clap-htsat-unfused), so the README's
commands run without --model; an existing export of real weights there is never replaced.

    python tools/random_full_size.py [--out models/clap-htsat-unfused] [--windows 20]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from streamdetect.model.manifest import DEFAULT_MODEL_DIR


def build(out: Path, reexport: bool = False) -> tuple[Path, Path]:
    """(checkpoint directory, exported model directory) of the full-size random-weight CLAP under ``out``."""
    return build_into(out / "checkpoint", out / "model", reexport)


def build_into(checkpoint: Path, model_dir: Path, reexport: bool = False) -> tuple[Path, Path]:
    import torch

    from streamdetect.export.convert import export_model
    from streamdetect.export.offline import mark_random_weights
    from streamdetect.model.manifest import ModelBundle, ModelError

    try:
        if not ModelBundle.load(model_dir).random_weights:
            raise SystemExit(f"{model_dir} holds an export of real weights; give another --out for the random model")
    except ModelError:
        pass  # nothing exported there yet
    if not (checkpoint / "config.json").exists():
        from transformers import ClapConfig, ClapModel, ClapProcessor

        from streamdetect.export.offline import checkpoint_feature_extractor, offline_tokenizer

        torch.manual_seed(0)
        processor = ClapProcessor(feature_extractor=checkpoint_feature_extractor(), tokenizer=offline_tokenizer(512))
        processor.save_pretrained(checkpoint)
        ClapModel(ClapConfig()).eval().save_pretrained(checkpoint)
    mark_random_weights(checkpoint, "tools/random_full_size.py: laion/clap-htsat-unfused's architecture, random weights")
    if reexport or not (model_dir / "manifest.json").exists():
        t0 = time.perf_counter()
        manifest = export_model(str(checkpoint), model_dir, force=True)
        print(f"export: {time.perf_counter() - t0:.1f} s; verification {manifest['verification']}")
    return checkpoint, model_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR,
                        help="exported model (default: %(default)s, where configs/*.yaml look)")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/clap-random-checkpoint"),
                        help="the random-weight checkpoint folder (default: %(default)s)")
    parser.add_argument("--windows", type=int, default=20, help="windows to time per stage")
    parser.add_argument("--reexport", action="store_true", help="export again even if --out has a model")
    args = parser.parse_args()

    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.model.manifest import ModelBundle

    checkpoint, model_dir = build_into(args.checkpoint, args.out, args.reexport)
    print(f"RANDOM WEIGHTS in {model_dir}: the commands work, the scores mean nothing")
    bundle = ModelBundle.load(model_dir)
    frontend = LogMelFrontend(bundle.frontend_params)
    encoder = open_audio_encoder(bundle, RuntimeOptions(device="cpu"))
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(3 * 48_000)).astype(np.float32) for _ in range(args.windows)]
    from transformers import ClapFeatureExtractor

    hf = ClapFeatureExtractor.from_pretrained(checkpoint)
    hf_ms = []
    for w in windows:
        t0 = time.perf_counter()
        hf(w, sampling_rate=48_000, return_tensors="np")
        hf_ms.append(1000 * (time.perf_counter() - t0))
    fe_ms, enc_ms = [], []
    for w in windows:
        t0 = time.perf_counter()
        feats = frontend([w])
        t1 = time.perf_counter()
        encoder(feats)
        fe_ms.append(1000 * (t1 - t0))
        enc_ms.append(1000 * (time.perf_counter() - t1))
    print(f"per 3 s window, batch 1, CPU: ClapFeatureExtractor p50 {np.median(hf_ms):.1f} ms, "
          f"front end p50 {np.median(fe_ms):.2f} ms, "
          f"encoder p50 {np.median(enc_ms):.1f} ms (p90 {np.percentile(enc_ms, 90):.1f} ms)")
    sizes = {p.name: round(p.stat().st_size / 2**20, 1) for p in model_dir.iterdir() if p.is_file()}
    print(f"files (MiB): {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
