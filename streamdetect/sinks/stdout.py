"""One human-readable line per record on standard output."""

from __future__ import annotations

import sys
from pathlib import Path

from streamdetect.pipeline.events import EventRecord
from streamdetect.report import DaySummary
from streamdetect.sinks.base import Sink, SinkOptions


def format_record(record: EventRecord) -> str:
    top = ", ".join(f"{t.label} {t.score:.3f}" for t in record.top)
    if record.phase == "start":
        extent = f"from {record.start_s:8.2f} s"
    else:
        extent = f"{record.start_s:8.2f}-{record.end_s:.2f} s"
    return (
        f"{record.time}  [{record.stream}] {record.label} {record.phase.upper():5s} {extent}  "
        f"peak {record.peak_score:.3f} at {record.peak_time_s:.2f} s  (top: {top})"
        + (f"  sounds like: {', '.join(t.label for t in record.sounds_like)}" if record.sounds_like else "")
    )


class StdoutSink(Sink[SinkOptions]):
    Options = SinkOptions
    sends_summaries = True

    def emit(self, record: EventRecord) -> None:
        print(format_record(record), file=sys.stdout, flush=True)

    def summary(self, summary: DaySummary, chart: Path | None) -> None:
        print(summary.text() + (f"\n  chart: {chart}" if chart is not None else ""), file=sys.stdout, flush=True)
