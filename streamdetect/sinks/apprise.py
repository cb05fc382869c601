"""Push notifications through Apprise: one library for ntfy, Telegram, Pushover, Signal, e-mail, Matrix and 100+
other services, each addressed by a URL (``ntfys://${NTFY_TOKEN}@ntfy.sh/garden``).

A phone should buzz for a sound, not for every window of it, and not at night: each label notifies at most once
per ``min_interval_s`` and not at all in ``quiet_hours`` (both judged by the record's own time, so a replayed
file behaves as it did live). Secrets stay out of the YAML: ``${NAME}`` in a URL is read from the environment
at start-up, and a missing variable stops the start with its name. With ``attach_spectrogram`` the image the
clips sink writes next to the event's clip goes along (waited for, since the clip is only written once its
post-roll has been heard). Failed deliveries are retried with the shared back-off and then counted as the
sink's failures, as the webhook's are. With ``spool_dir`` a notification that failed every retry waits on disk
(the webhook's ``Spool``, locked against a second daemon) and is sent again, oldest first, when the worker is
idle, unless it is older than ``max_late_s`` by then: an alert hours late is noise, so it is dropped and counted.

Apprise's own timeouts are per socket read: a service that accepts and then answers one byte per second, or never
answers, would hold the sink's worker for as long as it likes. So each notification to one URL has a whole-call
deadline, ``timeout_s`` (``ThreadDeadline``): past it the attempt fails like an unreachable service (retried,
then spooled), and the stuck call is abandoned in its thread, at most one per URL (while it still runs, attempts
on that URL fail at once). A service whose answer arrives only after the deadline has the notification, and
gets it again from the retry: twice is better than never for an alert.
"""

from __future__ import annotations

import json
import logging
import os
import re
import string
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from streamdetect.pipeline.events import EventRecord
from streamdetect.report import DaySummary
from streamdetect.schedule import Schedule, Site, parse_periods
from streamdetect.sinks.base import Sink, SinkContext, SinkError, SinkOptions
from streamdetect.sinks.spool import Spool, open_spool
from streamdetect.util.backoff import Backoff
from streamdetect.util.deadline_http import RequestFailed
from streamdetect.util.deadline_thread import ThreadDeadline
from streamdetect.util.names import safe_name, short_id
from streamdetect.util.ratelimit import OutageLog, RateLimitedLog
from streamdetect.util.times import datetime_of
from streamdetect.util.writable import OutputPath

log = logging.getLogger(__name__)
LOG_INTERVAL_S = 60.0  # the same warning (from Apprise or from here) at most once per this
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
APPRISE_EXTRA = "pip install 'streamdetect[notify]'"


def template_fields(record: EventRecord) -> dict[str, Any]:
    """What a title or body template can name: the record's fields plus a few made for reading."""
    fields = record.to_dict()
    fields["end_s"] = record.end_s if record.end_s is not None else record.start_s
    fields["duration_s"] = fields["end_s"] - record.start_s
    fields["private"] = bool(record.private)
    fields["top"] = ", ".join(f"{t.label} {t.score:.2f}" for t in record.top)
    fields["sounds_like"] = ", ".join(t.label for t in record.sounds_like)
    return fields


SAMPLE = EventRecord(id="0" * 32, label="bird", phase="end", start_s=1.0, end_s=4.0, peak_score=0.5,
                     peak_time_s=2.5, stream="garden", time="2026-01-01T06:00:00.000+00:00", top=())


def render(template: str, record: EventRecord) -> str:
    return template.format(**template_fields(record))


class AppriseOptions(SinkOptions):
    urls: list[str] = Field(min_length=1, max_length=50, description="Apprise URLs (ntfy://, tgram://, "
                            "pover://, mailto:// ...); ${NAME} is replaced by environment variable NAME")
    phase: Literal["start", "end"] = Field("end", description="notify when an event starts (sooner) or ends "
                                           "(with its extent and spectrogram)")
    title: str = Field("{label} heard on {stream}", max_length=500, description="title template: the "
                       "record's fields in Python format syntax, e.g. {label} {peak_score:.2f} {time}")
    body: str = Field("{label} at {time}, peak score {peak_score:.2f}, {duration_s:.0f} s", max_length=5000,
                      description="body template, with the same fields as the title")
    min_interval_s: float = Field(300.0, ge=0, le=7 * 86_400, description="per label: notifications closer "
                                  "together than this are left out (and counted)")
    quiet_hours: list[str] = Field(default_factory=list, max_length=50, description="periods in the site's local "
                                   "time without notifications, e.g. ['22:00-07:00']")
    attach_spectrogram: bool = Field(False, description="attach the event's spectrogram image (phase end; needs "
                                     "a clips sink with spectrogram: true)")
    clips_dir: str | None = Field(None, min_length=1, description="that clips sink's dir")
    attach_wait_s: float = Field(30.0, ge=0, le=600, description="how long to wait for the image to be written")
    timeout_s: float = Field(20.0, gt=0, le=600, description="total deadline of one notification to one URL, "
                             "answer included (a service that stalls or trickles fails the attempt)")
    retries: int = Field(3, ge=0, le=20, description="extra attempts for a URL that failed")
    backoff_s: float = Field(1.0, gt=0, le=60, description="first retry delay; doubles each time, with jitter")
    max_backoff_s: float = Field(30.0, gt=0, le=3600, description="longest retry delay")
    spool_dir: str | None = Field(None, min_length=1, description="keep notifications that failed every retry "
                                  "here and send them again once the service answers (unset: counted and dropped)")
    max_late_s: float = Field(3600.0, gt=0, le=7 * 86_400, description="a spooled notification older than this is "
                              "dropped (and counted) instead of sent")

    @field_validator("title", "body")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        """A typo in a field name would otherwise fail at the first sound, perhaps weeks later."""
        known = template_fields(SAMPLE)
        for _, name, _, _ in string.Formatter().parse(value):
            if name is not None and name.split(".")[0].split("[")[0] not in known:
                raise ValueError(f"unknown field {{{name}}}; the fields are {', '.join(sorted(known))}")
        try:
            render(value, SAMPLE)
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise ValueError(f"template cannot be formatted: {e}") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _periods(cls, value: list[str], info: ValidationInfo) -> list[str]:
        periods = parse_periods(value)
        site = (info.context or {}).get("site")
        if isinstance(site, Site) and site.latitude is None and any(p.uses_sun for p in periods):
            raise ValueError("quiet hours use sun times: set site.latitude and site.longitude")
        return value

    @field_validator("attach_spectrogram")
    @classmethod
    def _attach_needs_end(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("phase") == "start":
            raise ValueError("a spectrogram exists only once the event has ended: use phase: end")
        return value


class _OncePerInterval(logging.Filter):
    """Apprise logs a warning of its own for every failed attempt (four per notification with the default
    retries, for as long as the service is away); this lets each distinct warning through once per
    ``LOG_INTERVAL_S``. Installed on the ``apprise`` logger while a sink runs."""

    def __init__(self, limit: RateLimitedLog):
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True  # errors always; debug lines only reach a debug log, which wants them all
        suppressed = self.limit.allow(record.getMessage())
        if suppressed:
            record.msg, record.args = f"{record.getMessage()} ({suppressed} not logged since the last message)", ()
        return suppressed is not None


def expand_env(url: str) -> str:
    def value(match: re.Match) -> str:
        name = match[1]
        if not os.environ.get(name):
            raise SinkError(f"apprise sink: environment variable {name} (used in one of its urls) is not set; "
                            "export it before starting")
        return os.environ[name]

    return ENV_REFERENCE.sub(value, url)


class AppriseSink(Sink[AppriseOptions]):
    Options = AppriseOptions
    sends_summaries = True

    def __init__(self, options: AppriseOptions, site: Site | None = None):
        super().__init__(options)
        try:
            import apprise
        except ImportError as e:
            raise SinkError(f"the apprise sink needs the apprise package ({APPRISE_EXTRA})") from e
        self._apprise = apprise
        self.targets: list[tuple[str, Any]] = []  # (redacted URL, one Apprise object each: retried alone)
        for i, url in enumerate(options.urls):
            target = apprise.Apprise()
            if not target.add(expand_env(url)):
                raise SinkError(f"apprise sink: urls[{i}] is not an Apprise URL it knows (see "
                                "https://github.com/caronc/apprise/wiki for the services and their URLs)")
            self.targets.append((target[0].url(privacy=True), target))
        # one each: an abandoned call on one URL must not hold back the others
        self._calls = [ThreadDeadline[bool](options.timeout_s, f"apprise-{i}") for i in range(len(self.targets))]
        self._deadline_log = RateLimitedLog(log, LOG_INTERVAL_S)
        self.quiet = Schedule.of(options.quiet_hours, site or Site())
        self.last_sent: dict[str, datetime] = {}
        self.sent = 0
        self.suppressed = {"rate_limit": 0, "quiet_hours": 0}
        self.late_dropped = 0  # spooled notifications older than max_late_s when the service answered again
        self.spooled = 0  # notifications kept in the spool for a later try: retried, not failures
        self._stop = threading.Event()
        self._spool: Spool | None = None
        if options.spool_dir is not None:
            self._spool = open_spool(options.spool_dir, "apprise", "\n".join(options.urls), "apprise sink",
                                     Backoff(options.backoff_s, options.max_backoff_s))
        self._backoff = Backoff(options.backoff_s, options.max_backoff_s)  # of the spool's head
        self._retry_at = 0.0
        self._late_log = RateLimitedLog(log, LOG_INTERVAL_S)
        self._away_log = OutageLog(log, logging.WARNING)  # one line when a service goes away, one when back
        self._quiet_apprise = _OncePerInterval(RateLimitedLog(log, LOG_INTERVAL_S))
        logging.getLogger("apprise").addFilter(self._quiet_apprise)

    @classmethod
    def outputs(cls, options: AppriseOptions) -> list[OutputPath]:
        if options.spool_dir is None:
            return []
        return [OutputPath("spool_dir", Path(options.spool_dir), "dir", "apprise spool folder")]

    @classmethod
    def create(cls, options: AppriseOptions, context: SinkContext) -> AppriseSink:
        return cls(options, context.site)

    def emit(self, record: EventRecord) -> None:
        if record.phase != self.options.phase:
            return
        when = datetime_of(record.time)
        if self.quiet is not None and self.quiet.active(when):
            self.suppressed["quiet_hours"] += 1
            return
        last = self.last_sent.get(record.label)
        if last is not None and (when - last).total_seconds() < self.options.min_interval_s:
            self.suppressed["rate_limit"] += 1
            return
        attach = self._spectrogram(record) if self.options.attach_spectrogram else None
        self.notify(render(self.options.title, record), render(self.options.body, record), attach,
                    f"{record.label} {record.phase} record")
        self.last_sent[record.label] = when

    def summary(self, summary: DaySummary, chart: Path | None) -> None:
        self.notify(f"streamdetect: {summary.day}", summary.text(), chart, "daily summary")

    def notify(self, title: str, body: str, attach: Path | None, what: str) -> None:
        """Send to every URL, retrying each failed one alone (a retry must not repeat a delivered message)."""
        failed = []
        for index, (shown, _) in enumerate(self.targets):
            backoff = Backoff(self.options.backoff_s, self.options.max_backoff_s)
            for attempt in range(1 + self.options.retries):
                if attempt and self._stop.wait(backoff.next_delay()):
                    break
                if self._send(index, title, body, attach):
                    self.sent += 1
                    self._away_log.recovered("apprise: %s answers again", shown)
                    break
            else:
                failed.append((index, shown))
        if not failed:
            return
        where = f"apprise: {what} not delivered to {', '.join(s for _, s in failed)} after {1 + self.options.retries}" \
                " attempts"
        if self._spool is None:
            raise SinkError(f"{where} (no spool_dir: lost)", records=len(failed))
        try:
            self._spool.append([json.dumps({"url": i, "title": title, "body": body, "at": time.time(),
                                            "attach": str(attach) if attach is not None else None}).encode()
                                for i, _ in failed])
        except OSError as e:
            raise SinkError(f"{where}, and the spool {self._spool.path} cannot be written ({e.strerror}): lost",
                            records=len(failed)) from e
        self.spooled += len(failed)
        self._retry_at = time.monotonic() + self._backoff.next_delay()
        self._away_log.failed("%s; kept in %s for a later try (logged again when one gets through)", where,
                              self._spool.path)

    def idle(self) -> None:
        """Send the spool's oldest notifications once each, while the service answers; stop at the first failure
        and wait the back-off before trying again."""
        if self._spool is None or self._spool.empty() or time.monotonic() < self._retry_at or not self._spool.ready():
            return
        done = 0
        for line in self._spool.head(16):
            try:
                entry = json.loads(line)
                entry["url"] = int(entry["url"])
                self.targets[entry["url"]]
            except (ValueError, KeyError, TypeError, IndexError):
                log.error("apprise: a line of the spool %s is not a notification this sink wrote; skipped: %.80r",
                          self._spool.path, line)
                done += 1
                continue
            if time.time() - entry["at"] > self.options.max_late_s:
                self.late_dropped += 1
                self._late_log("apprise: a notification spooled %.0f s ago is older than max_late_s and is dropped "
                               "(%d so far)", time.time() - entry["at"], self.late_dropped)
                done += 1
                continue
            attach = Path(entry["attach"]) if entry["attach"] and Path(entry["attach"]).is_file() else None
            if not self._send(entry["url"], entry["title"], entry["body"], attach):
                self._retry_at = time.monotonic() + self._backoff.next_delay()
                break
            self.sent += 1
            done += 1
            self._away_log.recovered("apprise: %s answers again", self.targets[entry["url"]][0])
        else:
            self._backoff.reset()
        self._spool.drop_head(done)

    def _send(self, index: int, title: str, body: str, attach: Path | None) -> bool:
        """One attempt on one URL, within ``timeout_s``; False when it failed or ran out of time."""
        shown, target = self.targets[index]
        files = self._apprise.AppriseAttachment(str(attach)) if attach is not None else None
        try:
            return bool(self._calls[index](lambda: target.notify(body=body, title=title, attach=files)))
        except RequestFailed as e:
            self._deadline_log("apprise: %s: %s", shown, e, key=index)
            return False

    def _spectrogram(self, record: EventRecord) -> Path | None:
        """The clips sink's image of this event, named by the event's ``short_id``."""
        if self.options.clips_dir is None:
            return None
        folder = Path(self.options.clips_dir) / safe_name(record.label)
        id8 = short_id(record.id)
        deadline = time.monotonic() + self.options.attach_wait_s
        while True:
            found = sorted(folder.glob(f"*_{id8}.png")) if folder.is_dir() else []
            if found:
                return found[-1]
            if time.monotonic() >= deadline or self._stop.wait(0.2):
                log.warning("apprise: no spectrogram of the %s event %s in %s after %.0f s; sent without",
                            record.label, id8, folder, self.options.attach_wait_s)
                return None

    def close(self) -> None:
        self._stop.set()
        logging.getLogger("apprise").removeFilter(self._quiet_apprise)
        if self._spool is not None:
            self._spool.close()
