"""The console entry point (``streamdetect`` and ``python -m streamdetect``).

It installs its signal handlers before importing the CLI, whose imports (numpy, onnxruntime, pydantic ...) take
most of a second: a hangup in that time is remembered instead of ending the process (``HangupLatch``), and
Ctrl-C or SIGTERM end it with the one line and exit status (128 + the signal) they give later, not with a
``KeyboardInterrupt`` traceback from inside an import or a bare kill (``StopSignals``). Those two handlers stay
until a verb installs its own (``run`` stops gracefully; ``export`` removes its staging folder).
"""

from __future__ import annotations


def main() -> int:
    from streamdetect.util.signals import HangupLatch, SignalExit, StopSignals, interrupted

    latch = HangupLatch()
    stops = StopSignals()
    try:
        from streamdetect.cli import main as cli_main

        stops.check()  # a signal an importing library caught (and swallowed) still ends the start
    except SignalExit as e:
        return interrupted(e.signum, None)
    return cli_main(hangups=latch)
