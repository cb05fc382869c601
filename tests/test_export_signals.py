"""``export`` stopped by SIGTERM or Ctrl-C removes its ``.out.*`` staging folder and says so in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streamdetect.util.signals import SignalExit, StopSignals


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


def test_a_signal_caught_inside_a_library_still_ends_the_work_at_its_next_step():
    """torch.export hands an exception of one capture strategy to the next: a signal raised there is caught and
    the export would go on to completion; ``StopSignals.check()`` at the next step ends it all the same."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stops = StopSignals()
        stops.check()  # nothing caught yet
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                os.kill(os.getpid(), signum)
                time.sleep(1)  # the handler runs here, in the main thread
            except BaseException as e:  # a library's catch-all
                assert isinstance(e, SignalExit) and e.signum == signum
            with pytest.raises(SignalExit) as raised:
                stops.check()
            assert raised.value.signum == signum
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
