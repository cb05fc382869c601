"""Active periods in local time: ``05:00-09:00``, ``22:00-02:00`` (across midnight), ``sunrise-30m..sunrise+2h``.

A period is resolved, for each local calendar day, into an interval of aware datetimes: clock times through the
site's ``zoneinfo`` zone (so DST changes are the zone's business, not ours), sun times through astral for the
site's latitude and longitude. A period whose end is not after its start crosses midnight and ends on the next
day. Resolved days are cached, so asking whether a window is active costs a few comparisons.

Clock times that a DST change skips (02:30 on the spring-forward night in Europe) are read with the offset before
the change, i.e. one hour later in the new time; clock times that happen twice take their first occurrence.
Where the sun never rises or sets on a day (polar day or night), a period anchored to that sun time is inactive
that day. Nothing here reads the clock: callers ask about an instant they got from their own clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SUN_EVENTS = ("dawn", "sunrise", "noon", "sunset", "dusk")
Clock = Callable[[], datetime]  # returns an aware datetime; the default is UTC now


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d\d)$")
_SUN = re.compile(r"^(?P<sun>" + "|".join(SUN_EVENTS) + r")(?P<offset>[+-].+)?$")
_OFFSET = re.compile(r"^(?P<sign>[+-])(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?$")


@dataclass(frozen=True)
class TimeRef:
    """A time of day: a clock time (``sun`` None, ``minutes`` since midnight) or a sun event plus an offset."""

    minutes: float
    sun: str | None = None

    @classmethod
    def parse(cls, text: str) -> TimeRef:
        text = text.strip().lower()
        if m := _CLOCK.match(text):
            hours, minutes = int(m["h"]), int(m["m"])
            if hours > 24 or minutes > 59 or (hours == 24 and minutes):
                raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
            return cls(hours * 60 + minutes)
        if m := _SUN.match(text):
            offset = 0.0
            if m["offset"]:
                o = _OFFSET.match(m["offset"])
                if o is None or not (o["h"] or o["m"]):
                    raise ValueError(f"{text!r}: the offset must look like +2h, -30m or +1h30m")
                offset = (float(o["h"] or 0) * 60 + float(o["m"] or 0)) * (-1 if o["sign"] == "-" else 1)
                if abs(offset) > 12 * 60:
                    raise ValueError(f"{text!r}: offsets from a sun event are limited to 12 h")
            return cls(offset, m["sun"])
        raise ValueError(f"{text!r} is neither a clock time (05:30) nor a sun time ({', '.join(SUN_EVENTS)}, "
                         "with an offset such as sunrise-30m)")


@dataclass(frozen=True)
class Period:
    start: TimeRef
    end: TimeRef
    text: str

    @classmethod
    def parse(cls, text: str) -> Period:
        """``A..B`` always; ``A-B`` when both are clock times (a sun offset has a minus sign of its own)."""
        if ".." in text:
            a, _, b = text.partition("..")
        elif text.count("-") == 1 and all(_CLOCK.match(p.strip()) for p in text.split("-")):
            a, _, b = text.partition("-")
        else:
            raise ValueError(f"{text!r} is not a period: write START-END with clock times (05:00-09:00) or "
                             "START..END (sunrise-30m..sunrise+2h, 21:00..sunset)")
        return cls(TimeRef.parse(a), TimeRef.parse(b), text.strip())

    @property
    def uses_sun(self) -> bool:
        return self.start.sun is not None or self.end.sun is not None


@dataclass(frozen=True)
class Site:
    """Where the station is: its time zone, and its coordinates for sun times."""

    timezone: str = "UTC"
    latitude: float | None = None
    longitude: float | None = None

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)

    def local_date(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC") from None


def parse_periods(texts: Sequence[str]) -> tuple[Period, ...]:
    return tuple(Period.parse(t) for t in texts)


@dataclass
class Schedule:
    """Whether an instant lies in any of ``periods`` at ``site``; no periods means always active."""

    periods: tuple[Period, ...]
    site: Site = field(default_factory=Site)
    _days: dict[date, list[tuple[datetime, datetime]]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, texts: Sequence[str] | None, site: Site) -> Schedule | None:
        """None for no periods (always active), so callers can skip the check altogether."""
        return cls(parse_periods(texts), site) if texts else None

    def active(self, at: datetime) -> bool:
        if not self.periods:
            return True
        day = self.site.local_date(at)
        # A period resolved for the day before may cross midnight into today.
        return any(a <= at < b for d in (day - timedelta(days=1), day) for a, b in self.intervals(d))

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The periods of local day ``day`` as (start, end) aware datetimes in UTC."""
        cached = self._days.get(day)
        if cached is None:
            if len(self._days) > 32:  # a daemon runs for months: keep only recent days
                self._days.clear()
            cached = self._days[day] = [iv for p in self.periods if (iv := self._resolve(p, day)) is not None]
        return cached

    def _resolve(self, period: Period, day: date) -> tuple[datetime, datetime] | None:
        start = self.time_on(period.start, day)
        end = self.time_on(period.end, day)
        if start is None or end is None:
            return None
        if end <= start:  # crosses midnight: the end is on the next day
            end = self.time_on(period.end, day + timedelta(days=1))
            if end is None or end <= start:
                return None
        return start, end

    def time_on(self, ref: TimeRef, day: date) -> datetime | None:
        """``ref`` on local day ``day``, in UTC; None where a sun event does not happen that day."""
        tz = self.site.zone
        if ref.sun is None:
            local = datetime.combine(day, time(0), tzinfo=tz) if ref.minutes < 24 * 60 else \
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
            if ref.minutes < 24 * 60:
                local = local.replace(hour=int(ref.minutes // 60), minute=int(ref.minutes % 60))
            return local.astimezone(timezone.utc)
        base = sun_time(self.site, ref.sun, day)
        return None if base is None else base + timedelta(minutes=ref.minutes)


def sun_time(site: Site, event: str, day: date) -> datetime | None:
    """``event`` (sunrise, sunset ...) on local day ``day`` at the site, in UTC; None where it does not happen."""
    from astral import Observer, sun

    # noon takes no depression argument, so the checker would join the five to a plain function
    events: dict[str, Callable[..., datetime]] = {
        "dawn": sun.dawn, "sunrise": sun.sunrise, "noon": sun.noon, "sunset": sun.sunset, "dusk": sun.dusk}
    if site.latitude is None or site.longitude is None:
        raise ValueError(f"{event} needs site.latitude and site.longitude")
    observer = Observer(latitude=site.latitude, longitude=site.longitude)
    try:
        when = events[event](observer, date=day, tzinfo=site.zone)
    except ValueError:  # polar day or night: the sun does not cross that elevation today
        return None
    return when.astimezone(timezone.utc)


def local_time_today(site: Site, at_text: str, now: datetime) -> datetime:
    """The next occurrence (after ``now``) of a clock or sun time, e.g. the daily summary's ``at``."""
    ref = TimeRef.parse(at_text)
    schedule = Schedule((Period(ref, ref, at_text),), site)
    day = site.local_date(now)
    for d in (day, day + timedelta(days=1), day + timedelta(days=2)):
        when = schedule.time_on(ref, d)
        if when is not None and when > now:
            return when
    raise ValueError(f"{at_text!r} does not happen in the next days at this site")
