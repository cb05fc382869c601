"""The detector's own verbs: ``run`` (the daemon), ``prompts``, ``devices`` and ``export``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from streamdetect.cli.common import UsageError, load, log
from streamdetect.config import Config, load_config
from streamdetect.config.root import same_names
from streamdetect.daemon.control import ControlError
from streamdetect.daemon.engine import EngineStats
from streamdetect.daemon.reload import Reloader
from streamdetect.daemon.service import DetectorService, preflight
from streamdetect.model.manifest import (
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_ID,
    MANIFEST_NAME,
    ModelBundle,
    default_model_dir,
)
from streamdetect.pipeline.streams import RunSummary, StreamSettings
from streamdetect.sources.base import AudioSource
from streamdetect.util.locks import PathInUse
from streamdetect.util.signals import StopSignals
from streamdetect.web.tokens import WebError


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
        source = cls(entry.options, sample_rate, entry.name)
        built.append(source)
        settings.append(StreamSettings(entry.gate, tuple(entry.events) if entry.events is not None else None,
                                       tuple(entry.schedule) if entry.schedule is not None else None))
    return built, settings


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon. SIGHUP is taken over first (the entry point's latch held it during the imports): from here
    on a hangup is a reload request, queued until detection runs, and never ends the process."""
    reloader = Reloader(lambda: load_config(args.config), str(args.config))
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reloader.request())
    if args.hangups is not None and args.hangups.caught:
        reloader.request()
    try:
        return _run(args, reloader)
    finally:
        reloader.close()


def _run(args: argparse.Namespace, reloader: Reloader) -> int:
    config, bundle = load(args)
    try:
        preflight(config)
    except (ControlError, WebError) as e:
        raise UsageError(f"{args.config}: {e}") from None
    sources, settings = _sources(args, config, bundle.sample_rate)
    problem = same_names([s.name for s in sources], "sources" if config.sources else "source")
    if problem is not None:  # the names unnamed sources took from their file, URL or device
        raise UsageError(f"{args.config}: {problem}")
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("%s received, finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        service = DetectorService(config, bundle, config_path=args.config)
    except (ControlError, WebError, PathInUse) as e:
        raise UsageError(f"{args.config}: {e}") from None
    with service:
        reloader.attach(service.gate)
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
            "".join(f", {k} {v}" for k, v in {**station_counts(service.config, summary),
                                              **summary.source_stats}.items()),
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


def station_counts(config: Config, summary: RunSummary) -> dict[str, int]:
    """The privacy and schedule counters, where those features are configured."""
    counts = {}
    if config.privacy.enabled:
        counts["private windows"] = summary.private_windows
    if any(e.schedule for e in config.events) or any(s.schedule for s in config.all_sources):
        counts["scheduled-out windows"] = summary.scheduled_out_windows
    return counts


def cmd_prompts(args: argparse.Namespace) -> int:
    from streamdetect.embed.encoder.base import RuntimeOptions
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


def cmd_devices(args: argparse.Namespace) -> int:
    """The encoder `run` would use here (what runtime.device auto measured fastest on this CPU), then the audio
    inputs; a missing model is one line, not an error: the audio inputs are worth listing without one."""
    _print_encoder_choice(args)
    from streamdetect.sources.microphone import input_devices

    devices = input_devices()
    if not devices:
        print("no audio input devices found")
        return 1
    print("audio inputs:")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} [{d['index']:2d}] {d['name']}  ({d['hostapi']}, {d['channels']} ch, {d['sample_rate']:g} Hz)")
    return 0


def _print_encoder_choice(args: argparse.Namespace) -> None:
    from streamdetect.cli.common import model_dir
    from streamdetect.embed.encoder import runtime_choice
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.encoder.calibration import CALIBRATION_NAME, load_calibration
    from streamdetect.embed.encoder.device import audio_encoder_file
    from streamdetect.model.manifest import ModelError
    from streamdetect.util.cpu import CpuInfo

    config = load_config(args.config) if args.config else None
    folder = model_dir(args, config) if config else args.model or default_model_dir()
    cpu = CpuInfo.read()
    print(f"CPU: {cpu.model}, {cpu.cores} cores, {' '.join(cpu.vector_extensions) or 'no AVX2'}")
    try:
        bundle = ModelBundle.load(folder)
    except ModelError:
        print(f"encoder: no exported model at {folder} (give --model DIR); `streamdetect devices --model DIR` "
              "shows which engine and precision runtime.device auto runs here")
        return
    options = RuntimeOptions.from_config(config.runtime) if config else RuntimeOptions()
    chosen = runtime_choice(bundle, options, say=False, retime=args.retime)
    where = {"cpu": "onnxruntime", "openvino": "OpenVINO"}.get(chosen.device, chosen.device)
    precision = "" if chosen.precision == "auto" else f" {chosen.precision}"
    print(f"encoder for {folder} (runtime.device {options.device}, precision {options.precision}): "
          f"{where}{precision}, {audio_encoder_file(bundle, chosen)}")
    calibration = load_calibration(bundle, options) if options.device == "auto" else None
    if calibration is not None:
        print(f"  measured on this CPU ({calibration.measured_at}, load {calibration.load_average}, "
              f"at least {calibration.rounds} runs each, {folder / CALIBRATION_NAME}): {calibration.summary()}")
        for label, error in calibration.errors.items():
            print(f"  {label} could not run: {error}")
    elif options.device == "auto":
        print("  an NVIDIA driver is present: auto runs onnxruntime's GPU providers (nothing is timed)")
    else:
        print("  an explicit runtime.device is used as given (nothing is timed)")


def cmd_export(args: argparse.Namespace) -> int:
    """SIGTERM and Ctrl-C unwind the export (``StopSignals``), so its ``finally`` removes the ``.out.*`` staging
    folder, and the export is never completed after either, even when a library caught the exception."""
    from streamdetect.export.convert import export_model
    from streamdetect.export.random_weights import export_random_weights

    if args.random_weights and (args.model != DEFAULT_MODEL_ID or args.revision is not None):
        raise UsageError("--random-weights builds its own checkpoint: drop --model and --revision")
    stops = StopSignals()

    def report(message: str) -> None:  # each step of the export is a point where a caught signal ends it
        stops.check()
        print(message, file=sys.stderr, flush=True)

    out = args.out or default_model_dir(args.model)
    if args.triton_repo is None or args.force or not (out / MANIFEST_NAME).is_file():
        manifest = (export_random_weights(out, report=report, force=args.force) if args.random_weights else
                    export_model(args.model, out, revision=args.revision, report=report, force=args.force))
        model = "" if out == DEFAULT_MODEL_DIR else f" --model {out}"
        print(f"next: streamdetect run --config configs/home.yaml --input RECORDING{model}"
              + ("  (random weights: this shows the tool, not detection)"
                 if manifest["source"]["random_weights"] else ""), file=sys.stderr)
    if args.triton_repo is not None:
        _write_triton_repo(args, out)
    return 0


def _write_triton_repo(args: argparse.Namespace, out: Path) -> None:
    from streamdetect.model.triton_repo import TritonRepoOptions, served_encoder, write_triton_repo

    try:
        preferred = tuple(int(b) for b in args.triton_preferred.split(",") if b.strip())
    except ValueError as e:
        raise UsageError(f"--triton-preferred {args.triton_preferred!r}: give batch sizes like 8,16,32") from e
    options = TritonRepoOptions(args.triton_name, args.triton_kind, args.triton_precision, args.triton_max_batch,
                                preferred, args.triton_delay_us, args.triton_instances, args.triton_backend)
    bundle = ModelBundle.load(out)
    model_dir = write_triton_repo(bundle, args.triton_repo, options)
    log.info("wrote the Triton model %s (%s, %s backend) to %s", options.name, served_encoder(bundle, options),
             options.backend, model_dir)
