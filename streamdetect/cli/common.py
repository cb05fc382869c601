"""What every verb shares: loading a config and its model, user-facing errors, the log format."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from streamdetect.config import Config, load_config
from streamdetect.model.manifest import ModelBundle, ModelError, default_model_dir
from streamdetect.pipeline.build import build_detector
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


def model_dir(args: argparse.Namespace, config: Config) -> Path:
    if args.model:
        return args.model
    if config.model:
        return Path(config.model)
    return default_model_dir()


def load(args: argparse.Namespace) -> tuple[Config, ModelBundle]:
    config = load_config(args.config)
    try:
        return config, ModelBundle.load(model_dir(args, config))
    except ModelError as e:
        origin = "--model" if args.model else (f"{args.config}: model" if config.model else "default location")
        raise ModelError(f"{e}\n(model directory from {origin})") from None


def detector_without_sinks(args: argparse.Namespace) -> Detector:
    config, bundle = load(args)
    return build_detector(config, bundle, SinkSet([]))
