"""A newcomer's mistakes: each one is a one-line error (or a line that says what happened) and no traceback.

Also the checks that long work shows progress and that what users read as errors is gone or explained.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, write_config, write_tone_scene

from streamdetect.model.manifest import DEFAULT_MODEL_DIR, default_model_dir

ROOT = Path(__file__).resolve().parents[1]
EVENTS = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 0.3},
          {"label": "rain", "prompts": ["rain"], "threshold": 0.3}]


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The one ``streamdetect: ...`` line of a failed command, which must contain every needle."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("streamdetect: ")]
    assert len(lines) == 1, result.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.fixture()
def scene(tiny_model, tmp_path):
    return write_tone_scene(tmp_path / "scene.wav", seconds=8.0), write_config(tmp_path / "c.yaml", tiny_model,
                                                                                EVENTS)


# ------------------------------------------------------------------------------------------------- scan


@pytest.mark.parametrize("option", ["--plot", "--csv"])
def test_scan_output_in_a_missing_folder_fails_before_the_scan(scene, option):
    wav, cfg = scene
    result = run_cli("scan", str(wav), "--config", str(cfg), option, "/nonexistent/dir/x.out")
    one_line_error(result, option, "/nonexistent/dir does not exist")
    assert "scanning" not in result.stderr  # refused before any work


def test_scan_output_that_is_a_folder_fails_before_the_scan(scene, tmp_path):
    wav, cfg = scene
    one_line_error(run_cli("scan", str(wav), "--config", str(cfg), "--csv", str(tmp_path)), "is a folder")


def test_scan_plot_without_matplotlib_names_the_extra_first(scene, tmp_path):
    wav, cfg = scene
    blocker = tmp_path / "no_matplotlib"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), *sys.path])}
    result = run_cli("scan", str(wav), "--config", str(cfg), "--plot", str(tmp_path / "x.png"), env=env)
    one_line_error(result, "--plot needs matplotlib", "pip install 'streamdetect[plot]'")
    assert "scanning" not in result.stderr


def test_scan_progress_has_no_clamp_warning_or_negative_eta(tiny_model, tmp_path):
    import soundfile as sf

    # 44.1 kHz: resampled blocks add up to a little more than the header's duration
    rng = np.random.default_rng(1)
    wav = tmp_path / "odd.wav"
    sf.write(wav, (0.1 * rng.standard_normal(int(7.3 * 44_100))).astype(np.float32), 44_100)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, EVENTS)
    result = run_cli("scan", str(wav), "--config", str(cfg), "--csv", str(tmp_path / "x.csv"))
    assert result.returncode == 0, result.stderr
    assert "scanning odd.wav" in result.stderr
    assert "TqdmWarning" not in result.stderr and "clamping" not in result.stderr and "<-" not in result.stderr


# ------------------------------------------------------------------------------------------------- plots


def test_scan_plot_legend_outside_thresholds_in_curve_colours_random_title(tiny_model, tmp_path):
    from matplotlib.colors import to_rgba

    from streamdetect.analysis.scan import RANDOM_TITLE, scan_figure, scan_file
    from streamdetect.config import load_config
    from streamdetect.daemon.build import build_detector
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.sinks.base import SinkSet

    same = [{**e, "threshold": 0.1} for e in EVENTS]  # equal thresholds: the lines lie on top of each other
    bundle = ModelBundle.load(tiny_model)
    detector = build_detector(load_config(write_config(tmp_path / "c.yaml", tiny_model, same)), bundle, SinkSet([]))
    result = scan_file(detector, write_tone_scene(tmp_path / "s.wav", seconds=6.0), progress=False)
    assert bundle.random_weights and result.random_weights  # read from the manifest the tiny export wrote
    fig = scan_figure(result)
    wave, _, sim = fig.axes
    assert wave.get_title().startswith(RANDOM_TITLE)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = sim.get_legend().get_window_extent(renderer)
    assert legend.x0 >= sim.get_window_extent(renderer).x1  # beside the curves, not over them
    curves = {line.get_label(): line for line in sim.get_lines() if " threshold " not in line.get_label()}
    thresholds = [line for line in sim.get_lines() if " threshold " in line.get_label()]
    assert len(thresholds) == 2
    for line in thresholds:
        label = line.get_label().split(" threshold ")[0]
        assert to_rgba(line.get_color()) == to_rgba(curves[label].get_color())
    offsets = {line._unscaled_dash_pattern[0] for line in thresholds}  # matplotlib keeps no public getter
    assert len(offsets) == 2  # interleaved dashes: both colours visible where the lines coincide
    clean = scan_figure(type(result)(**{**result.__dict__, "random_weights": False}))
    assert RANDOM_TITLE not in clean.axes[0].get_title()


# ------------------------------------------------------------------------------------------------- events


def _db_with_records(tiny_model, tmp_path) -> Path:
    db = tmp_path / "events" / "events.db"
    cfg = write_config(tmp_path / "s.yaml", tiny_model, [{**e, "threshold": -1.0, "cooldown_s": 0} for e in EVENTS],
                       sinks=[{"type": "sqlite", "path": str(db)}])
    assert run_cli("run", "--config", str(cfg), "--input", str(write_tone_scene(tmp_path / "a.wav", 4.0))
                   ).returncode == 0
    return db


def test_events_shows_ids_newest_first_and_limit_keeps_the_newest(tiny_model, tmp_path):
    db = _db_with_records(tiny_model, tmp_path)
    everything = sqlite3.connect(db).execute("SELECT id, time FROM records ORDER BY time DESC, label DESC").fetchall()
    listed = run_cli("events", "--db", str(db))
    assert listed.returncode == 0 and "4 records, newest first" in listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [i[:8] for i, _ in everything]
    one = run_cli("events", "--db", str(db), "--limit", "1")
    assert one.stdout.split()[0] == everything[0][0][:8]  # the newest, not the oldest
    # the id shown is what `feedback --event` takes
    marked = run_cli("feedback", "--db", str(db), "--event", everything[0][0][:8], "--confirm")
    assert marked.returncode == 0, marked.stderr


def test_events_default_db_is_the_example_configs(tiny_model, tmp_path):
    _db_with_records(tiny_model, tmp_path)
    result = run_cli("events", cwd=tmp_path)  # events/events.db, where configs/home.yaml's sqlite sink writes
    assert result.returncode == 0 and "4 records" in result.stderr
    home = (ROOT / "configs" / "home.yaml").read_text()
    assert "path: events/events.db" in home


@pytest.mark.parametrize("args, needle", [
    (["--since", "99999999999d"], "reaches back before the year 1"),
    (["--since", "1e400h"], "neither an ISO-8601 time nor an age"),
    (["--until", "99999999999d"], "reaches back before the year 1"),
])
def test_events_absurd_ages_are_one_line_errors(tiny_model, tmp_path, args, needle):
    db = _db_with_records(tiny_model, tmp_path)
    one_line_error(run_cli("events", "--db", str(db), *args), needle)


def test_events_limit_zero_is_refused(tmp_path):
    result = run_cli("events", "--db", str(tmp_path / "x.db"), "--limit", "0")
    assert result.returncode == 2 and "must be at least 1" in result.stderr and "Traceback" not in result.stderr


def test_events_on_a_file_that_is_not_a_database(tmp_path):
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n" * 100)
    one_line_error(run_cli("events", "--db", str(junk)), "is not an SQLite database")


def test_events_on_a_database_without_records(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE things (x)").connection.commit()
    one_line_error(run_cli("events", "--db", str(other)), "holds no streamdetect records table")


# ------------------------------------------------------------------------------------------------- export and model


def test_export_offline_is_one_line_that_names_model_dir(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli("export", "--out", str(tmp_path / "out"), env=env, timeout=300)
    line = one_line_error(result, "laion/clap-htsat-unfused", "streamdetect export --model DIR")
    assert "\n" not in line and not (tmp_path / "out").exists()


def test_hub_retries_are_one_line_each():
    from streamdetect.export.noise import quiet_export

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect()
    logging.getLogger().addHandler(handler)
    try:
        with quiet_export():
            http = logging.getLogger("huggingface_hub.utils._http")
            for attempt in (1, 2):
                http.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://x/c.json")
                http.warning(f"Retrying in {attempt}s [Retry {attempt}/5].")
            http.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://x/c.json")
    finally:
        logging.getLogger().removeHandler(handler)
    assert records == [f"'[Errno -2] Name or service not known' thrown while requesting HEAD https://x/c.json; "
                       f"retrying in {i}s [Retry {i}/5]." for i in (1, 2)]


def test_export_default_folder_is_the_configs_model(tmp_path):
    assert default_model_dir() == DEFAULT_MODEL_DIR == Path("models/clap-htsat-unfused")
    assert default_model_dir(str(tmp_path)) == DEFAULT_MODEL_DIR  # a local checkpoint folder, any name
    assert default_model_dir("laion/larger_clap_general") == Path("models/larger_clap_general")
    for config in (ROOT / "configs").glob("*.yaml"):
        text = config.read_text()
        model = next(line.split()[1] for line in text.splitlines() if line.startswith("model:"))
        # the ready-made configs read the default export; one for another model (the mini CLAP) says how to
        # export into the folder it reads
        assert model == str(DEFAULT_MODEL_DIR) or f"--out {model}\n" in text, config.name


def test_run_pointed_at_a_checkpoint_says_to_export_from_it(tiny_checkpoint, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_checkpoint, EVENTS)
    result = run_cli("run", "--config", str(cfg), "--input", str(write_tone_scene(tmp_path / "a.wav", 4.0)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a Hugging Face checkpoint" in result.stderr
    assert f"streamdetect export --model {tiny_checkpoint}\n" in result.stderr  # from it, not into it
    assert "--out" not in result.stderr


def test_random_full_size_defaults_to_the_configs_model_folder():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "random_full_size.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "models/clap-htsat-unfused" in result.stdout
    assert "random" in result.stdout.lower()


def test_setup_as_non_root_without_sudo_says_what_it_needs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"id": "echo 1000", "dpkg": "exit 1", "apt-get": "exit 0"}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("dirname", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    result = subprocess.run([str(bin_dir / "bash"), str(repo / "scripts" / "setup.sh")], capture_output=True,
                            text=True, timeout=60, env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "not root and there is no sudo" in result.stderr and "libportaudio2" in result.stderr
    assert not (repo / ".venv").exists()


# ------------------------------------------------------------------------------------------------- verbs


def test_calibrate_keeps_comments_and_says_which_case(tiny_model, tmp_path):
    from test_calibrate import _data

    positives, negatives = _data(tmp_path)
    for wav in (positives / "dog").iterdir():  # the same audio as a negative: no threshold reaches precision 1
        shutil.copy(wav, negatives / f"neg_{wav.name}")
    cfg = tmp_path / "home.yaml"
    cfg.write_text(f"# my station\nmodel: {tiny_model}   # the export\nevents:\n"
                   "  - label: dog    # the neighbours' dog\n    prompts: ['a dog barking']\n    threshold: 0.9\n"
                   "  - label: bell\n    prompts: [\"a bell\"]\n    threshold: 0.5\n")
    result = run_cli("calibrate", "--config", str(cfg), "--positives", str(positives), "--negatives",
                     str(negatives), "--target-precision", "1.0", "--in-place")
    assert result.returncode == 0, result.stderr
    assert "kept the old threshold for bell: no positive clips given" in result.stderr
    assert "kept the old threshold for dog: no threshold reaches the target" in result.stderr
    text = cfg.read_text()
    assert "# my station" in text and "# the neighbours' dog" in text and "# the export" in text
    assert "['a dog barking']" in text and '["a bell"]' in text  # quoting and flow style kept


def test_calibrate_rewrites_only_thresholds_with_comments(tmp_path):
    from streamdetect.cli.analysis import write_thresholds

    cfg = tmp_path / "c.yaml"
    cfg.write_text("# top\nevents:\n  - label: dog   # mine\n    threshold: 0.9   # was a guess\n"
                   "  - label: cat\n    threshold: 0.5\n")
    write_thresholds(cfg, tmp_path / "out.yaml", {"dog": 0.4123}, "calibrated by streamdetect: test")
    text = (tmp_path / "out.yaml").read_text()
    assert text.startswith("# calibrated by streamdetect: test\n# top\n")
    lines = text.splitlines()
    # every line as it was, the changed value's comment kept on its line (ruamel.yaml shifts it by the length)
    assert [" ".join(line.split()) for line in lines[2:]] == [
        "events:", "- label: dog # mine", "threshold: 0.4123 # was a guess", "- label: cat", "threshold: 0.5"]
    assert lines[3].startswith("  - label") and lines[4].startswith("    threshold")


def test_refine_undo_on_an_examples_only_event_says_what_it_uses(tiny_model, tmp_path):
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.prompts.refine import RefinementStore, prompt_key, refinements_dir

    example = write_tone_scene(tmp_path / "bell.wav", seconds=4.0)
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    cfg = write_config(tmp_path / "c.yaml", model, [{"label": "bell", "examples": [str(example)], "threshold": 0.9}])
    bundle = ModelBundle.load(model)
    store = RefinementStore(refinements_dir(bundle))
    store.save("bell", np.ones(bundle.embedding_dim, np.float32) / np.sqrt(bundle.embedding_dim),
               {"prompt_key": prompt_key([], bundle.text_key), "prompts": []})
    result = run_cli("refine", "--config", str(cfg), "--undo", "bell")
    assert result.returncode == 0, result.stderr
    assert "now using its audio examples from the config, unrefined" in result.stdout
    assert "prompts" not in result.stdout.split("now using", 1)[1]


def test_tag_skip_message_is_on_its_own_line(tiny_model, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        write_tone_scene(clips / f"ok{i}.wav", seconds=3.0)
    (clips / "broken.wav").write_bytes(b"not audio at all" * 10)
    result = run_cli("tag", str(clips), "--labels", "dog", "rain", "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    skip = [line for line in result.stderr.replace("\r", "\n").splitlines() if "skipped" in line]
    assert len(skip) == 1 and skip[0].startswith("streamdetect: skipped ") and "broken.wav" in skip[0]
    assert len(result.stdout.splitlines()) == 2


# ------------------------------------------------------------------------------------------------- progress


def test_embedding_many_prompts_shows_a_bar_and_batches_the_text_encoder(tmp_path):
    from streamdetect.prompts.cache import TEXT_BATCH, PromptCache, embed_texts

    calls: list[int] = []

    def encoder(texts):
        calls.append(len(texts))
        return np.random.default_rng(len(calls)).standard_normal((len(texts), 8)).astype(np.float32)

    texts = [f"sound {i}" for i in range(3 * TEXT_BATCH + 5)]
    cache = PromptCache(tmp_path, "k" * 32, 8)
    first = embed_texts(texts, cache, lambda: encoder)
    assert calls == [TEXT_BATCH] * 3 + [5] and first.shape == (len(texts), 8)
    again = embed_texts(texts, cache, lambda: encoder)  # all cached now: the encoder is not called
    assert len(calls) == 4 and np.array_equal(first, again)


def test_a_vocabulary_start_shows_the_progress_bar(tiny_model, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_model, EVENTS, vocabulary={"file": "audioset"},
                       prompt_cache=str(tmp_path / "cache"))
    wav = write_tone_scene(tmp_path / "a.wav", seconds=4.0)
    first = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert first.returncode == 0, first.stderr
    assert "embedding prompts" in first.stderr and "529/529" in first.stderr  # 527 names + 2 prompts
    second = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert second.returncode == 0 and "embedding prompts" not in second.stderr


# ------------------------------------------------------------------------------------------------- microphone


def test_virtual_microphone_tool_sets_up_and_tears_down_a_null_sink(tmp_path):
    for tool in ("pulseaudio", "pactl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: run `bash scripts/setup.sh --dev`")
    proc = subprocess.Popen([sys.executable, "-m", "scripts.virtual_mic"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("export PULSE_SERVER=unix:"), proc.stderr.read() if proc.poll() is not None else line
        env = {**os.environ, "PULSE_SERVER": line.split("=", 1)[1].strip()}
        info = subprocess.run(["pactl", "info"], env=env, capture_output=True, text=True, timeout=30)
        assert "Default Source: streamdetect_virtual.monitor" in info.stdout, info.stdout + info.stderr
        devices = run_cli("devices", env=env)
        assert devices.returncode == 0 and "*" in devices.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    gone = subprocess.run(["pactl", "info"], env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode != 0  # the server was stopped
