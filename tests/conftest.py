"""Shared fixtures: a tiny random-weight CLAP checkpoint (built offline) and its real export.

The tiny model has the real architecture and the real front end (48 kHz, 64 mels, 1001 frames), only small
widths, so export, ONNX parity and the whole pipeline are exercised in seconds. Its scores mean nothing.
It is exported once per session; every test that is not about the export itself uses that one export.
Also here: a private PulseAudio server (``pulse``) for every test that records a "microphone". Plain helpers
(scenes, configs, detectors, a fake encoder, CLI runs) are in ``helpers.py``.

How CI spreads the tests over its two workers (``--dist loadgroup``) is decided here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# Four xdist workers share CI's two cores, each starting exports, daemons and CLI runs: torch's and OpenBLAS's
# OpenMP pools would each start one spinning thread per core in every process (export of the tiny model: 38 ->
# 33 CPU-s on a quiet machine with one thread, more under load). Set before numpy or torch is imported here, and
# inherited by every child. The product's own thread limits are tested with these variables removed
# (test_pipeline's BLAS check); a value given from outside is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Every test process imports numpy, onnxruntime and often torch, transformers and umap, and the suite starts about
# a hundred more Python processes (CLI runs, daemons, exports). Where PYTHONDONTWRITEBYTECODE is set (it is on these
# machines) each of them compiled those modules from source again: 2 CPU-s for a CLI run, 12 for torch and
# transformers, 9 for umap, against 0.8, 5 and 3 from bytecode. Bytecode is written (into the git-ignored
# __pycache__ folders of the venv and the checkout) by the first process that imports a module.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402
from helpers import start_pulse  # noqa: E402

from streamdetect.export.offline import checkpoint_feature_extractor, mark_random_weights, offline_tokenizer

sys.dont_write_bytecode = False  # this process too (the variable above is read at start-up)

TESTS = Path(__file__).resolve().parent


def kept_together(path: Path) -> bool:
    """A test file whose tests share a module-scoped fixture (a daemon, a browser, a second export, the PulseAudio
    server ``pulse``): its tests run on one worker, so the fixture is built once."""
    text = path.read_text()
    return re.search(r"@pytest\.fixture\([^)]*scope=.module.", text) is not None or re.search(r"\bpulse\b", text) is not None


def pytest_xdist_make_scheduler(config, log):
    """CI's ``-n 4 --dist loadgroup``: the files of ``kept_together`` are one unit of work each, as under
    ``--dist loadfile``; every other test is a unit of its own, so one slow file no longer sets the floor. (The
    scheduler groups here because xdist's own ``xdist_group`` marks are lost under pytest 9.2: it renames
    ``item._nodeid``, which pytest no longer reads.)"""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    together = {f"tests/{path.name}" for path in TESTS.glob("test_*.py") if kept_together(path)}

    class FileOrTest(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if file in together else nodeid

    return FileOrTest(config, log)


def pytest_collection_modifyitems(config, items):
    """``slow`` tests (measurements: a minute or more each on 2 cores) first: a worker that runs out of work takes
    the next unit in this order, so both end on short tests instead of one of them starting a long one when the
    other has nothing left (``--no-loadscope-reorder`` in pyproject.toml keeps this order under xdist)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    # The first test to need the mini model goes first and the tiny model's users follow, so each worker starts
    # by exporting one of the two models (one waits on the other's lock otherwise: minutes under load).
    mini = next((item for item in items if "mini_model" in item.fixturenames), None)
    if mini is not None:
        items.remove(mini)
        items.insert(0, mini)


def build_tiny_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Save a small seeded CLAP with a byte-level BPE tokenizer trained offline, like a hub checkpoint."""
    import torch
    from transformers import ClapConfig, ClapModel, ClapProcessor

    torch.manual_seed(seed)
    tokenizer = offline_tokenizer()
    config = ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=80),
        audio_config=dict(patch_embeds_hidden_size=16, hidden_size=128, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 2, 2], window_size=8),
        projection_dim=32,
    )
    model = ClapModel(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    ClapProcessor(feature_extractor=checkpoint_feature_extractor(), tokenizer=tokenizer).save_pretrained(directory)
    model.save_pretrained(directory)
    mark_random_weights(directory, "tests/conftest.py: the tiny test CLAP")
    return directory


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """``build(folder)`` once per test run, also under pytest-xdist, where the workers share the parent of their
    own temp folders: the first worker to take the file lock builds, the others wait and reuse its result.
    The tiny model is then exported once per run, not once per worker (about 30 s of CPU each)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "shared" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder.parent / f"{folder.name}.built"
    with FileLock(str(folder.parent / f"{folder.name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "checkpoint", build_tiny_checkpoint)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_checkpoint) -> Path:
    """The tiny checkpoint exported by the real ``streamdetect export`` code path."""
    from streamdetect.export.convert import export_model

    return built_once(tmp_path_factory, "tiny-clap",
                      lambda out: export_model(str(tiny_checkpoint), out, report=lambda _msg: None))


MINI_CHECKPOINT = Path(__file__).resolve().parents[1] / "mini" / "clap"


@pytest.fixture(scope="session")
def mini_model(tmp_path_factory) -> Path:
    """The committed mini CLAP (trained on generated sounds, mini/train.py), exported by the real
    ``streamdetect export`` code path: the one model here whose scores mean something (in its synthetic world)."""
    from streamdetect.export.convert import export_model

    return built_once(tmp_path_factory, "mini-clap",
                      lambda out: export_model(str(MINI_CHECKPOINT), out, report=lambda _msg: None))


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """Environment variables that point PortAudio's ALSA 'default' device at a fresh PulseAudio null sink."""
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: run `bash scripts/setup.sh --dev` (Debian pulseaudio, pulseaudio-utils)")
    runtime = tmp_path_factory.mktemp("xdg")
    runtime.chmod(0o700)
    server_env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}  # a set server blocks starting
    server_env["XDG_RUNTIME_DIR"] = str(runtime)
    server_env["PULSE_STATE_PATH"] = str(runtime / "state")  # keep the server's state out of the home directory
    try:
        yield start_pulse(server_env)
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=server_env, capture_output=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    """(folder, mounted): a 256 KiB tmpfs mounted for the test and unmounted after it; where mounting is refused,
    a plain folder and False (the test then makes the disk full another way)."""
    folder = tmp_path / "small"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                                 capture_output=True, timeout=30).returncode == 0
    except OSError:  # no mount command
        mounted = False
    try:
        yield folder, mounted
    finally:
        if mounted:  # lazy: a test that failed with a file still open there must not leave the mount behind
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
