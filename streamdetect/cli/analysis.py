"""Offline verbs over files: ``scan``, ``tag``, ``evaluate`` and ``calibrate``."""

from __future__ import annotations

import argparse
import sys

from streamdetect.cli.common import (
    UsageError,
    check_output,
    detector_without_sinks,
    log,
    model_dir,
    need_module,
)
from streamdetect.config import load_config
from streamdetect.config.yamledit import write_thresholds
from streamdetect.model.manifest import ModelBundle, default_model_dir


def cmd_scan(args: argparse.Namespace) -> int:
    from streamdetect.analysis.scan import plot_scan, scan_file

    if not args.plot and not args.csv:
        raise UsageError("give --plot FILE.png and/or --csv FILE.csv")
    check_output(args.plot, "--plot")
    check_output(args.csv, "--csv")
    if args.plot:
        need_module("matplotlib", "plot", "--plot")
    detector = detector_without_sinks(args)
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

    from tqdm import tqdm

    from streamdetect.analysis.tag import tag_files
    from streamdetect.config import EventConfig
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.prompts.assemble import prompt_bank_for
    from streamdetect.sources.file import audio_files

    if args.config:
        config = load_config(args.config)
        events, folder = config.events, model_dir(args, config)
        runtime = RuntimeOptions.from_config(config.runtime)
    else:
        events = [EventConfig(label=x, prompts=[args.template.format(x)], threshold=0.0) for x in args.labels]
        folder, runtime = args.model or default_model_dir(), RuntimeOptions()
    bundle = ModelBundle.load(folder)
    bank = prompt_bank_for(bundle, events, None, runtime)
    files = audio_files(args.target)
    if not files:
        raise UsageError(f"no audio files found in {args.target}")
    frontend, encoder = LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, runtime)
    failures = 0
    # tqdm.write: a line printed while the bar is drawn would be glued onto it
    for path, tags in tag_files(files, frontend, encoder, bank, bundle.logit_scale, args.top):
        if isinstance(tags, str):
            failures += 1
            tqdm.write(f"streamdetect: skipped {path}: {tags}", file=sys.stderr)
        elif args.json:
            tqdm.write(json.dumps({"file": str(path), "tags": [t.__dict__ for t in tags]}), file=sys.stdout)
        else:
            tqdm.write(f"{path}\t" + "  ".join(f"{t.label} {t.cosine:.3f} ({t.probability:.0%})" for t in tags),
                       file=sys.stdout)
        sys.stdout.flush()
    return 1 if failures == len(files) else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from streamdetect.analysis.evaluate import LabelsError, evaluate

    check_output(args.json, "--json")
    need_module("sed_scores_eval", "eval", "evaluate")
    detector = detector_without_sinks(args)
    try:
        if not 0 < args.collar <= 60 or not 0 <= args.offset_collar_rate <= 10:
            raise LabelsError(f"--collar must be within (0, 60] s (sed_eval needs a collar) and --offset-collar-rate "
                              f"within 0..10, found {args.collar} and {args.offset_collar_rate}")
        report = evaluate(detector, args.audio, args.labels, args.collar, args.offset_collar_rate,
                          args.merge_touching, args.scores_dir, timing=args.timing)
    except LabelsError as e:
        raise UsageError(str(e)) from None
    if report.ignored_labels:
        log.warning("labels in %s that the config does not detect (ignored): %s", args.labels,
                    ", ".join(report.ignored_labels))
    width = max(12, *(len(x) for x in report.labels))
    offset = (f", offset collar max({report.collar_s:g} s, {report.offset_collar_rate:g} x length)"
              if report.offset_collar_rate else "")
    print(f"{report.files} files, collar {report.collar_s:g} s{offset}, touching references "
          f"{'merged' if report.merge_touching else 'kept apart'}, detections timed as {report.timing}")
    print(f"{'label':{width}s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'TP':>5s} {'FP':>5s} {'ref':>5s}")
    for label, m in report.per_label.items():
        print(f"{label:{width}s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['tp']:5d} {m['fp']:5d} "
              f"{m['n_ref']:5d}")
    print(f"{'micro':{width}s} {report.micro['precision']:9.3f} {report.micro['recall']:7.3f} "
          f"{report.micro['f1']:6.3f}")
    print(f"macro F1 {report.macro_f1:.3f}   PSDS1 {report.psds1:.3f}   PSDS2 {report.psds2:.3f}")
    if report.unreferenced_labels:
        print(f"(no reference events for {', '.join(report.unreferenced_labels)}: their false alarms count in "
              "micro; left out of macro F1 and PSDS)")
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from streamdetect.analysis.calibrate import calibrate

    if args.target_precision is not None and not 0 < args.target_precision <= 1:
        raise UsageError(f"--target-precision must be in (0, 1], found {args.target_precision}")
    out = args.config if args.in_place else (args.out or args.config.with_suffix(".calibrated.yaml"))
    if out.exists() and not args.in_place:
        raise UsageError(f"{out} exists; pass another --out, or --in-place to rewrite {args.config}")
    check_output(out, "--out")
    detector = detector_without_sinks(args)
    try:
        results = calibrate(detector, args.positives, args.negatives, args.target_precision,
                            args.max_false_alarms_per_hour)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"{'label':16s} {'old':>7s} {'new':>7s} {'precision':>9s} {'recall':>7s} {'FA/hour':>8s} {'pos':>4s}")
    for c in results:
        new = "-" if c.threshold is None else f"{c.threshold:7.4f}"
        print(f"{c.label:16s} {c.old_threshold:7.3f} {new:>7s} {c.precision:9.3f} {c.recall:7.3f} "
              f"{c.false_alarms_per_hour:8.2f} {c.positives:4d}")
    no_positives = [c.label for c in results if c.threshold is None and not c.positives]
    unreached = [c.label for c in results if c.threshold is None and c.positives]
    if no_positives:
        log.warning("kept the old threshold for %s: no positive clips given (add %s/<label>/*.wav)",
                    ", ".join(no_positives), args.positives)
    if unreached:
        log.warning("kept the old threshold for %s: no threshold reaches the target on these clips (lower the "
                    "target, or add clearer positives)", ", ".join(unreached))
    target = (f"precision {args.target_precision}" if args.target_precision is not None
              else f"{args.max_false_alarms_per_hour} false alarms/hour")
    hours = results[0].negative_hours if results else 0.0
    write_thresholds(args.config, out, {c.label: c.threshold for c in results if c.threshold is not None},
                     f"calibrated by streamdetect on {len(results)} events, {hours:.2f} h of negative audio; "
                     f"target {target}")
    load_config(out)  # what we wrote must load
    print(f"wrote {out}")
    return 0
