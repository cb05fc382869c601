"""Runs a program for each record, with the record as JSON on its standard input. The program is an argument
list executed directly, never through a shell, so nothing in a record can be interpreted as shell syntax.

The program runs in its own process group with a clean environment and bounded output (``run_bounded``): it
cannot read the daemon's secrets, cannot leave processes behind, and cannot fill memory with what it prints.
"""

from __future__ import annotations

import json

from pydantic import Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.sinks.base import Sink, SinkError, SinkOptions
from streamdetect.util.children import child_env, run_bounded


class CommandOptions(SinkOptions):
    argv: list[str] = Field(min_length=1, description="program and its arguments, e.g. [notify-send, bird]")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="the program and everything it started are killed "
                                                               "after this long (counted as a sink failure)")
    pass_env: list[str] = Field(default_factory=list, max_length=256,
                                description="environment variables passed to the program besides PATH, HOME, "
                                            "locale and the like (secrets of the daemon are never passed otherwise)")


class CommandSink(Sink[CommandOptions]):
    Options = CommandOptions

    def emit(self, record: EventRecord) -> None:
        program = self.options.argv[0]
        try:
            result = run_bounded(self.options.argv, json.dumps(record.to_dict()).encode(), self.options.timeout_s,
                                 child_env(self.options.pass_env))
        except FileNotFoundError as e:
            raise SinkError(f"command {program!r} not found") from e
        except OSError as e:
            raise SinkError(f"command {program!r} cannot start: {e.strerror}") from e
        if result.timed_out:
            raise SinkError(f"command {program!r} ran over {self.options.timeout_s:g} s; it and its children "
                            "were killed")
        if result.returncode != 0:
            raise SinkError(f"command {program!r} exited {result.returncode}: "
                            f"{result.stderr.decode('utf-8', 'replace').strip()[-300:]}")
