"""How streamdetect starts other programs (the command sink's, ffmpeg): a clean environment, their own process
group, bounded output.

- **Environment.** A child gets only an allow-list of the daemon's environment (``PATH``, locale, ``HOME`` and
  the like, plus what the config names in ``pass_env``), never the rest: the control API token, the webhook's
  HMAC secret, the MQTT password and whatever else the service was given stay in the daemon, whatever their
  variable names are.
- **Process group.** Each child leads a new session, so a program that starts its own children
  (``sh -c "sleep 1000 & echo"``) is killed with all of them when it runs over its timeout or when it exits.
- **Output.** At most ``max_output_bytes`` of its stdout and stderr are kept; the rest is read and discarded,
  so ``head -c 400000000 /dev/zero`` costs a pipe buffer, not 400 MB.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# What a child may see of the daemon's environment unless the config passes more: enough to find programs,
# speak the locale, reach a desktop session or a proxy, and find TLS certificates.
PASSED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
                    "DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "PULSE_SERVER",
                    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                    "SSL_CERT_FILE", "SSL_CERT_DIR", "LD_LIBRARY_PATH"})


def child_env(pass_env: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: the allow-list (``PASSED`` and ``LC_*``) plus the names in ``pass_env``."""
    environ = os.environ if environ is None else environ
    wanted = set(pass_env)
    return {k: v for k, v in environ.items() if k in PASSED or k.startswith("LC_") or k in wanted}


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (it leads its own session), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes  # the first max_output_bytes
    stderr: bytes  # the last max_output_bytes
    timed_out: bool
    output_bytes: int  # all of stdout and stderr, also what was not kept


def run_bounded(argv: list[str], stdin: bytes, timeout_s: float, env: dict[str, str],
                max_output_bytes: int = 64 * 1024) -> Finished:
    """Run ``argv`` (no shell) in its own session with ``stdin``; kill its process group on timeout and once it
    exited (what it left running in the background goes with it). Raises ``OSError`` if it cannot start."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True, close_fds=True)
    # PIPE opens all three; Popen types them Optional for the other modes
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin_w, stdout_r = proc.stdin, proc.stdout
    out, err = bytearray(), bytearray()
    total, timed_out = 0, False
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        for fh in (proc.stdout, proc.stderr):
            os.set_blocking(fh.fileno(), False)
            sel.register(fh, selectors.EVENT_READ)
        if stdin:
            os.set_blocking(stdin_w.fileno(), False)
            sel.register(stdin_w, selectors.EVENT_WRITE)
        else:
            stdin_w.close()
        pending = memoryview(stdin)
        exited_at: float | None = None
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break  # its pipes are held open by something it left behind: the group is killed below
            for key, _ in sel.select(min(0.1, deadline - now)):
                if key.fileobj is stdin_w:
                    try:
                        pending = pending[os.write(key.fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(stdin_w)
                        stdin_w.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                total += len(chunk)
                if key.fileobj is stdout_r:
                    out += chunk[: max_output_bytes - len(out)]
                else:
                    err = (err + chunk)[-max_output_bytes:]
    kill_group(proc)
    for fh in (proc.stdin, proc.stdout, proc.stderr):
        if fh is not None and not fh.closed:
            fh.close()
    return Finished(proc.returncode, bytes(out), bytes(err), timed_out, total)
