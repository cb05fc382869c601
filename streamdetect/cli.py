"""Command line: parse -> load config -> run. Errors a user can fix are printed without a traceback."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from streamdetect import __version__
from streamdetect.config import Config, ConfigError, load_config
from streamdetect.export import ExportError  # torch is imported inside export_model(), not here
from streamdetect.manifest import DEFAULT_MODEL_ID, ModelBundle, ModelError, default_model_dir
from streamdetect.sinks.base import SinkError
from streamdetect.sources.base import SourceError

log = logging.getLogger("streamdetect")


class UsageError(RuntimeError):
    """A problem with how the command was called; printed as is, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamdetect", description="Listen for sounds described in plain words.")
    p.add_argument("--version", action="version", version=f"streamdetect {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", parents=[common], help="turn a Hugging Face CLAP checkpoint into ONNX encoders + manifest")
    e.add_argument("--model", default=DEFAULT_MODEL_ID, help=f"hub id or local directory (default {DEFAULT_MODEL_ID})")
    e.add_argument("--out", type=Path, help="output directory (default models/<model-name>)")
    e.add_argument("--revision", help="hub revision (branch, tag or commit) to export")
    e.add_argument("--force", action="store_true", help="replace an existing export in --out")

    r = sub.add_parser("run", parents=[common], help="detect the configured events in a file or a live input")
    r.add_argument("--config", required=True, type=Path, help="YAML config (see configs/)")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--input", type=Path, help="audio file to analyse as fast as possible, then exit")
    src.add_argument("--device", help="input device index or name substring ('default' for the default input)")
    r.add_argument("--model", type=Path, help="exported model directory (default: the config's `model`)")

    pr = sub.add_parser("prompts", parents=[common], help="embed (and cache) a config's prompts and show how they relate")
    pr.add_argument("--config", required=True, type=Path)
    pr.add_argument("--model", type=Path)

    sc = sub.add_parser("scan", parents=[common], help="similarity of every window to every event, as CSV and plot")
    sc.add_argument("file", type=Path, help="recording to scan")
    sc.add_argument("--config", required=True, type=Path)
    sc.add_argument("--model", type=Path)
    sc.add_argument("--plot", type=Path, help="write the waveform / mel / similarity plot here (PNG)")
    sc.add_argument("--csv", type=Path, help="write time x event scores here")
    sc.add_argument("--title", help="plot title (default: the file name)")

    tg = sub.add_parser("tag", parents=[common], help="zero-shot tags for whole clips (a file or a folder)")
    tg.add_argument("target", type=Path, help="audio file or folder")
    labels = tg.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", nargs="+", help="candidate labels, e.g. --labels dog rain 'glass breaking'")
    labels.add_argument("--config", type=Path, help="use the events (and their prompts) of a config")
    tg.add_argument("--template", default="This is a sound of {}.", help="prompt for each --labels entry")
    tg.add_argument("--top", type=int, default=3)
    tg.add_argument("--json", action="store_true", help="one JSON object per file instead of a table")
    tg.add_argument("--model", type=Path)

    ev = sub.add_parser("evaluate", parents=[common],
                        help="event-based P/R/F1 and PSDS1 of the streaming pipeline against strong labels")
    ev.add_argument("--config", required=True, type=Path)
    ev.add_argument("--audio", required=True, type=Path, help="folder of recordings (or one file)")
    ev.add_argument("--labels", required=True, type=Path, help="DCASE TSV: filename onset offset event_label")
    ev.add_argument("--collar", type=float, default=1.0, help="onset/offset collar in seconds")
    ev.add_argument("--json", type=Path, help="also write the report as JSON")
    ev.add_argument("--model", type=Path)

    ca = sub.add_parser("calibrate", parents=[common],
                        help="pick each event's threshold from positive and negative recordings")
    ca.add_argument("--config", required=True, type=Path)
    ca.add_argument("--positives", required=True, type=Path,
                    help="folder with one sub-folder per event label (or a TSV list: path<TAB>label)")
    ca.add_argument("--negatives", required=True, type=Path, help="folder of audio containing none of the events")
    target = ca.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-precision", type=float, help="e.g. 0.9")
    target.add_argument("--max-false-alarms-per-hour", type=float, help="on the negative audio, e.g. 1")
    where = ca.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="new config (default: <config>.calibrated.yaml; never overwritten)")
    where.add_argument("--in-place", action="store_true", help="rewrite --config itself")
    ca.add_argument("--model", type=Path)

    ix = sub.add_parser("index", parents=[common], help="embed a folder of audio for `search` (incremental)")
    ix.add_argument("folder", type=Path)
    ix.add_argument("--window-s", type=float, default=3.0)
    ix.add_argument("--hop-s", type=float, default=1.0)
    ix.add_argument("--model", type=Path)

    se = sub.add_parser("search", parents=[common], help="rank indexed files for a text query or an example")
    se.add_argument("query", nargs="?", help='what to look for, e.g. "a chainsaw"')
    se.add_argument("--like", type=Path, help="an example recording instead of a text query")
    se.add_argument("--dir", type=Path, default=Path("."), help="the indexed folder (default: here)")
    se.add_argument("--top", type=int, default=10)
    se.add_argument("--window-s", type=float, default=3.0)
    se.add_argument("--hop-s", type=float, default=1.0)
    se.add_argument("--json", action="store_true")
    se.add_argument("--model", type=Path)

    es = sub.add_parser("events", parents=[common], help="list records stored by a `sqlite` sink")
    es.add_argument("--db", type=Path, default=Path("events.db"))
    es.add_argument("--label")
    es.add_argument("--since", help="ISO-8601 time or an age: 7d, 12h, 30m")
    es.add_argument("--until", help="ISO-8601 time or an age")
    es.add_argument("--limit", type=int)
    es.add_argument("--csv", action="store_true", help="CSV instead of a table")

    sub.add_parser("devices", parents=[common], help="list audio input devices")
    return p


def _model_dir(args: argparse.Namespace, config: Config) -> Path:
    if args.model:
        return args.model
    if config.model:
        return Path(config.model)
    return default_model_dir()


def _load(args: argparse.Namespace) -> tuple[Config, ModelBundle]:
    config = load_config(args.config)
    model_dir = _model_dir(args, config)
    try:
        return config, ModelBundle.load(model_dir)
    except ModelError as e:
        origin = "--model" if args.model else (f"{args.config}: model" if config.model else "default location")
        raise ModelError(f"{e}\n(model directory from {origin})") from None


def _source(args: argparse.Namespace, config: Config, sample_rate: int):
    from streamdetect.sources import SOURCES

    if args.input is not None:
        from streamdetect.sources.file import FileOptions, FileSource

        return FileSource(FileOptions(path=str(args.input)), sample_rate)
    if args.device is not None:
        from streamdetect.sources.microphone import MicrophoneOptions, MicrophoneSource

        return MicrophoneSource(MicrophoneOptions(device=args.device), sample_rate)
    if config.source is None:
        raise UsageError(f"nothing to listen to: give --input FILE or --device DEV, or add a `source:` to {args.config}")
    cls = SOURCES.get(config.source.type)
    return cls(cls.Options.model_validate(config.source.options), sample_rate)


def cmd_run(args: argparse.Namespace) -> int:
    from streamdetect.detector import Detector
    from streamdetect.engine import run_sources
    from streamdetect.sinks.base import build_sinks

    config, bundle = _load(args)
    source = _source(args, config, bundle.sample_rate)
    sinks = build_sinks(config.sinks)
    stop = threading.Event()

    def _stop(signum: int, _frame) -> None:
        log.info("%s received, finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        detector = Detector(config, bundle, sinks)
        log.info("listening to %s for %s (%s)", source.name, ", ".join(detector.bank.labels),
                 getattr(detector.encoder, "file", "custom encoder"))
        summaries, stats = run_sources(detector, [source], stop)
    finally:
        sinks.close()
    for summary in summaries:
        speed = summary.audio_s / summary.wall_s if summary.wall_s > 0 else float("inf")
        log.info(
            "%s: %.1f s of audio, %d windows, %d records, %d dropped windows, %.1fx real time%s",
            summary.stream, summary.audio_s, summary.windows, summary.records, summary.dropped_windows, speed,
            "".join(f", {k} {v}" for k, v in summary.source_stats.items()),
        )
    log.info(
        "inference: %d windows in %d batches, front end %.1f ms/window, encoder %.1f ms/window, "
        "latency p50 %.0f ms p99 %.0f ms, max backlog %d windows",
        stats.windows, stats.batches, 1000 * detector.frontend_seconds / max(stats.windows, 1),
        1000 * detector.encoder_seconds / max(stats.windows, 1), stats.latency_ms(50), stats.latency_ms(99),
        stats.max_backlog,
    )
    if any(sinks.failures.values()):
        log.warning("sink failures: %s", sinks.failures)
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from streamdetect.encoder import RuntimeOptions
    from streamdetect.prompts import prompt_bank_for

    config, bundle = _load(args)
    bank = prompt_bank_for(bundle, config.events, config.prompt_cache, RuntimeOptions(device=config.runtime.device))
    sims = bank.events @ bank.events.T
    width = max(len(label) for label in bank.labels)
    print(f"{len(bank.labels)} events, {len(bank.negative_texts)} negative prompts, embedding dim {bank.events.shape[1]}")
    print("cosine similarity between events (high values mean the prompts may be confused):")
    print(" " * (width + 2) + "  ".join(f"{label[:8]:>8s}" for label in bank.labels))
    for label, row in zip(bank.labels, sims, strict=True):
        print(f"{label:>{width}s}  " + "  ".join(f"{v:8.3f}" for v in row))
    return 0


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


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from streamdetect.config import EventConfig
    from streamdetect.encoder import AudioEncoder
    from streamdetect.frontend import LogMelFrontend
    from streamdetect.prompts import prompt_bank_for
    from streamdetect.tagging import clip_embedding

    if (args.query is None) == (args.like is None):
        raise UsageError("give a text query or --like FILE (one of them)")
    bundle, options, index = _index(args, args.dir)
    if not index.entries:
        raise UsageError(f"no index for this model in {args.dir}; run: streamdetect index {args.dir}")
    if args.like is not None:
        query = clip_embedding(args.like, LogMelFrontend(bundle.frontend_params), AudioEncoder(bundle, options))
    else:
        bank = prompt_bank_for(bundle, [EventConfig(label="q", prompts=[args.query], threshold=0.0)], None, options)
        query = bank.events[0]
    for rank, hit in enumerate(index.search(query, args.top), start=1):
        if args.json:
            print(json.dumps(hit.__dict__))
        else:
            print(f"{rank:3d}. {hit.score:.3f}  {hit.path}  (best window {hit.start_s:.1f}-{hit.end_s:.1f} s)")
    return 0


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


def cmd_devices(_args: argparse.Namespace) -> int:
    from streamdetect.sources.microphone import input_devices

    devices = input_devices()
    if not devices:
        print("no audio input devices found")
        return 1
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} [{d['index']:2d}] {d['name']}  ({d['hostapi']}, {d['channels']} ch, {d['sample_rate']:g} Hz)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from streamdetect.export import export_model

    export_model(args.model, args.out or default_model_dir(args.model), revision=args.revision, force=args.force)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Our own messages at the chosen level; libraries (onnxscript, onnx_ir ...) only when they warn.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(args.log_level)
    commands = {"run": cmd_run, "export": cmd_export, "devices": cmd_devices, "prompts": cmd_prompts,
                "scan": cmd_scan, "tag": cmd_tag, "evaluate": cmd_evaluate, "calibrate": cmd_calibrate, "index": cmd_index, "search": cmd_search,
                "events": cmd_events}
    try:
        return commands[args.command](args)
    except (ConfigError, ModelError, UsageError) as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 2
    except SinkError as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 2
    except (SourceError, ExportError) as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 1
