"""One JSON object per record, flushed per record, to a file (appended) or to standard output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import Field

from streamdetect.pipeline.events import EventRecord
from streamdetect.report import DaySummary
from streamdetect.sinks.base import Sink, SinkOptions
from streamdetect.util.writable import OutputPath


class JsonlOptions(SinkOptions):
    path: str = Field("-", min_length=1, description="file to append to, or '-' for standard output")


class JsonlSink(Sink[JsonlOptions]):
    Options = JsonlOptions
    sends_summaries = True

    def __init__(self, options: JsonlOptions):
        super().__init__(options)
        if options.path == "-":
            self._fh, self._owned = sys.stdout, False
        else:
            path = Path(options.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh, self._owned = open(path, "a", encoding="utf-8"), True  # noqa: SIM115 - closed in close()

    @classmethod
    def outputs(cls, options: JsonlOptions) -> list[OutputPath]:
        return [] if options.path == "-" else [OutputPath("path", Path(options.path), "file", "jsonl file")]

    def emit(self, record: EventRecord) -> None:
        self._fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._fh.flush()

    def summary(self, summary: DaySummary, chart: Path | None) -> None:
        """One line ``{"summary": ...}``, told apart from records by its only key."""
        out = {"summary": {**summary.to_dict(), "chart": str(chart) if chart is not None else None}}
        self._fh.write(json.dumps(out, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()
