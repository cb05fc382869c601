"""What every verb shares: loading a config and its model, user-facing errors, the log format."""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from pathlib import Path

from streamdetect.config import Config, load_config
from streamdetect.daemon.build import build_detector
from streamdetect.model.manifest import ModelBundle, ModelError, default_model_dir
from streamdetect.pipeline.detector import Detector
from streamdetect.sinks.base import SinkSet

log = logging.getLogger("streamdetect")


class JsonFormatter(logging.Formatter):
    """Structured log lines: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class UsageError(RuntimeError):
    """A problem with how the command was called; printed as is, exit status 2."""


def check_output(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before any work: a scan of hours must not end in an
    error about its output folder."""
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable here; choose another path")


def need_module(module: str, extra: str, option: str) -> None:
    """Name the extra that installs an optional dependency before any work, not in a traceback after it."""
    try:
        with warnings.catch_warnings():
            # sed_scores_eval -> sed_eval -> dcase_util imports pkg_resources, and setuptools warns that it is
            # deprecated; the eval extra pins setuptools<81, which still has it, so nothing is wrong for the user.
            warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
            __import__(module)
    except ImportError:
        raise UsageError(f"{option} needs {module}, which is not installed: pip install 'streamdetect[{extra}]' "
                         "(bash scripts/setup.sh --dev installs every extra)") from None


def model_dir(args: argparse.Namespace, config: Config) -> Path:
    if args.model:
        return args.model
    if config.model:
        return Path(config.model)
    return default_model_dir()


def load(args: argparse.Namespace) -> tuple[Config, ModelBundle]:
    config = load_config(args.config)
    try:
        bundle = ModelBundle.load(model_dir(args, config))
    except ModelError as e:
        origin = "--model" if args.model else (f"{args.config}: model" if config.model else "default location")
        raise ModelError(f"{e}\n(model directory from {origin})") from None
    if bundle.random_weights:
        log.warning("%s has RANDOM WEIGHTS (a test model): the commands work, but its scores mean nothing",
                    bundle.directory)
    return config, bundle


def detector_without_sinks(args: argparse.Namespace) -> Detector:
    config, bundle = load(args)
    return build_detector(config, bundle, SinkSet([]))
