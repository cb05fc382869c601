"""SIGHUP against a real daemon: a bad config never ends it, start-up hangups are queued, open events end.

The daemon listens to a live ffmpeg source (a noise file looped with ``-re``, so it runs until stopped) and
writes jsonl. Its one event has threshold -1, so it starts on the first window and stays open: an event
that must get its ``end`` when the daemon stops.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from helpers import SAMPLE_RATE, CliRun

ALWAYS_ON = {"label": "always", "prompts": ["a dog barking"], "threshold": -1.0, "hysteresis": 0.0,
             "cooldown_s": 0.0}


def daemon_config(tmp_path: Path, model: Path, events: list[dict] | None = None, **extra) -> Path:
    noise = tmp_path / "noise.wav"
    if not noise.exists():
        rng = np.random.default_rng(0)
        sf.write(noise, (0.05 * rng.standard_normal(4 * SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
    data = {"model": str(model), "runtime": {"device": "cpu"}, "events": events or [ALWAYS_ON],
            "sources": [{"type": "ffmpeg", "name": "loop", "url": str(noise), "live": True,
                         "input_args": ["-re", "-stream_loop", "-1"]}],
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}], **extra}
    path = tmp_path / "daemon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_records(tmp_path: Path, phase: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(r["phase"] == phase for r in records(tmp_path)):
        assert time.monotonic() < deadline, f"no {phase} record"
        time.sleep(0.1)


BAD_VALUES = [
    "  - label: 2024-02-30\n    prompts: [x]\n    threshold: 0.2\n",
    "  - label: a\n    prompts: [x]\n    threshold: !!int 'zz'\n",
    "  - label: a\n    prompts: [x]\n    threshold: 0.2\n    examples: ['~nosuchuser/a.wav']\n",
    "  - label: a\n    prompts: [x]\n    threshold: !!timestamp 'x'\n",
]


def test_bad_reloads_keep_the_daemon_and_its_open_event_then_a_good_one_applies(tiny_model, tmp_path):
    config = daemon_config(tmp_path, tiny_model)
    good = config.read_text()
    daemon = CliRun("run", "--config", str(config))
    try:
        daemon.wait_for("listening to", 120)
        wait_records(tmp_path, "start")
        for i, bad in enumerate(BAD_VALUES, 1):
            head, _ = good.split("events:\n", 1)
            config.write_text(head + "events:\n" + bad)
            daemon.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while daemon.log.count("config reload rejected") < i:
                assert daemon.proc.poll() is None, daemon.log
                assert time.monotonic() < deadline, daemon.log
                time.sleep(0.05)
        assert daemon.log.count("config reload rejected, the running config stays") == len(BAD_VALUES)
        for key in ("events[0].label", "events[0].threshold", "events[0].examples"):
            assert f"{config}: {key}: " in daemon.log, daemon.log
        data = yaml.safe_load(good)
        data["events"].append({**ALWAYS_ON, "label": "second"})
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("config reload applied: events always, second", 60)
        wait_records(tmp_path, "start")
    finally:
        rc = daemon.stop()
    assert rc == 0 and "Traceback" not in daemon.log, daemon.log
    phases = [(r["label"], r["phase"]) for r in records(tmp_path)]
    assert ("always", "start") in phases and ("always", "end") in phases, phases


def _numpy_loaded(pid: int) -> bool:
    try:
        return "numpy" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_sighup_during_the_imports_is_queued_not_fatal(tiny_model, tmp_path):
    """numpy is mapped while the CLI is imported, long before ``run`` could install a handler."""
    config = daemon_config(tmp_path, tiny_model)
    daemon = CliRun("run", "--config", str(config))
    try:
        deadline = time.monotonic() + 60
        while not _numpy_loaded(daemon.proc.pid):
            assert daemon.proc.poll() is None and time.monotonic() < deadline, daemon.log
            time.sleep(0.002)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("listening to", 120)
        daemon.wait_for("config reload applied", 60)
        assert daemon.proc.poll() is None
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log


def test_sighup_while_prompts_are_embedded_is_applied_once_detection_runs(tiny_model, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("".join(f"sound number {i}\n" for i in range(3000)))
    config = daemon_config(tmp_path, tiny_model, vocabulary={"file": str(names)},
                           prompt_cache=str(tmp_path / "cache"))
    daemon = CliRun("run", "--config", str(config))
    try:
        daemon.wait_for("prompt(s) with the text encoder", 120)
        data = yaml.safe_load(config.read_text())
        data["events"].append({**ALWAYS_ON, "label": "second"})
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("config reload applied: events always, second", 120)
        queued = daemon.log.index("reload of") if "reload of" in daemon.log else None
        listening = daemon.log.index("listening to")
        assert queued is not None and queued < listening, daemon.log  # it did arrive during start-up
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log


def test_the_latch_holds_a_hangup_until_a_verb_that_does_not_reload_gives_it_back():
    """Only the daemon turns SIGHUP into a reload; for any other verb the held hangup ends the process as
    the default action would have."""
    code = ("import os, signal\nfrom streamdetect.util.signals import HangupLatch\nlatch = HangupLatch()\n"
            "os.kill(os.getpid(), signal.SIGHUP)\nprint('survived', latch.caught, flush=True)\n"
            "latch.restore_default()\nprint('not reached')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "survived 1" in result.stdout and "not reached" not in result.stdout, result
    assert result.returncode == -signal.SIGHUP


class Boom(Exception):
    pass


def _main_thread_scenario(model: str) -> str:
    """Run detection until a SIGALRM handler raises in the main thread; "<stop set> <phases>"."""
    from fakes import LiveSource
    from helpers import FakeEncoder, immediate_event, make_detector

    from streamdetect.daemon.engine import run_sources

    detector, sink = make_detector(Path(model), [immediate_event("always", threshold=-1.0)],
                                   encoder=FakeEncoder.for_model(Path(model)))
    stop = threading.Event()

    def boom(_signum, _frame):
        if any(r.phase == "start" for r in sink.records):
            raise Boom
        signal.setitimer(signal.ITIMER_REAL, 0.1)

    previous = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    raised = False
    try:
        run_sources(detector, [LiveSource(name="endless", block_s=0.25, pace_s=0.0625)], stop)  # silence, 4x real time
    except Boom:
        raised = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return f"raised={raised} stop={stop.is_set()} phases={','.join(r.phase for r in sink.records)}"


def test_open_events_end_even_when_the_main_thread_is_ended_by_an_exception(tiny_model):
    """A signal handler that raises (as SIGHUP's used to) unwinds run_sources: the event still gets its end.

    In a fresh interpreter: a timer signal every 0.1 s in a pytest worker that has run native code for many
    other tests once ended the worker with SIGSEGV."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"from test_reload import _main_thread_scenario\nprint(_main_thread_scenario({str(tiny_model)!r}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "raised=True stop=True phases=start,end" in result.stdout, result
