"""Log lines that say only what the program meant: control characters in logged values are escaped.

A label, a stream name or a URL comes from a config, the control API or a remote peer. With a newline in it, a
plain-text log line would become two, the second one written by whoever chose the label (a forged ``ERROR``
line). Every handler of the CLI carries ``EscapeControlChars``, so no call site has to remember it.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with every control character (newline, carriage return, escape, NUL ...) written as an escape."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                             else f"\\u{ord(m.group()):04x}"), text)


def _escaped(value: object) -> object:
    return escape_control(value) if isinstance(value, str) else \
        escape_control(str(value)) if isinstance(value, BaseException) else value


class EscapeControlChars(logging.Filter):
    """Escapes control characters in a record's arguments (the values put into the message), so the message
    format written in the code keeps its own layout and the values cannot add lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            record.args = {k: _escaped(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_escaped(v) for v in record.args)
        elif isinstance(record.msg, str):  # a message formatted before the call
            record.msg = escape_control(record.msg)
        return True
