"""``export`` stopped by SIGTERM or Ctrl-C removes its ``.out.*`` staging folder and says so in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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
