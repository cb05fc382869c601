"""Signals that arrive before the program is ready for them.

Python starts with SIGHUP's default action, which ends the process. Importing numpy, onnxruntime and the
rest takes most of a second, so ``systemctl reload`` right after a start used to kill the daemon. The entry
point installs a ``HangupLatch`` before any heavy import; ``streamdetect run`` then turns what it caught into
a queued reload, and every other verb gets the default back (with a caught hangup delivered again).
"""

from __future__ import annotations

import os
import signal
import sys


class HangupLatch:
    """Counts SIGHUPs until someone takes over the signal."""

    def __init__(self) -> None:
        self.caught = 0
        self.installed = hasattr(signal, "SIGHUP")
        if self.installed:
            signal.signal(signal.SIGHUP, self._caught)

    def _caught(self, _signum: int, _frame: object) -> None:
        self.caught += 1

    def restore_default(self) -> None:
        """Back to the default action; a hangup caught meanwhile is delivered again (and ends the process)."""
        if not self.installed:
            return
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if self.caught:
            os.kill(os.getpid(), signal.SIGHUP)


class SignalExit(BaseException):
    """Raised from a SIGTERM handler by work that must clean up on the way out (``finally`` blocks run)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT and SIGTERM raise ``SignalExit`` and are remembered, for long work inside libraries (the export).

    The exception is raised wherever the main thread is, which may be inside a library that catches it (one
    ``torch.export`` capture strategy failing hands over to the next) or that turns Ctrl-C into a self-kill at
    exit (CPython does so for a ``KeyboardInterrupt`` raised in code it runs with ``PyRun_*``). ``check()`` at the
    work's next step raises it again, so a caught signal always ends the work, with exit status 128 + signal."""

    def __init__(self, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.caught: int | None = None
        for signum in signums:
            signal.signal(signum, self._caught)

    def _caught(self, signum: int, _frame: object) -> None:
        self.caught = signum
        raise SignalExit(signum)

    def check(self) -> None:
        if self.caught is not None:
            raise SignalExit(self.caught)


def interrupted(signum: int, command: str | None) -> int:
    """The one line a verb ended by a signal leaves (never a traceback), and its exit status, 128 + the signal;
    ``command`` None: the program was still starting (importing its libraries)."""
    what = f"{command} interrupted" if command else "interrupted while starting"
    print(f"streamdetect: {what} by {signal.Signals(signum).name}", file=sys.stderr)
    return 128 + signum
