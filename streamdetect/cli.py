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


class JsonFormatter(logging.Formatter):
    """Structured log lines: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class UsageError(RuntimeError):
    """A problem with how the command was called; printed as is, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamdetect", description="Listen for sounds described in plain words.")
    p.add_argument("--version", action="version", version=f"streamdetect {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    common.add_argument("--log-json", action="store_true", help="one JSON object per log line (for journald, Loki ...)")
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
    se.add_argument("--log", type=Path, help="search the `embedding_log` directory of a running detector instead")
    se.add_argument("--since", help="with --log: ISO-8601 time or an age: 7d, 12h, 30m")
    se.add_argument("--until", help="with --log: ISO-8601 time or an age")
    se.add_argument("--drop", type=float, default=0.5,
                    help="with --log: a stretch grows over neighbouring windows scoring above "
                         "best - DROP x (best - median score); 0..1")
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

    fb = sub.add_parser("feedback", parents=[common], help="mark a stored event as right or wrong (for `refine`)")
    fb.add_argument("--db", type=Path, default=Path("events.db"))
    fb.add_argument("--event", required=True, help="event id (or a unique prefix) from `streamdetect events`")
    verdict = fb.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--confirm", action="store_true")
    verdict.add_argument("--reject", action="store_true")

    rf = sub.add_parser("refine", parents=[common],
                        help="move event prompt embeddings toward confirmed and away from rejected events")
    rf.add_argument("--config", required=True, type=Path)
    rf.add_argument("--db", type=Path, default=Path("events.db"))
    rf.add_argument("--alpha", type=float, default=0.5, help="weight of the confirmed mean (0..1)")
    rf.add_argument("--beta", type=float, default=0.25, help="weight of the rejected mean (0..1)")
    rf.add_argument("--max-angle", type=float, default=20.0, help="degrees the embedding may move at most")
    rf.add_argument("--undo", metavar="LABEL", help="retire the newest refinement of LABEL instead")
    rf.add_argument("--clips", type=Path, help="folder of a `clips` sink: marked events with a saved clip are "
                    "embedded from it (whole event, current model) instead of the stored peak embedding")
    rf.add_argument("--model", type=Path)

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


def _sources(args: argparse.Namespace, config: Config, sample_rate: int) -> list:
    """--input / --device if given, else every source of the config."""
    from streamdetect.sources import SOURCES

    if args.input is not None:
        from streamdetect.sources.file import FileOptions, FileSource

        return [FileSource(FileOptions(path=str(args.input)), sample_rate)]
    if args.device is not None:
        from streamdetect.sources.microphone import MicrophoneOptions, MicrophoneSource

        return [MicrophoneSource(MicrophoneOptions(device=args.device), sample_rate)]
    if not config.all_sources:
        raise UsageError(f"nothing to listen to: give --input FILE or --device DEV, or add `sources:` to {args.config}")
    built = []
    for entry in config.all_sources:
        cls = SOURCES.get(entry.type)
        source = cls(cls.Options.model_validate(entry.options), sample_rate, entry.name)
        source.gate, source.labels = entry.gate, entry.events
        built.append(source)
    return built


def cmd_run(args: argparse.Namespace) -> int:
    from streamdetect.detector import Detector
    from streamdetect.engine import BatchingEngine, run_sources
    from streamdetect.sinks.base import build_sinks

    config, bundle = _load(args)
    token = None
    if config.control.port is not None:
        from streamdetect.control import ControlError, control_token

        try:
            token = control_token(config.control.token_env)
        except ControlError as e:
            raise UsageError(f"{args.config}: {e}") from None
    sources = _sources(args, config, bundle.sample_rate)
    sinks = build_sinks(config.sinks)
    stop = threading.Event()

    def _stop(signum: int, _frame) -> None:
        log.info("%s received, finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    engine = None

    def _reload(_signum: int, _frame) -> None:
        try:
            new = load_config(args.config)
        except ConfigError as e:
            log.error("SIGHUP: config reload rejected, the running config stays:\n%s", e)
            return
        log.info("SIGHUP: reloading %s", args.config)
        if engine is not None:
            engine.request_reload(new)

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _reload)
    server = control = embedding_log = None
    try:
        detector = Detector(config, bundle, sinks)
        if config.embedding_log.dir is not None:
            from streamdetect.embedding_log import EmbeddingLogWriter, log_key

            embedding_log = detector.embedding_log = EmbeddingLogWriter(
                Path(config.embedding_log.dir), log_key(bundle), config.embedding_log.max_days,
                config.embedding_log.queue_windows)
        if config.metrics.port is not None:
            from streamdetect.metrics import Metrics, MetricsServer

            detector.metrics = Metrics(config.metrics.stale_after_s)
            for name in sinks.failures:
                detector.metrics.sink_failures.labels(name).set_function(lambda n=name: sinks.failures[n])
                detector.metrics.sink_dropped.labels(name).set_function(lambda n=name: sinks.dropped.get(n, 0))
            server = MetricsServer(detector.metrics, config.metrics.host, config.metrics.port)
            log.info("metrics on http://%s:%d/metrics and /healthz", *server.address[:2])
        log.info("listening to %s for %s (%s)", ", ".join(s.name for s in sources), ", ".join(detector.bank.labels),
                 getattr(detector.encoder, "file", "custom encoder"))
        engine = BatchingEngine(detector)
        if token is not None:
            from streamdetect.control import ControlError, ControlServer

            try:
                control = ControlServer(lambda: detector.config, engine.request_reload, token, config.control.host,
                                        config.control.port)
            except ControlError as e:
                raise UsageError(f"{args.config}: {e}") from None
            log.info("control API on http://%s:%d/events", *control.address[:2])
        summaries, stats = run_sources(detector, sources, stop, engine=engine)
    finally:
        if control is not None:
            control.close()
        sinks.close()
        if embedding_log is not None:
            embedding_log.close()
        if server is not None:
            server.close()
    for summary in summaries:
        speed = summary.audio_s / summary.wall_s if summary.wall_s > 0 else float("inf")
        log.info(
            "%s: %.1f s of audio, %d windows (%d gated as silence), %d records, %d dropped windows, "
            "%.1fx real time%s",
            summary.stream, summary.audio_s, summary.windows, summary.gated_windows, summary.records,
            summary.dropped_windows, speed,
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    log.setLevel(args.log_level)
    if args.command != "export":  # export leaves torch's own threading alone
        from streamdetect.encoder import limit_blas_threads

        limit_blas_threads()
    commands = {"run": cmd_run, "export": cmd_export, "devices": cmd_devices, "prompts": cmd_prompts}
    if args.command not in commands:
        from streamdetect import cli_tools

        commands[args.command] = getattr(cli_tools, f"cmd_{args.command}")
    try:
        return commands[args.command](args)
    except (ConfigError, ModelError, UsageError, SinkError) as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 2
    except (SourceError, ExportError) as e:
        print(f"streamdetect: {e}", file=sys.stderr)
        return 1
