"""A day of the event store, summarised: events per label, first and last heard, the best one, hour by hour.

The day is a calendar day in the station's time zone (``site.timezone``), so "yesterday" means what the user
means, DST days included (they have 23 or 25 hours; a repeated hour counts into one hourly bar). An event is
counted once, at the time it fired (its ``start`` record, else its ``end``); events marked ``rejected`` with
``streamdetect feedback`` are left out, so a false alarm does not show in the chart (BirdNET-Go #1679).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from streamdetect.schedule import zone
from streamdetect.util.names import short_id
from streamdetect.util.times import datetime_of, iso_of


@dataclass(frozen=True)
class LabelDay:
    label: str
    count: int
    first: str  # local ISO-8601 time of the first event
    last: str
    best_score: float
    best_event: str  # id of the highest-scoring event
    best_clip: str | None  # its clip, when a clips folder was given and still holds it
    hourly: list[int]  # events fired in each local hour 0..23


@dataclass(frozen=True)
class DaySummary:
    day: str  # YYYY-MM-DD
    timezone: str
    labels: list[LabelDay]
    events: int
    rejected: int  # events left out because feedback rejected them
    private: int  # events that overlapped speech (their audio was not kept)
    hourly: list[int] = field(default_factory=lambda: [0] * 24)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def text(self) -> str:
        lines = [f"{self.day} ({self.timezone}): {self.events} event(s)"
                 + (f", {self.rejected} rejected left out" if self.rejected else "")
                 + (f", {self.private} with speech" if self.private else "")]
        for entry in self.labels:
            lines.append(f"  {entry.label}: {entry.count}, first {entry.first[11:19]}, last {entry.last[11:19]}, "
                         f"best {entry.best_score:.3f}" + (f" ({entry.best_clip})" if entry.best_clip else ""))
        return "\n".join(lines)


def local_day_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, as aware UTC datetimes."""
    tz = zone(tz_name)
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc)
    return start, end


def default_day(now: datetime, tz_name: str) -> date:
    """Yesterday, in the station's time zone."""
    return now.astimezone(zone(tz_name)).date() - timedelta(days=1)


def day_summary(db_path: Path, day: date, tz_name: str, clips: Mapping[str, Path] | None = None) -> DaySummary:
    """The summary of local day ``day``; ``clips`` maps an event's ``short_id`` to its clip."""
    from streamdetect.store import records_between

    start, end = local_day_bounds(day, tz_name)
    tz = zone(tz_name)
    day_s = 86_400.0  # a day's margin either side: records carry the time zone they were written in
    rows = records_between(db_path, iso_of(start.timestamp() - day_s), iso_of(end.timestamp() + day_s))
    events: dict[str, dict] = {}
    for row in rows:
        event = events.setdefault(row["id"], {"label": row["label"], "fired": None, "score": row["peak_score"],
                                              "rejected": False, "private": False})
        when = datetime_of(row["time"])
        if row["phase"] == "start" or event["fired"] is None:  # the start, else the end if no start was kept
            event["fired"] = when
        event["score"] = max(event["score"], row["peak_score"])
        event["rejected"] |= row["feedback"] == "rejected"
        event["private"] |= bool(row["private"])
    kept = {i: e for i, e in events.items() if start <= e["fired"] < end}
    rejected = sum(e["rejected"] for e in kept.values())
    per_label: dict[str, list[tuple[str, dict]]] = {}
    for event_id, event in sorted(kept.items(), key=lambda item: item[1]["fired"]):
        if not event["rejected"]:
            per_label.setdefault(event["label"], []).append((event_id, event))
    labels, total_hourly = [], [0] * 24
    for label in sorted(per_label):
        items = per_label[label]
        hourly = [0] * 24
        for _, event in items:
            hourly[event["fired"].astimezone(tz).hour] += 1
        best_id, best = max(items, key=lambda item: (item[1]["score"], item[0]))
        clip = (clips or {}).get(short_id(best_id))
        labels.append(LabelDay(label, len(items), items[0][1]["fired"].astimezone(tz).isoformat(),
                               items[-1][1]["fired"].astimezone(tz).isoformat(), round(best["score"], 6), best_id,
                               str(clip) if clip is not None else None, hourly))
        total_hourly = [a + b for a, b in zip(total_hourly, hourly, strict=True)]
    return DaySummary(day.isoformat(), tz_name, labels, sum(e.count for e in labels), rejected,
                      sum(e["private"] for e in kept.values() if not e["rejected"]), total_hourly)


def hourly_chart_png(summary: DaySummary) -> bytes:
    """Events per local hour, stacked by label (matplotlib, ``pip install 'streamdetect[plot]'``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    bottom = [0] * 24
    for entry in summary.labels:
        ax.bar(range(24), entry.hourly, bottom=bottom, label=f"{entry.label} ({entry.count})", width=0.85)
        bottom = [a + b for a, b in zip(bottom, entry.hourly, strict=True)]
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlim(-0.6, 23.6)
    ax.set_xlabel(f"hour ({summary.timezone})")
    ax.set_ylabel("events")
    ax.set_title(f"{summary.day}: {summary.events} events", fontsize=10)
    if summary.labels:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()

