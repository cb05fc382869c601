"""A microphone without a sound card: a private PulseAudio server whose default input is a null sink's monitor.

Whatever is played into the sink (``paplay``, or ``--play FILE`` here) arrives at every program that records
from the default input, streamdetect's `microphone` source included (PortAudio -> ALSA -> PulseAudio through
libasound2-plugins). The tests record their "microphone" this way. Needs Debian's pulseaudio,
pulseaudio-utils and libasound2-plugins (``bash scripts/setup.sh --dev`` installs them).

    python -m scripts.virtual_mic [--play recording.wav]   # prints the PULSE_SERVER to export; Ctrl-C stops
    export PULSE_SERVER=unix:/tmp/streamdetect-mic-.../pulse/native    # in a second shell, as printed
    .venv/bin/streamdetect run --config configs/home.yaml --device default
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SINK = "streamdetect_virtual"
TOOLS = ("pulseaudio", "pactl", "paplay")


def server_environment(runtime_dir: Path) -> dict:
    """The environment a private server runs in: its own runtime and state folders, no inherited server."""
    env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}  # a set server blocks starting
    env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    env["PULSE_STATE_PATH"] = str(runtime_dir / "state")  # keep the server's state out of the home directory
    return env


def start_server(server_env: dict, sink: str = SINK) -> dict:
    """Start the server with a 48 kHz mono null sink whose monitor is the default input; the clients'
    environment (``PULSE_SERVER`` set)."""
    subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1", "--daemonize=yes"], env=server_env,
                   check=True, capture_output=True, timeout=30)
    env = {**server_env, "PULSE_SERVER": f"unix:{server_env['XDG_RUNTIME_DIR']}/pulse/native"}
    for cmd in (["pactl", "load-module", "module-null-sink", f"sink_name={sink}", "rate=48000", "channels=1"],
                ["pactl", "set-default-sink", sink], ["pactl", "set-default-source", f"{sink}.monitor"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=30)
    return env


def stop_server(server_env: dict, timeout_s: float = 30) -> None:
    """Stop the server and wait until it is really gone (``--kill`` only sends the signal)."""
    subprocess.run(["pulseaudio", "--kill"], env=server_env, capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout_s
    while subprocess.run(["pulseaudio", "--check"], env=server_env, capture_output=True, timeout=30).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("pulseaudio did not exit")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--play", type=Path, help="play this file into the virtual microphone, in a loop "
                        "(default: silence until you paplay something)")
    args = parser.parse_args()
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"virtual_mic: {', '.join(missing)} not found: apt-get install pulseaudio pulseaudio-utils "
              "libasound2-plugins (bash scripts/setup.sh --dev installs them)", file=sys.stderr)
        return 1
    runtime = Path(tempfile.mkdtemp(prefix="streamdetect-mic-"))
    runtime.chmod(0o700)
    server_env = server_environment(runtime)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        env = start_server(server_env)
        print(f"export PULSE_SERVER={env['PULSE_SERVER']}", flush=True)
        print("# virtual microphone ready: play into it with PULSE_SERVER=... paplay FILE; "
              "record with streamdetect run --device default. Ctrl-C stops it.", file=sys.stderr, flush=True)
        player = None
        while not stop.wait(0.2):
            if args.play and (player is None or player.poll() is not None):
                player = subprocess.Popen(["paplay", str(args.play)], env=env)
        if player is not None and player.poll() is None:
            player.terminate()
            player.wait(timeout=10)
    finally:
        stop_server(server_env)
        shutil.rmtree(runtime, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
