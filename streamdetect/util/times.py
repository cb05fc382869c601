"""Wall time as epoch seconds inside, ISO 8601 at the edges: the one pair of conversions every module uses.

Inside the pipeline and the stores a time is a float (seconds since the epoch, UTC), so nothing parses a string
back; records, logs, JSON answers and file names format it once, here, with a UTC offset.
"""

from __future__ import annotations

from datetime import datetime, timezone


def datetime_of(iso: str) -> datetime:
    """The aware datetime of an ISO 8601 time (for calendar questions: quiet hours, local days); a time without
    an offset is taken as UTC (that is how we write them). Raises ``ValueError`` for text that is not one."""
    when = datetime.fromisoformat(iso)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def epoch_of(iso: str) -> float:
    """Epoch seconds of an ISO 8601 time; a time without an offset is taken as UTC (that is how we write them)."""
    return datetime_of(iso).timestamp()


def iso_of(epoch: float, timespec: str = "milliseconds") -> str:
    """The UTC ISO 8601 form of epoch seconds, as records and JSON answers carry it."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec=timespec)
