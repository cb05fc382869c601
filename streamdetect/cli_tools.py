"""Command handlers for the tools around the detector: scan, tag, evaluate, calibrate, index, search, events.

The parser and the detector's own commands live in ``streamdetect.cli``; these handlers are imported only when
one of them runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from streamdetect.cli import UsageError, _load, _model_dir, log
from streamdetect.config import load_config
from streamdetect.manifest import ModelBundle, default_model_dir


def _detector_without_sinks(args: argparse.Namespace):
    from streamdetect.detector import Detector
    from streamdetect.sinks.base import SinkSet

    config, bundle = _load(args)
    return Detector(config, bundle, SinkSet([]))


def cmd_scan(args: argparse.Namespace) -> int:
    from streamdetect.scan import plot_scan, scan_file

    if not args.plot and not args.csv:
        raise UsageError("give --plot FILE.png and/or --csv FILE.csv")
    detector = _detector_without_sinks(args)
    result = scan_file(detector, args.file)
    if args.csv:
        result.write_csv(args.csv)
        log.info("wrote %s (%d windows x %d events)", args.csv, *result.scores.shape)
    if args.plot:
        plot_scan(result, args.plot, args.title)
        log.info("wrote %s", args.plot)
    for event in result.events:
        print(f"{event.label}: {event.start_s:.1f}-{event.end_s:.1f} s, peak {event.peak_score:.3f} "
              f"at {event.peak_time_s:.1f} s")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    import json

    from streamdetect.config import EventConfig
    from streamdetect.encoder import AudioEncoder, RuntimeOptions
    from streamdetect.frontend import LogMelFrontend
    from streamdetect.prompts import prompt_bank_for
    from streamdetect.tagging import audio_files, tag_files

    if args.config:
        config = load_config(args.config)
        events, model_dir = config.events, _model_dir(args, config)
    else:
        events = [EventConfig(label=x, prompts=[args.template.format(x)], threshold=0.0) for x in args.labels]
        model_dir = args.model or default_model_dir()
    bundle = ModelBundle.load(model_dir)
    runtime = RuntimeOptions(device="auto")
    bank = prompt_bank_for(bundle, events, None, runtime)
    files = audio_files(args.target)
    if not files:
        raise UsageError(f"no audio files found in {args.target}")
    frontend, encoder = LogMelFrontend(bundle.frontend_params), AudioEncoder(bundle, runtime)
    failures = 0
    for path, tags in tag_files(files, frontend, encoder, bank, bundle.logit_scale, args.top):
        if isinstance(tags, str):
            failures += 1
            print(f"streamdetect: skipped {path}: {tags}", file=sys.stderr)
        elif args.json:
            print(json.dumps({"file": str(path), "tags": [t.__dict__ for t in tags]}), flush=True)
        else:
            print(f"{path}\t" + "  ".join(f"{t.label} {t.cosine:.3f} ({t.probability:.0%})" for t in tags), flush=True)
    return 1 if failures == len(files) else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from streamdetect.evaluate import LabelsError, evaluate

    detector = _detector_without_sinks(args)
    try:
        report = evaluate(detector, args.audio, args.labels, args.collar)
    except LabelsError as e:
        raise UsageError(str(e)) from None
    if report.ignored_labels:
        log.warning("labels in %s that the config does not detect (ignored): %s", args.labels,
                    ", ".join(report.ignored_labels))
    width = max(12, *(len(x) for x in report.labels))
    print(f"{report.files} files, collar {report.collar_s:g} s")
    print(f"{'label':{width}s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'TP':>5s} {'FP':>5s} {'ref':>5s}")
    for label, m in report.per_label.items():
        print(f"{label:{width}s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['tp']:5d} {m['fp']:5d} "
              f"{m['n_ref']:5d}")
    print(f"{'micro':{width}s} {report.micro['precision']:9.3f} {report.micro['recall']:7.3f} "
          f"{report.micro['f1']:6.3f}")
    print(f"macro F1 {report.macro_f1:.3f}   PSDS1 {report.psds1:.3f}")
    if report.unreferenced_labels:
        print(f"(no reference events for {', '.join(report.unreferenced_labels)}: only false alarms counted, "
              "left out of the averages)")
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import yaml

    from streamdetect.calibrate import calibrate

    if args.target_precision is not None and not 0 < args.target_precision <= 1:
        raise UsageError(f"--target-precision must be in (0, 1], found {args.target_precision}")
    out = args.config if args.in_place else (args.out or args.config.with_suffix(".calibrated.yaml"))
    if out.exists() and not args.in_place:
        raise UsageError(f"{out} exists; pass another --out, or --in-place to rewrite {args.config}")
    detector = _detector_without_sinks(args)
    try:
        results = calibrate(detector, args.positives, args.negatives, args.target_precision,
                            args.max_false_alarms_per_hour)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"{'label':16s} {'old':>7s} {'new':>7s} {'precision':>9s} {'recall':>7s} {'FA/hour':>8s} {'pos':>4s}")
    data = yaml.safe_load(args.config.read_text())
    for i, c in enumerate(results):
        new = "-" if c.threshold is None else f"{c.threshold:7.4f}"
        print(f"{c.label:16s} {c.old_threshold:7.3f} {new:>7s} {c.precision:9.3f} {c.recall:7.3f} "
              f"{c.false_alarms_per_hour:8.2f} {c.positives:4d}")
        if c.threshold is not None:
            data["events"][i]["threshold"] = c.threshold
    unmet = [c.label for c in results if c.threshold is None]
    if unmet:
        log.warning("kept the old threshold for %s: no threshold reaches the target (or no positives given)",
                    ", ".join(unmet))
    hours = results[0].negative_hours if results else 0.0
    header = (f"# calibrated by streamdetect on {len(results)} events, {hours:.2f} h of negative audio; "
              f"target {'precision ' + str(args.target_precision) if args.target_precision is not None else str(args.max_false_alarms_per_hour) + ' false alarms/hour'}\n")
    out.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_config(out)  # what we wrote must load
    print(f"wrote {out}")
    return 0


def _index(args: argparse.Namespace, folder: Path):
    from streamdetect.encoder import RuntimeOptions, audio_encoder_file
    from streamdetect.index import AudioIndex

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    bundle = ModelBundle.load(args.model or default_model_dir())
    options = RuntimeOptions()
    return bundle, options, AudioIndex(folder, bundle, audio_encoder_file(bundle, options), args.window_s,
                                       args.hop_s).load()


def cmd_index(args: argparse.Namespace) -> int:
    from streamdetect.encoder import AudioEncoder
    from streamdetect.frontend import LogMelFrontend

    bundle, options, index = _index(args, args.folder)
    report = index.update(LogMelFrontend(bundle.frontend_params), AudioEncoder(bundle, options))
    index.save()
    for name, error in report["failed"]:
        print(f"streamdetect: skipped {name}: {error}", file=sys.stderr)
    print(f"{len(index.entries)} files indexed in {index.path}: {len(report['added'])} added, "
          f"{len(report['updated'])} changed, {len(report['unchanged'])} unchanged, "
          f"{len(report['removed'])} removed, {len(report['failed'])} failed")
    return 0


def _query_embedding(args: argparse.Namespace, bundle: ModelBundle, options):
    """The text query (through the prompt cache) or the ``--like`` example's embedding."""
    from streamdetect.config import EventConfig
    from streamdetect.encoder import AudioEncoder
    from streamdetect.frontend import LogMelFrontend
    from streamdetect.prompts import prompt_bank_for
    from streamdetect.tagging import clip_embedding

    if args.like is not None:
        return clip_embedding(args.like, LogMelFrontend(bundle.frontend_params), AudioEncoder(bundle, options))
    bank = prompt_bank_for(bundle, [EventConfig(label="q", prompts=[args.query], threshold=0.0)], None, options,
                           refined=False)
    return bank.events[0]


def cmd_search(args: argparse.Namespace) -> int:
    import json

    if (args.query is None) == (args.like is None):
        raise UsageError("give a text query or --like FILE (one of them)")
    if args.log is not None:
        return _search_log(args)
    if args.since or args.until:
        raise UsageError("--since/--until filter an embedding log: add --log DIR")
    bundle, options, index = _index(args, args.dir)
    if not index.entries:
        raise UsageError(f"no index for this model in {args.dir}; run: streamdetect index {args.dir}")
    query = _query_embedding(args, bundle, options)
    for rank, hit in enumerate(index.search(query, args.top), start=1):
        if args.json:
            print(json.dumps(hit.__dict__))
        else:
            print(f"{rank:3d}. {hit.score:.3f}  {hit.path}  (best window {hit.start_s:.1f}-{hit.end_s:.1f} s)")
    return 0


def _search_log(args: argparse.Namespace) -> int:
    import json
    from datetime import datetime

    from streamdetect.embedding_log import log_key, read_log, stretches
    from streamdetect.encoder import RuntimeOptions
    from streamdetect.prompts import normalize
    from streamdetect.sinks.sqlite import parse_when

    try:
        since, until = (args.since and datetime.fromisoformat(parse_when(args.since)).timestamp(),
                        args.until and datetime.fromisoformat(parse_when(args.until)).timestamp())
    except ValueError as e:
        raise UsageError(str(e)) from None
    bundle = ModelBundle.load(args.model or default_model_dir())
    try:
        logged = read_log(args.log, log_key(bundle), since or None, until or None)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    if not logged.wall.size:
        print("no logged windows in that time range", file=sys.stderr)
        return 0
    query = normalize(np.asarray(_query_embedding(args, bundle, RuntimeOptions()), np.float32))
    scores = logged.embeddings.astype(np.float32) @ query
    for rank, hit in enumerate(stretches(logged, scores, args.top, args.drop), start=1):
        if args.json:
            print(json.dumps(hit.__dict__))
        else:
            print(f"{rank:3d}. {hit.score:.3f}  {hit.stream}  {hit.start_s:.1f}-{hit.end_s:.1f} s  "
                  f"({hit.time_from} .. {hit.time_to}, {hit.windows} windows)")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from streamdetect.refine import FeedbackError, mark_feedback

    verdict = "confirmed" if args.confirm else "rejected"
    try:
        event_id, label = mark_feedback(args.db, args.event, verdict)
    except FeedbackError as e:
        raise UsageError(str(e)) from None
    print(f"{label} event {event_id} {verdict}; run `streamdetect refine --config CONFIG --db {args.db}` to use it")
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from streamdetect.encoder import RuntimeOptions
    from streamdetect.prompts import prompt_bank_for, refinements_dir
    from streamdetect.refine import (
        FeedbackError,
        RefinementStore,
        RefineParams,
        feedback_embeddings,
        prompt_key,
        rocchio,
    )

    config, bundle = _load(args)
    store = RefinementStore(refinements_dir(bundle))
    try:
        if args.undo is not None:
            now = store.undo(args.undo)
            print(f"{args.undo}: now using " + (f"refinement v{now}" if now else "the plain prompts")
                  + " (send SIGHUP to a running detector)")
            return 0
        params = RefineParams(args.alpha, args.beta, args.max_angle)
        if not args.db.is_file():
            raise FeedbackError(f"no event database at {args.db} (a `sqlite` sink writes one)")
    except FeedbackError as e:
        raise UsageError(str(e)) from None
    bank = prompt_bank_for(bundle, config.events, config.prompt_cache, RuntimeOptions(device=config.runtime.device),
                           refined=False)
    clip_embedding = _clip_embedder(args.clips, bundle, config) if args.clips else None
    for event, base in zip(config.events, bank.events, strict=True):
        fb = feedback_embeddings(args.db, event.label, clip_embedding)
        if fb.without_embedding:
            log.warning("%s: %d marked event(s) have no stored embedding (recorded before embeddings were "
                        "stored) and are left out", event.label, fb.without_embedding)
        if not fb.confirmed.size and not fb.rejected.size:
            print(f"{event.label}: no feedback, unchanged")
            continue
        vector = rocchio(base, fb.confirmed, fb.rejected, params)
        angle = float(np.degrees(np.arccos(np.clip(vector @ base, -1, 1))))
        version = store.save(event.label, vector, {
            "prompt_key": prompt_key(event.prompts, bundle.text_key), "prompts": list(event.prompts),
            "confirmed": int(fb.confirmed.shape[0]), "rejected": int(fb.rejected.shape[0]),
            "alpha": params.alpha, "beta": params.beta, "max_angle_deg": params.max_angle_deg,
            "angle_deg": round(angle, 3), "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        clips = f", {fb.from_clips} from saved clips" if args.clips else ""
        print(f"{event.label}: v{version} from {fb.confirmed.shape[0]} confirmed, {fb.rejected.shape[0]} rejected"
              f"{clips} (moved {angle:.1f} degrees)")
    print(f"refinements in {store.directory}; send SIGHUP to a running detector to use them")
    return 0


def _clip_embedder(folder: Path, bundle, config):
    """Event id -> embedding of its saved clip (a `clips` sink folder), or None when it has none."""
    from streamdetect.encoder import AudioEncoder, RuntimeOptions
    from streamdetect.frontend import LogMelFrontend
    from streamdetect.sinks.clips import scan_clips
    from streamdetect.tagging import clip_embedding

    if not folder.is_dir():
        raise UsageError(f"--clips {folder}: no such folder (give the `dir` of a clips sink)")
    by_id = {clip.event_id8: clip.path for clip in scan_clips(folder)}
    frontend, encoder = None, None

    def embed(event_id: str):
        nonlocal frontend, encoder
        path = by_id.get(event_id[:8])
        if path is None:
            return None
        if encoder is None:  # opened only when a marked event has a clip
            frontend = LogMelFrontend(bundle.frontend_params)
            encoder = AudioEncoder(bundle, RuntimeOptions(device=config.runtime.device))
        return clip_embedding(path, frontend, encoder)

    return embed


def cmd_events(args: argparse.Namespace) -> int:
    import csv

    from streamdetect.sinks.sqlite import COLUMNS, parse_when, query_events

    try:
        rows = query_events(args.db, args.label, args.since and parse_when(args.since),
                            args.until and parse_when(args.until), args.limit)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        return 0
    for r in rows:
        extent = f"{r['start_s']:.1f}-{r['end_s']:.1f} s" if r["end_s"] is not None else f"from {r['start_s']:.1f} s"
        print(f"{r['time']}  {r['stream']:16s} {r['label']:16s} {r['phase']:5s} {extent:18s} "
              f"peak {r['peak_score']:.3f}")
    print(f"{len(rows)} records", file=sys.stderr)
    return 0
