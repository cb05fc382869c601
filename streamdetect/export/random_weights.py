"""The full-size CLAP architecture with random weights, exported: ``streamdetect export --random-weights``.

Where laion/clap-htsat-unfused cannot be downloaded, this gives a model with its compute (``ClapConfig()``'s
defaults are its architecture) for speed and export-parity work, and to try the commands with no checkpoint at
all. Its scores mean nothing: the checkpoint carries the random-weights mark, so the manifest records it, ``run``
warns at every start and scan plots say so in their title. An export of real weights is never replaced by one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamdetect.export.convert import ExportError, export_model, refuse_existing_export
from streamdetect.export.offline import (
    checkpoint_feature_extractor,
    has_random_weights,
    mark_random_weights,
    offline_tokenizer,
)
from streamdetect.model.manifest import MANIFEST_NAME, ModelBundle, ModelError

NOTE = "streamdetect export --random-weights: laion/clap-htsat-unfused's architecture, random weights"
TEXT_LENGTH = 512  # the real checkpoint's tokenizer length (its text tower has 514 positions)


def full_size_config() -> Any:
    """laion/clap-htsat-unfused's architecture (transformers' ``ClapConfig`` defaults)."""
    from transformers import ClapConfig

    return ClapConfig()


def checkpoint_beside(out: Path) -> Path:
    """Where ``--random-weights`` keeps the checkpoint it exports from: beside the export, reused next time."""
    return out.with_name(f"{out.name}-random-checkpoint")


def refuse_real_weights(model_dir: Path) -> None:
    """A random model goes anywhere but over an export of real weights (whatever --force says)."""
    try:
        real = not ModelBundle.load(model_dir).random_weights
    except ModelError:
        return  # nothing exported there yet
    if real:
        raise ExportError(f"{model_dir} holds an export of real weights; give --random-weights another --out")


def write_random_checkpoint(checkpoint: Path) -> Path:
    """A hub-like checkpoint folder (seeded random weights, the real preprocessing, a tokenizer trained offline),
    marked random; one already there with the mark is reused, a folder without it is never written over."""
    if (checkpoint / "config.json").exists():
        if not has_random_weights(checkpoint):
            raise ExportError(f"{checkpoint} holds a checkpoint without the random-weights mark; move it away "
                              "or give another --out")
        return checkpoint
    import torch
    from transformers import ClapModel, ClapProcessor

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed when whole: an interrupted build leaves no half checkpoint to be reused.
    staging = Path(tempfile.mkdtemp(prefix=f".{checkpoint.name}.", dir=checkpoint.parent))
    try:
        torch.manual_seed(0)
        processor = ClapProcessor(feature_extractor=checkpoint_feature_extractor(),
                                  tokenizer=offline_tokenizer(TEXT_LENGTH))
        processor.save_pretrained(staging)
        ClapModel(full_size_config()).eval().save_pretrained(staging)
        mark_random_weights(staging, NOTE)
        staging.rename(checkpoint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checkpoint


def export_random_weights(out: Path, force: bool = False,
                          report: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                          ) -> dict[str, Any]:
    """The verb's: the checkpoint beside ``out`` (built once), exported into ``out`` like any checkpoint."""
    refuse_real_weights(out)
    refuse_existing_export(out, force)  # before minutes of building, not after
    checkpoint = checkpoint_beside(out)
    report(f"[0/7] random weights, full-size architecture: checkpoint {checkpoint}")
    write_random_checkpoint(checkpoint)
    return export_model(str(checkpoint), out, report=report, force=force)


def random_full_size(work: Path, reexport: bool = False) -> tuple[Path, Path]:
    """The benches' model: (``work/checkpoint``, ``work/model``), each built once and reused by later runs."""
    checkpoint, model_dir = work / "checkpoint", work / "model"
    refuse_real_weights(model_dir)
    write_random_checkpoint(checkpoint)
    if reexport or not (model_dir / MANIFEST_NAME).exists():
        export_model(str(checkpoint), model_dir, force=True)
    return checkpoint, model_dir
