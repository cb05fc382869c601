"""Children of the daemon (the command sink's programs, ffmpeg) get no secrets, leave no processes behind and
cannot fill memory with their output; URLs in log lines are masked, query tokens included."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from fakes import HttpReceiver
from helpers import event_record, run_cli, write_config, write_tone_scene

from streamdetect.sinks.base import SinkError
from streamdetect.sinks.command import CommandOptions, CommandSink
from streamdetect.sources.ffmpeg import FfmpegOptions, FfmpegSource
from streamdetect.util.urls import mask_url, scrub

SECRETS = {"STREAMDETECT_CONTROL_TOKEN": "ctl-" + uuid.uuid4().hex, "HOOK_SECRET": "hmac-" + uuid.uuid4().hex,
           "SOME_OTHER_API_KEY": "key-" + uuid.uuid4().hex}


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat") as fh:
                zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if marker in cmdline and not zombie:
            found.append(int(pid))
    return found


def processes_left(marker: str, within_s: float = 5.0) -> list[int]:
    """The processes with ``marker`` still alive after ``within_s``: SIGKILL to a group is delivered
    asynchronously, so a killed process can show in /proc for a moment on a busy machine."""
    deadline = time.monotonic() + within_s
    while (found := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_command_and_ffmpeg_children_get_no_secrets_but_what_pass_env_names(tiny_model, tmp_path):
    receiver = HttpReceiver("ok")
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\nenv > {tmp_path / "ffmpeg.env"}\nexec ffmpeg "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    wav = write_tone_scene(tmp_path / "in.wav", seconds=4.0)
    source = {"type": "ffmpeg", "name": "file", "url": str(wav), "live": False, "ffmpeg": str(wrapper)}
    sinks = [{"type": "webhook", "url": receiver.url, "spool_dir": str(tmp_path / "spool"), "secret_env": "HOOK_SECRET"},
             {"type": "command", "argv": ["sh", "-c", f"env >> {tmp_path / 'command.env'}"], "pass_env": ["STATION"]}]
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a tone"], "threshold": -1.0}],
                       sinks=sinks, sources=[source], runtime={"device": "cpu"})
    try:
        result = run_cli("run", "--config", str(cfg), env={**os.environ, **SECRETS, "STATION": "garden"})
    finally:
        receiver.stop()
    assert result.returncode == 0, result.stderr
    assert len(receiver.records()) == 2  # the daemon itself had the HMAC secret
    for name in ("command.env", "ffmpeg.env"):
        seen = (tmp_path / name).read_text()
        assert "PATH=" in seen, name
        for secret_name, value in SECRETS.items():
            assert value not in seen and f"{secret_name}=" not in seen, (name, secret_name)
    assert "STATION=garden" in (tmp_path / "command.env").read_text()  # named in pass_env
    assert "STATION=" not in (tmp_path / "ffmpeg.env").read_text()


def test_a_command_leaves_no_process_behind_when_it_exits_or_runs_over(tmp_path):
    marker = f"{1000 + int(uuid.uuid4().int % 1000)}.{os.getpid()}"
    sink = CommandSink(CommandOptions(argv=["sh", "-c", f"sleep {marker} & echo started"], timeout_s=30))
    sink.emit(event_record())  # returns when sh exits, although its background sleep holds the pipes
    assert processes_left(f"sleep {marker}") == []

    slow = CommandSink(CommandOptions(argv=["sh", "-c", f"sleep {marker}1 & sleep {marker}2"], timeout_s=1.0))
    with pytest.raises(SinkError, match="ran over 1 s; it and its children were killed"):
        slow.emit(event_record())
    assert processes_left(f"sleep {marker}") == []


OUTPUT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from helpers import event_record
    from streamdetect.sinks.command import CommandOptions, CommandSink

    def hwm_mb():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024

    CommandSink(CommandOptions(argv=["true"])).emit(event_record())
    before = hwm_mb()
    CommandSink(CommandOptions(argv=["head", "-c", "400000000", "/dev/zero"])).emit(event_record())
    print("RESULT", json.dumps({"before": before, "after": hwm_mb()}))
""")


def test_a_command_printing_400_mb_costs_no_memory():
    tests = str(Path(__file__).parent)
    result = subprocess.run([sys.executable, "-c", OUTPUT_SCRIPT, tests, str(Path(tests).parent)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["after"] - out["before"] < 32, out


def test_every_url_in_a_log_line_is_masked_query_tokens_included():
    assert mask_url("rtsp://admin:s3cret@10.0.0.5:554/s1?token=abc&user=x#frag") == \
        "rtsp://admin:***@10.0.0.5:554/s1?token=***&user=***#***"
    assert mask_url("http://host/x.mp3") == "http://host/x.mp3" and mask_url("/srv/a.wav") == "/srv/a.wav"
    assert mask_url("http://[::1/x?token=zz") == "http://***"  # unparsable: nothing of it is shown
    line = "Error opening input http://cam/live?token=tok%2Fen1: 401, token tok/en1"
    assert scrub(line, "http://cam/live?token=tok%2Fen1") == "Error opening input http://cam/live?token=***: 401, token ***"


def test_ffmpeg_log_lines_never_show_a_query_token(caplog):
    """ffmpeg fails on purpose (nothing listens) and prints its input URL; neither our lines nor its own that we
    pass on may show the token."""
    closed = HttpReceiver("hang")
    url = f"http://127.0.0.1:{closed.port}/cam?token=SECRET{uuid.uuid4().hex[:8]}&x=1"
    closed.stop()  # nothing listens there now
    caplog.set_level(logging.DEBUG, logger="streamdetect")
    source = FfmpegSource(FfmpegOptions(url=url, reconnect_min_s=0.05, reconnect_max_s=0.1), 48_000)
    stop = threading.Event()
    consumer = threading.Thread(target=lambda: list(source.blocks(stop)), daemon=True)
    consumer.start()
    deadline = time.monotonic() + 30
    while source.reconnects < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    consumer.join(10)
    text = caplog.text
    assert source.reconnects >= 3 and "cam?token=***&x=***" in text, text
    assert "SECRET" not in text and "SECRET" not in source.name
