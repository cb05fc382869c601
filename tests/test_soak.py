"""The soak tool, run short: its checks (nothing dropped, nothing lost, no leaked descriptors) must hold."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_short_soak_loses_nothing_and_leaks_no_descriptors(tiny_model, tmp_path):
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, "-m", "bench.soak", "--model", str(tiny_model),
                             "--hours", "0.1", "--sample-every-s", "0.2", "--json", str(out),
                             "--plot", str(tmp_path / "soak.png")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["audio_hours"] == 0.1 and report["windows"] == 358  # 360 s, 3 s windows every 1 s
    # a 5 s tone every 30 s: 12 events, each a start and an end, in every sink
    assert report["records"] == 24 and report["unmatched_starts"] == 0
    assert report["lost_records"] == {"jsonl": 0, "sqlite": 0, "webhook": 0}
    assert report["dropped_windows"] == 0 and report["sqlite_integrity"] == "ok"
    assert not any(report["sink_failures"].values())
    assert report["open_fds"]["end"] <= report["open_fds"]["before"]
    assert report["samples"] >= 2
    # the memory criterion is reported with both halves of the curve (a 6-minute run says nothing of days)
    memory = report["memory"]
    assert set(memory) == {"rule", "after_warmup_mb_per_day", "first_half_mb_per_day", "second_half_mb_per_day",
                           "holds"}
    assert report["cpu"] and "c_heap_free_growth_mb_per_day" in report
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the curves, drawn from the run
