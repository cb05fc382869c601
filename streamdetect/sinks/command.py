"""Runs a program for each record, with the record as JSON on its standard input. The program is an argument
list executed directly, never through a shell, so nothing in a record can be interpreted as shell syntax."""

from __future__ import annotations

import json
import subprocess

from pydantic import Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkError, SinkOptions


class CommandOptions(SinkOptions):
    argv: list[str] = Field(min_length=1, description="program and its arguments, e.g. [notify-send, bird]")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="the program is killed after this long (counted as a sink failure)")


class CommandSink(Sink):
    Options = CommandOptions

    def emit(self, record: EventRecord) -> None:
        try:
            result = subprocess.run(self.options.argv, input=json.dumps(record.to_dict()), text=True,
                                    capture_output=True, timeout=self.options.timeout_s, shell=False)
        except FileNotFoundError as e:
            raise SinkError(f"command {self.options.argv[0]!r} not found") from e
        except subprocess.TimeoutExpired as e:
            raise SinkError(f"command {self.options.argv[0]!r} ran over {self.options.timeout_s:g} s") from e
        if result.returncode != 0:
            raise SinkError(f"command {self.options.argv[0]!r} exited {result.returncode}: "
                            f"{result.stderr.strip()[-300:]}")
