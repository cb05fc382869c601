"""``streamdetect export --random-weights``: a model to try the commands with when no checkpoint can be had.

The verb builds laion/clap-htsat-unfused's architecture; here the architecture is swapped for the tests' tiny one
(in the child interpreter only) so the whole path (checkpoint, mark, real export, manifest) runs in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import NOISE, decision_line, run_cli

ROOT = Path(__file__).resolve().parents[1]

# The verb, in a fresh interpreter, with full_size_config() returning a tiny CLAP: everything else is real.
TINY_VERB = """
import sys
import streamdetect.export.random_weights as random_weights
from streamdetect.cli import main

# transformers is imported only when the architecture is built: a refused run never loads it
random_weights.full_size_config = lambda: __import__("transformers").ClapConfig(
    text_config=dict(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=80),
    audio_config=dict(patch_embeds_hidden_size=16, hidden_size=128, depths=[1, 1, 1, 1],
                      num_attention_heads=[1, 1, 2, 2], window_size=8),
    projection_dim=32)
sys.exit(main(sys.argv[1:]))
"""


def _verb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TINY_VERB, "export", "--random-weights", *args],
                          capture_output=True, text=True, timeout=600)


def test_random_weights_build_a_marked_checkpoint_and_export_it(tmp_path):
    out = tmp_path / "models" / "clap"
    result = _verb("--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["random_weights"] is True
    checkpoint = tmp_path / "models" / "clap-random-checkpoint"  # beside the export, for the next --force
    assert manifest["source"]["local_directory"] == str(checkpoint.resolve())
    marker = json.loads((checkpoint / "streamdetect_random_weights.json").read_text())
    assert marker["random_weights"] is True and "--random-weights" in marker["note"]
    assert f"[0/7] random weights, full-size architecture: checkpoint {checkpoint}" in result.stderr
    assert "[1/7] loading" in result.stderr and "[7/7]" in result.stderr
    assert "next: streamdetect run" in result.stderr
    assert "(random weights: this shows the tool, not detection)" in result.stderr
    assert "min cosine ONNX vs PyTorch" in result.stderr  # the parity figures, and each reduced precision's decision
    for precision, info in manifest["precisions"].items():
        assert precision == "fp32" or decision_line(precision, info) + "\n" in result.stderr
    assert not [n for n in NOISE if n in result.stderr], result.stderr  # what torch and onnx print is filtered

    again = _verb("--out", str(out))  # like any export: an existing one is replaced only with --force
    assert again.returncode == 1 and "already holds an exported model; pass --force" in again.stderr
    assert "[0/7]" not in again.stderr and "Traceback" not in again.stderr


def files_of(folder):
    """Every file below ``folder`` (a shared model folder may hold a prompt cache folder too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_random_weights_never_replace_an_export_of_real_weights(tiny_model, tmp_path):
    out = tmp_path / "real"
    shutil.copytree(tiny_model, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["source"]["random_weights"] = False  # as an export of laion/clap-htsat-unfused records
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = files_of(out)
    for command in (["-m", "streamdetect", "export", "--random-weights", "--force"],
                    [str(ROOT / "tools" / "random_full_size.py"), "--reexport"]):  # the old tool, now a shim
        result = subprocess.run([sys.executable, *command, "--out", str(out)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 1, result.stderr
        assert f"{out} holds an export of real weights; give --random-weights another --out" in result.stderr
        assert "Traceback" not in result.stderr
    assert files_of(out) == before
    assert not (tmp_path / "real-random-checkpoint").exists()


def test_random_weights_build_their_own_checkpoint(tmp_path):
    for extra in (["--model", "laion/larger_clap_general"], ["--revision", "main"]):
        result = run_cli("export", "--random-weights", "--out", str(tmp_path / "m"), *extra)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == ("streamdetect: --random-weights builds its own checkpoint: drop --model "
                                         "and --revision")
    assert not (tmp_path / "m").exists()
