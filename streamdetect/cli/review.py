"""The event store's verbs: ``events`` lists, ``feedback`` marks, ``refine`` learns from the marks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: each verb loads only what it needs
    import numpy as np

    from streamdetect.config import Config
    from streamdetect.embed.encoder.base import AudioEncoder
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.model.manifest import ModelBundle

from streamdetect.cli.common import UsageError, load, log
from streamdetect.cli.parser import DEFAULT_DB
from streamdetect.util.names import short_id


def cmd_report(args: argparse.Namespace) -> int:
    """A day's summary from the event store, as text or JSON, with an hourly chart PNG."""
    from datetime import date, datetime, timezone

    from streamdetect.config import load_config
    from streamdetect.daemon.summary import store_and_clips, summarise_day
    from streamdetect.report import default_day, hourly_chart_png
    from streamdetect.schedule import zone
    from streamdetect.util.files import atomic_write

    db, clips, tz_name = DEFAULT_DB, None, "UTC"  # what a sqlite sink writes by default
    if args.config is not None:
        config = load_config(args.config)
        (db, clips), tz_name = store_and_clips(config), config.site.timezone
    db, clips, tz_name = args.db or db, args.clips or clips, args.timezone or tz_name
    try:
        zone(tz_name)
        day = date.fromisoformat(args.day) if args.day else default_day(datetime.now(timezone.utc), tz_name)
    except ValueError as e:
        raise UsageError(f"--day/--timezone: {e} (--day takes YYYY-MM-DD)") from None
    try:
        summary = summarise_day(db, day, tz_name, clips)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    chart = None if args.no_chart else (args.chart or Path(f"report-{summary.day}.png"))
    if chart is not None:
        try:
            atomic_write(chart, hourly_chart_png(summary))
        except ImportError:
            raise UsageError("the hourly chart needs matplotlib (pip install 'streamdetect[plot]'), or pass "
                             "--no-chart") from None
    if args.json:
        print(json.dumps({**summary.to_dict(), "chart": str(chart) if chart else None}, ensure_ascii=False,
                         indent=2))
    else:
        print(summary.text() + (f"\nhourly chart: {chart}" if chart else ""))
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from streamdetect.prompts.refine import FeedbackError, mark_feedback

    verdict = "confirmed" if args.confirm else "rejected"
    try:
        event_id, label = mark_feedback(args.db, args.event, verdict)
    except FeedbackError as e:
        raise UsageError(str(e)) from None
    print(f"{label} event {event_id} {verdict}; run `streamdetect refine --config CONFIG --db {args.db}` to use it")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.prompts.assemble import prompt_bank_for
    from streamdetect.prompts.refine import (
        FeedbackError,
        RefinementStore,
        RefineParams,
        prompt_key,
        refine_events,
        refinements_dir,
    )

    config, bundle = load(args)
    store = RefinementStore(refinements_dir(bundle))
    try:
        if args.undo is not None:
            now = store.undo(args.undo)
            in_force = _undo_result(config, args.undo, now, store.latest(args.undo) if now else None,
                                    prompt_key, bundle.text_key)
            print(f"{args.undo}: retired the newest refinement; now using {in_force} (send SIGHUP to a "
                  "running detector)")
            return 0
        params = RefineParams(args.alpha, args.beta, args.max_angle)
        if not args.db.is_file():
            raise FeedbackError(f"no event database at {args.db} (a `sqlite` sink writes one)")
    except FeedbackError as e:
        raise UsageError(str(e)) from None
    bank = prompt_bank_for(bundle, config.events, config.prompt_cache, RuntimeOptions.from_config(config.runtime),
                           refined=False)
    clip_embedding = _clip_embedder(args.clips, bundle, config) if args.clips else None
    for done in refine_events(args.db, config.events, bank.events, bundle.text_key, store, params, clip_embedding):
        if done.without_embedding:
            log.warning("%s: %d marked event(s) have no stored embedding (recorded before embeddings were "
                        "stored) and are left out", done.label, done.without_embedding)
        if done.version is None:
            print(f"{done.label}: no feedback, unchanged")
            continue
        clips = f", {done.from_clips} from saved clips" if args.clips else ""
        print(f"{done.label}: v{done.version} from {done.confirmed} confirmed, {done.rejected} rejected"
              f"{clips} (moved {done.angle_deg:.1f} degrees)")
    print(f"refinements in {store.directory}; send SIGHUP to a running detector to use them")
    return 0


def _undo_result(config: Config, label: str, version: int | None, latest: tuple[np.ndarray, dict[str, Any]] | None,
                 prompt_key: Callable[[list[str] | tuple[str, ...], str], str], text_key: str) -> str:
    """What the detector embeds an event from once its newest refinement is retired: the older version if it
    still matches the event's prompts (the rule ``apply_refinements`` follows), else what the config gives it."""
    event = next((e for e in config.events if e.label == label), None)
    if event is None:
        return f"nothing: {label!r} is no event of the config"
    parts = (["prompts"] if event.prompts else []) + (["audio examples"] if event.examples else [])
    plain = "its " + " and ".join(parts) + " from the config, unrefined"
    if not version:
        return plain
    meta = latest[1] if latest is not None else {}
    if meta.get("prompt_key") != prompt_key(event.prompts, text_key):
        return f"{plain} (refinement v{version} is kept but was made for other prompts)"
    return f"refinement v{version}"


def _clip_embedder(folder: Path, bundle: ModelBundle, config: Config) -> Callable[[str], np.ndarray | None]:
    """Event id -> embedding of its saved clip (a `clips` sink folder), or None when it has none."""
    from streamdetect.embed.clip import clip_embedding
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.sinks.clips import scan_clips

    if not folder.is_dir():
        raise UsageError(f"--clips {folder}: no such folder (give the `dir` of a clips sink)")
    by_id = {clip.event_id8: clip.path for clip in scan_clips(folder)}
    frontend: LogMelFrontend | None = None
    encoder: AudioEncoder | None = None

    def embed(event_id: str) -> np.ndarray | None:
        nonlocal frontend, encoder
        path = by_id.get(short_id(event_id))
        if path is None:
            return None
        if frontend is None or encoder is None:  # opened only when a marked event has a clip
            frontend = LogMelFrontend(bundle.frontend_params)
            encoder = open_audio_encoder(bundle, RuntimeOptions.from_config(config.runtime))
        return clip_embedding(path, frontend, encoder)

    return embed


def cmd_events(args: argparse.Namespace) -> int:
    import csv

    from streamdetect.store import COLUMNS, StoreError, parse_when, query_events

    try:
        rows = query_events(args.db, args.label, args.since and parse_when(args.since),
                            args.until and parse_when(args.until), args.limit, newest_first=True)
    except (StoreError, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        return 0
    for r in rows:  # the id's first 8 characters: `feedback --event` takes any unique prefix of 6 or more
        extent = f"{r['start_s']:.1f}-{r['end_s']:.1f} s" if r["end_s"] is not None else f"from {r['start_s']:.1f} s"
        print(f"{short_id(r['id'])}  {r['time']}  {r['stream']:16s} {r['label']:16s} {r['phase']:5s} {extent:18s} "
              f"peak {r['peak_score']:.3f}" + (f"  {r['feedback']}" if r["feedback"] else "")
              + ("  interrupted (closed at restart)" if r["interrupted"] else ""))
    print(f"{len(rows)} records, newest first", file=sys.stderr)
    return 0
