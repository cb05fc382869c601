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

# uv (from PyPI, into the venv) installs the packages: it downloads in parallel and keeps unpacked wheels in its
# cache (pip kept none here). `setup.sh --dev` into fresh venvs on a busy 2-core machine: pip 7:55, uv 5:09 with an
# empty cache, uv 1:39 with its cache from an earlier run.
# The interpreter's own pip (22.3+ has --python) puts it into a venv made without pip, which saves ensurepip's
# bootstrap (20 s on a busy 2-core machine); the venv's pip comes from uv's cache after that.
python3 -m venv --without-pip .venv
if python3 -m pip --python .venv/bin/python --version >/dev/null 2>&1; then
  python3 -m pip --python .venv/bin/python install -q uv
else
  .venv/bin/python -m ensurepip -q && .venv/bin/python -m pip install -q uv
fi
# uv does not read pip's configuration: hand it the wheel folders pip is configured with (find-links), where a
# machine may keep a CPU build of torch.
links=()
for link in $(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p" | sort -u); do
  links+=(--find-links "$link")
done
install() { .venv/bin/uv pip install -q "${links[@]}" "$@"; }
extras="export,openvino,web"
[[ $dev == 1 ]] && extras="export,openvino,web,dev"
# Pinned: an unpinned torch pulls a multi-GB CUDA build; export runs fine on the CPU.
install --python .venv/bin/python pip "torch==2.13.0" -e ".[$extras]"
if [[ $dev == 1 ]]; then
  # A venv of its own for the tritonserver of the `triton` tests: nvidia-pytriton's Python backend needs numpy < 2
  # (streamdetect's venv has numpy 2). It serves the exported ONNX through onnxruntime on the CPU.
  "$triton_python" -m venv --without-pip .venv-triton
  install --python .venv-triton/bin/python "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime>=1.17"
fi
echo "streamdetect installed in .venv ($(.venv/bin/streamdetect --version))"
