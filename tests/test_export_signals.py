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
