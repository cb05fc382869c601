"""The detector's own verbs: ``run`` (the daemon), ``prompts``, ``devices`` and ``export``."""

from __future__ import annotations

import argparse
import signal
import threading

from streamdetect.cli.common import UsageError, load, log
from streamdetect.config import Config, ConfigError, load_config
from streamdetect.daemon.control import ControlError
from streamdetect.daemon.engine import EngineStats
from streamdetect.daemon.service import DetectorService, preflight
from streamdetect.model.manifest import default_model_dir
from streamdetect.pipeline.streams import RunSummary, StreamSettings
from streamdetect.sources.base import AudioSource
from streamdetect.util.locks import PathInUse


def _sources(args: argparse.Namespace, config: Config, sample_rate: int,
             ) -> tuple[list[AudioSource], list[StreamSettings]]:
    """--input / --device if given, else every source of the config, with each stream's own settings."""
    from streamdetect.sources import SOURCES

    if args.input is not None:
        from streamdetect.sources.file import FileOptions, FileSource

        return [FileSource(FileOptions(path=str(args.input)), sample_rate)], [StreamSettings()]
    if args.device is not None:
        from streamdetect.sources.microphone import MicrophoneOptions, MicrophoneSource

        return [MicrophoneSource(MicrophoneOptions(device=args.device), sample_rate)], [StreamSettings()]
    if not config.all_sources:
        raise UsageError(f"nothing to listen to: give --input FILE or --device DEV, or add `sources:` to {args.config}")
    built, settings = [], []
    for entry in config.all_sources:
        cls = SOURCES.get(entry.type)
        source = cls(cls.Options.model_validate(entry.options), sample_rate, entry.name)
        built.append(source)
        settings.append(StreamSettings(entry.gate, tuple(entry.events) if entry.events is not None else None))
    return built, settings


def cmd_run(args: argparse.Namespace) -> int:
    config, bundle = load(args)
    try:
        preflight(config)
    except ControlError as e:
        raise UsageError(f"{args.config}: {e}") from None
    sources, settings = _sources(args, config, bundle.sample_rate)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("%s received, finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    service: DetectorService | None = None

    def _reload(_signum: int, _frame: object) -> None:
        try:
            new = load_config(args.config)
        except ConfigError as e:
            log.error("SIGHUP: config reload rejected, the running config stays:\n%s", e)
            return
        log.info("SIGHUP: reloading %s", args.config)
        if service is not None:
            service.request_reload(new)

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _reload)
    try:
        service = DetectorService(config, bundle)
    except (ControlError, PathInUse) as e:
        raise UsageError(f"{args.config}: {e}") from None
    with service:
        summaries, stats = service.run(sources, stop, settings)
    _log_summary(service, summaries, stats)
    return 0


def _log_summary(service: DetectorService, summaries: list[RunSummary], stats: EngineStats) -> None:
    detector, sinks = service.detector, service.sinks
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


def cmd_prompts(args: argparse.Namespace) -> int:
    from streamdetect.pipeline.encoder.base import RuntimeOptions
    from streamdetect.prompts.assemble import prompt_bank_for

    config, bundle = load(args)
    bank = prompt_bank_for(bundle, config.events, config.prompt_cache, RuntimeOptions.from_config(config.runtime))
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
    from streamdetect.model.export import export_model

    export_model(args.model, args.out or default_model_dir(args.model), revision=args.revision, force=args.force)
    return 0
