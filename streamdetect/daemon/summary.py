"""The daily summary: built from the event store (``streamdetect.report``) and sent through sinks at a set local
time (``summary.at``), by a thread of the daemon.

The thread wakes at least every ``CHECK_S`` and compares the clock with the next due time, rather than sleeping
until it: a suspended laptop, a clock set by NTP or a DST change then cannot make it miss a day or send twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from streamdetect.config import Config
from streamdetect.report import DaySummary, day_summary, hourly_chart_png
from streamdetect.schedule import Clock, Site, local_time_today, utc_now
from streamdetect.sinks.base import FailureLog, Sink
from streamdetect.sinks.clips import ClipsOptions, scan_clips
from streamdetect.sinks.sqlite import SqliteOptions
from streamdetect.util.files import atomic_write

log = logging.getLogger(__name__)
CHECK_S = 30.0


def store_and_clips(config: Config) -> tuple[Path, Path | None]:
    """The event database the config writes (``summary.store``, else its first sqlite sink, else the sqlite
    sink's default path) and the folder of its first clips sink (None without one)."""
    db = config.summary.store or next((o.path for o in config.sink_options(SqliteOptions)), SqliteOptions().path)
    clips = next((Path(o.dir) for o in config.sink_options(ClipsOptions)), None)
    return Path(db), clips


def clip_index(clips_dir: Path | None) -> dict[str, Path]:
    """First 8 characters of an event id -> its clip, from the clip names."""

    return {c.event_id8: c.path for c in scan_clips(clips_dir)} if clips_dir is not None else {}


def summarise_day(db: Path, day: date, tz_name: str, clips_dir: Path | None) -> DaySummary:
    return day_summary(db, day, tz_name, clip_index(clips_dir))


def summary_senders(config: Config, sinks: Sequence[tuple[str, Sink]]) -> list[tuple[str, Sink]]:
    """The built sinks (named ``type#index``) that send the summary: those named in ``summary.sinks``, else
    every one that can."""
    wanted = {f"{e.type}#{i}" for i, e in enumerate(config.sinks) if e.name in config.summary.sinks}
    return [(name, sink) for name, sink in sinks if sink.sends_summaries
            and (name in wanted if config.summary.sinks else True)]


class SummaryScheduler:
    """Sends the summary of ``day`` (today or yesterday, local) at ``at`` each day; ``tick`` does the work."""

    def __init__(self, config: Config, senders: list[tuple[str, Sink]], failures: FailureLog, *,
                 clock: Clock = utc_now, chart_dir: Path | None = None, check_s: float = CHECK_S):
        if config.summary.at is None:
            raise ValueError("summary.at is not set: there is no summary to schedule")
        self.at: str = config.summary.at
        self.day = config.summary.day
        self.site: Site = config.site.site()
        self.db, self.clips = store_and_clips(config)
        self.senders, self.failures, self.clock, self.check_s = senders, failures, clock, check_s
        self.chart_dir = chart_dir or self.db.parent / "summaries"
        self.next_due = local_time_today(self.site, self.at, clock())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="daily-summary", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("daily summary at %s (%s), next %s", self.at, self.site.timezone,
                 self.next_due.astimezone(self.site.zone).isoformat(timespec="minutes"))

    def tick(self) -> DaySummary | None:
        """Send if due (once, however late the check comes), then plan the next one."""
        now = self.clock()
        if now < self.next_due:
            return None
        due, self.next_due = self.next_due, local_time_today(self.site, self.at, max(now, self.next_due))
        day = self.site.local_date(due) - timedelta(days=1 if self.day == "yesterday" else 0)
        return self.send(day)

    def send(self, day: date) -> DaySummary | None:
        try:
            summary = summarise_day(self.db, day, self.site.timezone, self.clips)
        except (OSError, ValueError) as e:
            log.error("summary of %s: cannot read the event store %s: %s", day, self.db, e)
            return None
        chart = self._chart(summary)
        for name, sink in self.senders:
            try:
                sink.summary(summary, chart)
            except Exception as e:  # noqa: BLE001 - one sink failing must not stop the others
                self.failures.failed(name, f"summary of {day}", e)
        return summary

    def _chart(self, summary: DaySummary) -> Path | None:
        try:
            png = hourly_chart_png(summary)
        except ImportError:
            log.warning("summary: no hourly chart without matplotlib (pip install 'streamdetect[plot]')")
            return None
        path = self.chart_dir / f"summary-{summary.day}.png"
        try:
            self.chart_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, png)
        except OSError as e:
            log.error("summary: cannot write %s (%s); sent without the chart", path, e)
            return None
        return path

    def _loop(self) -> None:
        while True:
            left = (self.next_due - self.clock()).total_seconds()
            if self._stop.wait(min(max(left, 0.0), self.check_s)):
                return
            self.tick()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

