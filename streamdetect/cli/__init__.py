"""Command line: parse -> load config -> run. Errors a user can fix are printed without a traceback.

Each verb's handler lives in the module of its group (``run``, ``analysis``, ``search``, ``review``); ``VERBS``
is the one table that maps a verb to it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from streamdetect.cli import analysis, review, run, search
from streamdetect.cli.common import JsonFormatter, UsageError, log
from streamdetect.cli.parser import build_parser
from streamdetect.config import ConfigError
from streamdetect.daemon.startup import StartupError
from streamdetect.embed.encoder.device import limit_blas_threads
from streamdetect.export.convert import ExportError  # torch is imported inside export_model(), not here
from streamdetect.model.manifest import ModelError
from streamdetect.prompts.cache import CacheError
from streamdetect.sinks.base import SinkError
from streamdetect.sources.base import SourceError
from streamdetect.util.logs import EscapeControlChars
from streamdetect.util.signals import HangupLatch, SignalExit, interrupted

__all__ = ["VERBS", "main"]

VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run.cmd_run,
    "export": run.cmd_export,
    "devices": run.cmd_devices,
    "prompts": run.cmd_prompts,
    "scan": analysis.cmd_scan,
    "tag": analysis.cmd_tag,
    "evaluate": analysis.cmd_evaluate,
    "calibrate": analysis.cmd_calibrate,
    "index": search.cmd_index,
    "search": search.cmd_search,
    "events": review.cmd_events,
    "feedback": review.cmd_feedback,
    "refine": review.cmd_refine,
    "report": review.cmd_report,
}


def main(argv: list[str] | None = None, hangups: HangupLatch | None = None) -> int:
    """``hangups``: the latch the entry point installed before the imports (SIGHUPs caught so far)."""
    command = None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        return _verb(args, hangups)
    except (SignalExit, KeyboardInterrupt) as e:  # also while parsing: the entry point's handlers are still on
        return interrupted(e.signum if isinstance(e, SignalExit) else signal.SIGINT, command)


def _verb(args: argparse.Namespace, hangups: HangupLatch | None) -> int:
    args.hangups = hangups if args.command == "run" else None  # run turns them into a queued reload
    if hangups is not None and args.command != "run":
        hangups.restore_default()
    # Our own messages at the chosen level; libraries (onnxscript, onnx_ir ...) only when they warn.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(EscapeControlChars())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    log.setLevel(args.log_level)
    if args.command != "export":  # export leaves torch's own threading alone
        limit_blas_threads()
    try:
        return VERBS[args.command](args)
    except (ConfigError, ModelError, UsageError, SinkError, StartupError, CacheError) as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 2
    except (SourceError, ExportError) as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 1
