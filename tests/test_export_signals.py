"""``export`` stopped by SIGTERM or Ctrl-C removes its ``.out.*`` staging folder and says so in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_export_leaves_no_staging_folder_and_no_traceback(tiny_checkpoint, tmp_path, signum):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "streamdetect", "export", "--model", str(tiny_checkpoint),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob(".out.*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"streamdetect: export interrupted by {signal.Signals(signum).name}"
    assert list(tmp_path.glob(".out.*")) == [] and not (out / "manifest.json").exists()


CAUGHT_BY_A_LIBRARY = """
import os, signal, sys, time
from streamdetect.util.signals import StopSignals

stops = StopSignals()
stops.check()  # nothing caught yet
signum = int(sys.argv[1])
try:
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler runs here
except BaseException as e:  # a library's catch-all
    print("CAUGHT", type(e).__name__, e.signum)
stops.check()
print("NOT STOPPED")
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_caught_inside_a_library_still_ends_the_work_at_its_next_step(signum):
    """torch.export hands an exception of one capture strategy to the next: a signal raised there is caught and
    the export would go on to completion; ``StopSignals.check()`` at the next step ends it all the same.
    (In a child: the signal goes to a whole process, which under pytest-xdist is a worker.)"""
    result = subprocess.run([sys.executable, "-c", CAUGHT_BY_A_LIBRARY, str(int(signum))], capture_output=True,
                            text=True, timeout=60)
    assert f"CAUGHT SignalExit {int(signum)}" in result.stdout, result.stdout + result.stderr
    assert "NOT STOPPED" not in result.stdout and "SignalExit" in result.stderr, result.stdout + result.stderr


def _handles_sigterm(pid: int) -> bool:
    """The process installed a SIGTERM handler (its SigCgt mask has the bit): the entry point's first step."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def _numpy_loaded(pid: int) -> bool:
    return "numpy" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_program_still_imports_gives_one_line_and_128_plus_the_signal(signum):
    """Sent as soon as the entry point has its handlers, before numpy is even mapped: the imports' 0.3 s used to
    end in a ``KeyboardInterrupt`` traceback (rc -2), or a bare kill for SIGTERM (rc -15)."""
    proc = subprocess.Popen([sys.executable, "-m", "streamdetect", "devices"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _handles_sigterm(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.001)
        early = not _numpy_loaded(proc.pid)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert early  # it did arrive during the imports
    assert proc.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines() == [f"streamdetect: interrupted while starting by {signal.Signals(signum).name}"]
