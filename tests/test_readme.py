"""The README as a newcomer reads it: short, its test command is CI's, and its tour runs as written.

The tour is run line by line as subprocesses in a fresh folder laid out like the repository, against the session's
export of the tests' tiny checkpoint in the default output folder, where the README's ``export --model DIR`` puts
it, so every command in it must work with the default paths and no ``--model``. (The export command itself, in a
fresh interpreter with what it prints, is run by test_random_weights: a third export of the tiny model here cost
35 CPU-s of CI's budget.)
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NOISE

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


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


def test_the_readme_export_line_is_a_valid_command():
    """The README's offline export line, as the CLI parses it: a checkpoint folder, written to the default folder."""
    from streamdetect.cli.parser import build_parser
    from streamdetect.model.manifest import DEFAULT_MODEL_DIR

    export = next(line.strip() for line in README.read_text().splitlines()
                  if "streamdetect export --model /path/to/" in line)
    args = build_parser().parse_args(shlex.split(export)[1:])
    assert (args.command, args.model, args.out) == ("export", "/path/to/clap-htsat-unfused", None)
    assert DEFAULT_MODEL_DIR == Path("models/clap-htsat-unfused")


@pytest.mark.slow  # nine commands, each in a fresh interpreter
def test_readme_tour_runs_as_written(tiny_model, tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "configs", work / "configs")
    shutil.copytree(ROOT / "mini", work / "mini", ignore=shutil.ignore_patterns("__pycache__"))  # the scenes
    model = work / "models" / "clap-htsat-unfused"  # where `export` writes by default
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns("prompt_cache"))
    commands = _tour_lines()
    assert len(commands) >= 8
    outputs = {}
    for line in commands:
        result = subprocess.run(_local(line), cwd=work, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        noise = [n for n in NOISE if n in result.stderr]
        assert not noise, f"{line}: {noise} in\n{result.stderr}"
        outputs[line] = result
    assert (work / "scan.png").is_file() and (work / "scan.csv").read_text().startswith("start_s,end_s")
    assert (work / "events" / "events.db").is_file()  # the run's sqlite sink, read by `events` with its default --db
    events = next(r for line, r in outputs.items() if " events " in f" {line} ")
    assert re.search(r"^\d+ records, newest first$", events.stderr, re.M)
    search = next(r for line, r in outputs.items() if " search " in line)
    assert "scene_00" in search.stdout
    assert "RANDOM WEIGHTS" in outputs[next(line for line in commands if " run " in line)].stderr
