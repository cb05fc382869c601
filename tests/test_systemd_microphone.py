"""The daemon records the microphone while it runs under the hardened unit, started by a real systemd.

systemd boots as PID 1 of a fresh PID, mount and UTS namespace (``unshare``; the tests run as root, as CI
does). Before it boots, that namespace gets its own ``/run``, ``/tmp``, ``/var/tmp``, ``/var/lib`` (tmpfs) and
``/opt`` and a private copy of ``/etc``, so nothing of this machine is changed: not its ``/tmp`` (which systemd's
tmpfiles would empty), not its users, not its units. Then the install steps of
``deploy/systemd/streamdetect.service`` are followed inside it: ``useradd`` the ``streamdetect`` system user in
group ``audio``, copy the unit unchanged, write ``/etc/streamdetect/config.yaml`` and the ``env`` file, and
add the PulseAudio drop-in docs/operations/systemd.md gives. The only other drop-in points the unit at this
checkout instead of a pip install in ``/opt/streamdetect/.venv``, boots without the rest of the OS (no
``sysinit.target``), and writes the service's output to a file.

The microphone is a PulseAudio null sink on this machine (there is no sound card here: ``DeviceAllow=char-alsa``
cannot be exercised); its socket is bound where a desktop user's session socket lives
(``/run/user/1000/pulse``), which ``ProtectHome=yes`` would hide. A tone played into the sink must come out as an
event in ``/var/lib/streamdetect`` (the unit's StateDirectory), with the files 0640 (UMask 0027), while the
daemon runs as ``streamdetect`` with no capabilities, no new privileges and its seccomp filter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from helpers import tone_events

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy/systemd/streamdetect.service"
SR = 48_000
TONE_HZ = 3000.0

# Run as PID 1 of the new namespaces: private mounts first, then the unit's install steps, then systemd.
BOOT = r"""#!/bin/bash
set -euo pipefail
H=/run/sdtest/host
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p $H /run/sdtest/checkout && mount --bind "$1" $H && mount --bind "$2" /run/sdtest/checkout  # before /tmp goes
for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $d; done
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir -p /var/lib/streamdetect && mount --bind $H/state /var/lib/streamdetect
mount -t tmpfs -o mode=0755 tmpfs /opt
mkdir -p /opt/streamdetect && mount --bind -o ro /run/sdtest/checkout /opt/streamdetect
mkdir -p /run/user/1000/pulse && mount --bind $H/pulse /run/user/1000/pulse
cp -a /etc /run/sdtest/etc && mount --bind /run/sdtest/etc /etc
getent group audio >/dev/null || groupadd --system audio
useradd --system --user-group --home-dir /var/lib/streamdetect --groups audio streamdetect
install -d -m 0750 -g streamdetect /etc/streamdetect
install -m 0640 -g streamdetect $H/config.yaml /etc/streamdetect/config.yaml
cp -r $H/model /etc/streamdetect/model && chmod -R a+rX /etc/streamdetect/model
install -m 0600 /dev/null /etc/streamdetect/env
cp /opt/streamdetect/deploy/systemd/streamdetect.service /etc/systemd/system/
mkdir -p /etc/systemd/system/streamdetect.service.d
cp $H/pulse.conf $H/checkout.conf /etc/systemd/system/streamdetect.service.d/
cp $H/sdtest.target /etc/systemd/system/
exec env -i container=streamdetect-test /lib/systemd/systemd --system --unit=sdtest.target
"""

TARGET = """[Unit]
Description=streamdetect under its unit, nothing else
Wants=streamdetect.service
"""


def pulse_dropin() -> str:
    """The drop-in of docs/operations/systemd.md, as the docs give it (the test fails if the docs change)."""
    doc = (ROOT / "docs/operations/systemd.md").read_text()
    block = doc.split("```ini\n", 1)[1].split("```", 1)[0]
    assert "BindReadOnlyPaths=/run/user/1000/pulse" in block, block
    return block


def checkout_dropin(log: str) -> str:
    """Point the unit at this checkout. The venv's interpreter may live under /root (pyenv), which the unit's
    ProtectHome hides, so it is bound in read-only; on a station the venv is made from /usr/bin/python3."""
    base = Path(sys.base_prefix).resolve()
    bind = f"BindReadOnlyPaths={base}\n" if str(base).startswith(("/root", "/home", "/run/user")) else ""
    venv = Path(sys.prefix).relative_to(ROOT) if Path(sys.prefix).is_relative_to(ROOT) else None
    assert venv is not None, f"the tests' venv ({sys.prefix}) is not inside the checkout ({ROOT})"
    return f"""[Unit]
DefaultDependencies=no
[Service]
ExecStart=
ExecStart=/opt/streamdetect/{venv}/bin/python -m streamdetect run --config /etc/streamdetect/config.yaml --device default --log-json
Environment=PYTHONPATH=/opt/streamdetect
{bind}StandardOutput=append:{log}
StandardError=inherit
Restart=no
"""


def tone_file(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32), SR, subtype="PCM_16")
    return path


class Namespace:
    """systemd as PID 1 of its own namespaces; every command in it goes through nsenter."""

    def __init__(self, host: Path):
        self.log = open(host / "boot.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["unshare", "--fork", "--pid", "--mount", "--mount-proc", "--uts",
                                      "--propagation", "private", str(host / "boot.sh"), str(host), str(ROOT)],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid1 = 0

    def _child(self) -> int:
        """The namespace's PID 1 as this side sees it (unshare's child: the boot script, then systemd), or 0."""
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return int(children.split()[0]) if children.split() else 0

    def wait_booted(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the namespace's boot script failed: see boot.log"
            self.pid1 = self._child()
            if self.pid1 and self.run("systemctl", "is-system-running",
                                      check=False).stdout.strip() in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise AssertionError("systemd did not finish booting in the namespace")

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-p", "--", *cmd], capture_output=True,
                                text=True, timeout=60)
        if check:
            assert result.returncode == 0, (cmd, result.stdout, result.stderr)
        return result

    def stop(self) -> None:
        pid1 = self.pid1 or self._child()  # also when the boot never finished
        if pid1:
            os.kill(pid1, 9)  # PID 1 of the namespace: everything in it dies, its mounts go with it
        elif self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def anonymous_pulse(pulse, tmp_path):
    """A second socket on the test's PulseAudio server that any local user may use (the docs' station option
    ``module-native-protocol-unix auth-anonymous=1``): the service user has no cookie."""
    folder = tmp_path / "host" / "pulse"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    loaded = subprocess.run(["pactl", "load-module", "module-native-protocol-unix", "auth-anonymous=1",
                             f"socket={folder / 'native'}"], env=pulse, capture_output=True, text=True, timeout=30)
    assert loaded.returncode == 0, loaded.stderr
    (folder / "native").chmod(0o777)
    yield folder
    subprocess.run(["pactl", "unload-module", loaded.stdout.strip()], env=pulse, capture_output=True, timeout=30)


def test_the_daemon_hears_the_microphone_under_the_hardened_unit(pulse, anonymous_pulse, tiny_model, tmp_path):
    for tool in ("unshare", "nsenter", "useradd", "/lib/systemd/systemd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: run `bash scripts/setup.sh --dev` (Debian systemd, util-linux, passwd)")
    if os.geteuid() != 0:
        pytest.fail("this test boots systemd in its own namespaces and needs root (CI runs as root)")
    host = tmp_path / "host"
    (host / "state").mkdir()
    shutil.copytree(tiny_model, host / "model", ignore=shutil.ignore_patterns("prompt_cache", ".verified.json"))
    config = {"model": "/etc/streamdetect/model", "events": tone_events(tiny_model),
              "sinks": [{"type": "jsonl", "path": "events.jsonl"}], "runtime": {"device": "cpu"}}
    (host / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (host / "pulse.conf").write_text(pulse_dropin())
    (host / "checkout.conf").write_text(checkout_dropin("/run/sdtest/host/service.log"))
    (host / "sdtest.target").write_text(TARGET)
    (host / "boot.sh").write_text(BOOT)
    (host / "boot.sh").chmod(0o755)

    ns = Namespace(host)
    player = None
    try:
        ns.wait_booted(60)
        service_log = host / "service.log"
        deadline = time.monotonic() + 90
        while "recording from" not in (service_log.read_text() if service_log.exists() else ""):
            state = ns.run("systemctl", "show", "-P", "ActiveState", "streamdetect.service").stdout.strip()
            assert state in ("active", "activating"), (state, service_log.read_text() if service_log.exists()
                                                       else (host / "boot.log").read_text())
            assert time.monotonic() < deadline, "the daemon never started recording"
            time.sleep(0.2)
        main_pid = ns.run("systemctl", "show", "-P", "MainPID", "streamdetect.service").stdout.strip()
        status = dict(line.split(":\t", 1) for line in ns.run("cat", f"/proc/{main_pid}/status").stdout.splitlines()
                      if ":\t" in line)
        time.sleep(4.5)  # the first windows are silence: nothing may fire
        events = host / "state" / "events.jsonl"
        assert not events.exists() or events.read_text() == "", events.read_text()
        player = subprocess.Popen(["paplay", str(tone_file(tmp_path / "tone.wav", 5.0))], env=pulse)
        deadline = time.monotonic() + 40
        while not (events.exists() and '"start"' in events.read_text()):
            assert time.monotonic() < deadline, service_log.read_text()
            time.sleep(0.2)
        player.wait(timeout=30)
        ns.run("systemctl", "stop", "streamdetect.service")  # SIGTERM: the open event is closed
        result = ns.run("systemctl", "show", "-P", "Result", "streamdetect.service").stdout.strip()
        exposure = ns.run("systemd-analyze", "security", "--no-pager", "streamdetect.service").stdout
    finally:
        if player is not None and player.poll() is None:
            player.kill()
        ns.stop()

    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["phase"] for r in records][:2] == ["start", "end"], (records, service_log.read_text())
    assert records[0]["label"] == "tone" and records[0]["stream"].startswith("mic:")
    assert result == "success", service_log.read_text()
    # the daemon ran as the service user, with the unit's sandbox in force
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    uid = int(status["Uid"].split()[0])
    assert uid != 0 and events.stat().st_uid == uid
    assert events.stat().st_mode & 0o777 == 0o640  # UMask=0027
    score = float(exposure.strip().splitlines()[-1].split("exposure level for streamdetect.service:")[1].split()[0])
    assert score <= 2.5, exposure
