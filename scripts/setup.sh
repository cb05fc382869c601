#!/usr/bin/env bash
# Installs streamdetect into ./.venv on a fresh machine: system audio libraries first (Debian/Ubuntu, as root or
# with sudo), then torch's CPU wheel and the package with its export and openvino extras (and test tools
# with --dev, plus .venv-triton: the tritonserver of the `triton` tests, from the nvidia-pytriton wheel).
# usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

packages="libportaudio2"
# The microphone test plays audio into a PulseAudio null sink and records it back through PortAudio/ALSA.
# The MQTT test talks to a real Mosquitto broker on loopback; the ffmpeg source tests run Debian's ffmpeg.
# The metrics test lints a scrape with promtool (Debian's prometheus); the unit test runs systemd-analyze.
[[ $dev == 1 ]] && packages="$packages pulseaudio pulseaudio-utils libasound2-plugins mosquitto ffmpeg prometheus systemd"
# The dashboard's browser tests drive Debian's headless chromium through its chromedriver.
[[ $dev == 1 ]] && packages="$packages chromium chromium-driver"
# The Triton tests run the tritonserver bundled in nvidia-pytriton; its Python backend stub links the system's
# libpython of the same version as the interpreter that makes .venv-triton.
triton_python=$(command -v /usr/bin/python3 || command -v python3)
[[ $dev == 1 && $triton_python == /usr/bin/python3 ]] && packages="$packages python3-venv"
[[ $dev == 1 ]] && packages="$packages libpython$("$triton_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [[ -n "$missing" ]]; then
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then
      if ! command -v sudo >/dev/null 2>&1; then
        echo "scripts/setup.sh: needs these Debian packages:$missing" >&2
        echo "  you are not root and there is no sudo: run 'apt-get install$missing' as root, then run this again" >&2
        exit 1
      fi
      sudo="sudo"
      echo "scripts/setup.sh: installing$missing with sudo (it may ask for your password)" >&2
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
  fi
else
  echo "scripts/setup.sh: no apt-get here; install PortAudio yourself (macOS: brew install portaudio)" >&2
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned: an unpinned torch pulls a multi-GB CUDA build; export runs fine on the CPU.
.venv/bin/python -m pip install -q "torch==2.13.0"
extras="export,openvino,web"
[[ $dev == 1 ]] && extras="export,openvino,web,dev"
.venv/bin/python -m pip install -q -e ".[$extras]"
if [[ $dev == 1 ]]; then
  # A venv of its own for the tritonserver of the `triton` tests: nvidia-pytriton's Python backend needs numpy < 2
  # (streamdetect's venv has numpy 2). It serves the exported ONNX through onnxruntime on the CPU.
  "$triton_python" -m venv .venv-triton
  .venv-triton/bin/python -m pip install -q --upgrade pip
  .venv-triton/bin/python -m pip install -q "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime>=1.17"
fi
echo "streamdetect installed in .venv ($(.venv/bin/streamdetect --version))"
