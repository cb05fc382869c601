"""The console entry point (``streamdetect`` and ``python -m streamdetect``).

It installs the SIGHUP latch before importing the CLI, whose imports (numpy, onnxruntime, pydantic ...) take
most of a second: a hangup in that time is remembered instead of ending the process.
"""

from __future__ import annotations


def main() -> int:
    from streamdetect.util.signals import HangupLatch

    latch = HangupLatch()
    from streamdetect.cli import main as cli_main

    return cli_main(hangups=latch)
