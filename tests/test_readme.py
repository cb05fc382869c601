"""The README as a newcomer reads it: short, its test command is CI's, and its tour runs as written.

The tour is run line by line as subprocesses in a fresh folder laid out like the repository, against a model
exported the way the README says to without internet (``export --model DIR`` from the tests' tiny checkpoint,
default output folder), so every command in it must work with the default paths and no ``--model``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import decision_line

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOISE = ("Skipping torchvision", "FutureWarning", "pre-processing before quantization", "UserWarning",
         "Traceback", "TqdmWarning")


def _tour_lines() -> list[str]:
    text = README.read_text()
    block = text.split("<!-- tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _local(line: str) -> list[str]:
    """A README command line as this interpreter runs it (the README's ``.venv/bin/...``)."""
    python = shlex.quote(sys.executable)
    line = re.sub(r"\.venv/bin/(streamdetect|python)\b",
                  lambda m: f"{python} -m streamdetect" if m.group(1) == "streamdetect" else python, line)
    return shlex.split(line)


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("bash scripts/setup.sh")]
    assert len(ci) == 1 and ci[0] in lines, ".ci/run must run exactly the README's test command"
    assert "docs/images/mini_scan.png" in README.read_text() and (ROOT / "docs/images/mini_scan.png").is_file()
    assert "random weights" in README.read_text().lower()


@pytest.mark.slow  # an export and nine commands, each in a fresh interpreter
def test_readme_tour_runs_as_written(tiny_checkpoint, tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "configs", work / "configs")
    shutil.copytree(ROOT / "mini", work / "mini", ignore=shutil.ignore_patterns("__pycache__"))  # the scenes
    export = next(line.strip() for line in README.read_text().splitlines()
                  if "streamdetect export --model /path/to/" in line)
    checkpoint = work / "clap-htsat-unfused-checkpoint"
    shutil.copytree(tiny_checkpoint, checkpoint)
    commands = [export.replace(re.search(r"/path/to/\S+", export).group(0), str(checkpoint)), *_tour_lines()]
    assert len(commands) >= 8
    outputs = {}
    for line in commands:
        result = subprocess.run(_local(line), cwd=work, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        noise = [n for n in NOISE if n in result.stderr]
        assert not noise, f"{line}: {noise} in\n{result.stderr}"
        outputs[line] = result
    manifest = json.loads((work / "models" / "clap-htsat-unfused" / "manifest.json").read_text())
    assert manifest["source"]["random_weights"] is True  # the tiny checkpoint is random, and says so
    first = outputs[commands[0]].stderr
    assert "[1/7] loading" in first and "[7/7]" in first and "next: streamdetect run" in first
    assert "min cosine ONNX vs PyTorch" in first  # the parity figures, and each reduced precision's decision
    for precision, info in manifest["precisions"].items():
        assert precision == "fp32" or decision_line(precision, info) + "\n" in first
    assert (work / "scan.png").is_file() and (work / "scan.csv").read_text().startswith("start_s,end_s")
    assert (work / "events" / "events.db").is_file()  # the run's sqlite sink, read by `events` with its default --db
    events = next(r for line, r in outputs.items() if " events " in f" {line} ")
    assert re.search(r"^\d+ records, newest first$", events.stderr, re.M)
    search = next(r for line, r in outputs.items() if " search " in line)
    assert "scene_00" in search.stdout
    assert "RANDOM WEIGHTS" in outputs[next(line for line in commands if " run " in line)].stderr
