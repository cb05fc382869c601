#!/usr/bin/env bash
# Installs streamdetect into ./.venv on a fresh machine: system audio libraries first (Debian/Ubuntu, as root or
# with sudo), then torch's CPU wheel and the package with its export and openvino extras (and test tools
# with --dev).
# usage: bash tools/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

packages="libportaudio2"
# The microphone test plays audio into a PulseAudio null sink and records it back through PortAudio/ALSA.
# The MQTT test talks to a real Mosquitto broker on loopback; the ffmpeg source tests run Debian's ffmpeg.
[[ $dev == 1 ]] && packages="$packages pulseaudio pulseaudio-utils libasound2-plugins mosquitto ffmpeg"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [[ -n "$missing" ]]; then
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then
      if ! command -v sudo >/dev/null 2>&1; then
        echo "tools/setup.sh: needs these Debian packages:$missing" >&2
        echo "  you are not root and there is no sudo: run 'apt-get install$missing' as root, then run this again" >&2
        exit 1
      fi
      sudo="sudo"
      echo "tools/setup.sh: installing$missing with sudo (it may ask for your password)" >&2
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
  fi
else
  echo "tools/setup.sh: no apt-get here; install PortAudio yourself (macOS: brew install portaudio)" >&2
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned: an unpinned torch pulls a multi-GB CUDA build; export runs fine on the CPU.
.venv/bin/python -m pip install -q "torch==2.13.0"
extras="export,openvino"
[[ $dev == 1 ]] && extras="export,openvino,dev"
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "streamdetect installed in .venv ($(.venv/bin/streamdetect --version))"
