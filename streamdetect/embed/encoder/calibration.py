"""What ``runtime.device: auto`` runs on a CPU: every shipped engine x precision, timed on this machine.

A fixed rule ("int8 on a CPU, OpenVINO bf16 where there are bf16 units") was right on the CPU it was measured
on and wrong elsewhere: on a 2-core AVX2-only EPYC OpenVINO fp32 beat onnxruntime fp32 and the rule never
considered it. So the candidates are timed once, each by its fastest run (load only ever slows a run down; on a
busy 2-core machine medians of 3 interleaved rounds put OpenVINO bf16 first in one process and fifth in the
next), and the fastest is cached in the model folder, keyed by what
decides speed: the CPU model and flags, the cores this process may use, the engine versions and the files'
digests. A different CPU, engine version or export finds the key changed and times again.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from streamdetect.embed.encoder.base import AudioEncoder, RuntimeOptions
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.model.manifest import ModelBundle, ModelError
from streamdetect.util.cpu import CpuInfo
from streamdetect.util.files import atomic_write

log = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"  # in the model folder; not in the manifest: a cache, rewritten per machine
CALIBRATION_VERSION = 1
ENGINES = {"cpu": "onnxruntime", "openvino": "OpenVINO"}
# where each precision can run on a CPU (fp16 on onnxruntime goes through casts: timed, it rarely wins)
ENGINE_PRECISIONS = {"cpu": ("fp32", "int8", "int8_static", "fp16"), "openvino": ("fp32", "bf16")}

Opener = Callable[[ModelBundle, RuntimeOptions], AudioEncoder]


@dataclass(frozen=True)
class Candidate:
    device: str  # a runtime.device: cpu (onnxruntime) or openvino
    precision: str

    @property
    def label(self) -> str:
        return f"{ENGINES[self.device]} {self.precision}"


def installed_version(module: str, distributions: tuple[str, ...]) -> str | None:
    """An engine's version without importing it (openvino takes 0.3-0.7 s, onnxruntime 0.3 s): a start-up that
    finds a cached choice pays only for the engine it runs. None where the module is not installed."""
    if importlib.util.find_spec(module) is None:
        return None
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def openvino_version() -> str | None:
    return installed_version("openvino", ("openvino",))


def onnxruntime_version() -> str | None:
    return installed_version("onnxruntime", ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino",
                                             "onnxruntime-directml"))


def candidates(bundle: ModelBundle, with_openvino: bool) -> list[Candidate]:
    """Every engine x precision this export shipped and this machine can run."""
    out = []
    for device, precisions in ENGINE_PRECISIONS.items():
        if device == "openvino" and not with_openvino:
            continue
        out += [Candidate(device, p) for p in precisions if p == "fp32" or bundle.shipped(p)]
    return out


def calibration_key(bundle: ModelBundle, options: RuntimeOptions, cpu: CpuInfo | None = None) -> dict[str, Any]:
    cpu = cpu or CpuInfo.read()
    files = sorted({bundle.audio_encoder_file(c.precision, on_gpu=False)
                    for c in candidates(bundle, with_openvino=True)})
    return {"version": CALIBRATION_VERSION, "cpu": cpu.model, "cpu_flags": cpu.flags_digest, "cores": cpu.cores,
            "intra_op_threads": options.intra_op_threads, "onnxruntime": onnxruntime_version(),
            "openvino": openvino_version(), "files": {name: bundle.file_digest(name) for name in files}}


@dataclass(frozen=True)
class Calibration:
    """Each candidate's fastest round on this machine, ms per window; those that could not run are in ``errors``."""

    key: dict[str, Any]
    ms_per_window: dict[str, float]  # by Candidate.label
    errors: dict[str, str]
    rounds: int  # the fewest timed runs of any candidate
    measured_at: str
    load_average: float = 0.0  # the 1-minute load when it was measured: above the core count, figures are rough

    def fastest(self, precision: str = "auto") -> Candidate | None:
        """The fastest candidate measured, among those at ``precision`` unless that is 'auto'."""
        timed = [(ms, c) for c in self.measured() if precision in ("auto", c.precision)
                 for ms in (self.ms_per_window[c.label],)]
        return min(timed, key=lambda t: t[0])[1] if timed else None

    def measured(self) -> list[Candidate]:
        by_label = {Candidate(d, p).label: Candidate(d, p) for d, ps in ENGINE_PRECISIONS.items() for p in ps}
        return [by_label[label] for label in self.ms_per_window if label in by_label]

    def summary(self) -> str:
        ranked = sorted(self.ms_per_window.items(), key=lambda kv: kv[1])
        return ", ".join(f"{label} {ms:.1f} ms" for label, ms in ranked)

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "ms_per_window": self.ms_per_window, "errors": self.errors,
                           "rounds": self.rounds, "measured_at": self.measured_at, "load_average": self.load_average,
                           "fastest": (self.fastest() or Candidate("cpu", "fp32")).label}, indent=2) + "\n"


def load_calibration(bundle: ModelBundle, options: RuntimeOptions) -> Calibration | None:
    """The cached calibration if it was measured under the same key (same CPU, engines, files), else None."""
    path = bundle.directory / CALIBRATION_NAME
    try:
        data = json.loads(path.read_text())
        cached = Calibration(data["key"], {k: float(v) for k, v in data["ms_per_window"].items()},
                             dict(data.get("errors", {})), int(data["rounds"]), str(data["measured_at"]),
                             float(data.get("load_average", 0.0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("%s is unreadable (%s); timing the encoders again", path, e)
        return None
    key = calibration_key(bundle, options)
    if cached.key != key:
        changed = sorted(k for k in key if cached.key.get(k) != key[k])
        log.info("%s was measured under another %s; timing the encoders again", path, ", ".join(changed))
        return None
    return cached


def _probe_features(bundle: ModelBundle) -> np.ndarray:
    """One window of noise with a chirp: zeros would let an engine take shortcuts real audio never allows."""
    params = bundle.frontend_params
    rng = np.random.default_rng(0)
    t = np.arange(int(3 * params.sample_rate)) / params.sample_rate
    audio = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (300 + 800 * t) * t)
    return LogMelFrontend(params)([audio.astype(np.float32)])


def calibrate(bundle: ModelBundle, options: RuntimeOptions, opener: Opener, budget_s: float = 6.0,
              min_runs: int = 5, max_runs: int = 40) -> Calibration:
    """Open each candidate alone, time one window ``min_runs`` times or for its share of ``budget_s`` (at most
    ``max_runs``), and close it again before the next; write the result to the model folder (a read-only folder is
    logged, and the choice still holds for this process).

    One at a time, not interleaved: with all six full-size candidates open the first start peaked at 1.0 GB RSS.
    The fastest run is robust to a neighbour's load on its own (load only ever slows a run down)."""
    key = calibration_key(bundle, options)
    errors: dict[str, str] = {}
    best: dict[str, float] = {}
    runs: list[int] = []
    features = _probe_features(bundle)
    todo = candidates(bundle, with_openvino=key["openvino"] is not None)
    for candidate in todo:
        try:
            encoder = opener(bundle, replace(options, device=candidate.device, precision=candidate.precision))
        except (ModelError, RuntimeError, OSError) as e:  # an engine that does not start is a result too
            errors[candidate.label] = str(e).splitlines()[0]
            continue
        times: list[float] = []
        until = time.perf_counter() + budget_s / len(todo)
        while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < until):
            t0 = time.perf_counter()
            encoder(features)
            times.append(1000 * (time.perf_counter() - t0))
        del encoder  # its session's memory goes before the next one is opened
        best[candidate.label] = round(min(times), 3)
        runs.append(len(times))
    load = os.getloadavg()[0]
    result = Calibration(key, best, errors, min(runs, default=0), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         round(load, 2))
    if load > key["cores"]:
        log.warning("the encoders were timed under load %.1f on %d cores: the choice may not be the fastest on an "
                    "idle machine; `streamdetect devices --retime` times them again", load, key["cores"])
    path = bundle.directory / CALIBRATION_NAME
    try:
        atomic_write(path, result.to_json())
    except OSError as e:
        log.warning("could not cache the encoder timing in %s (%s); it is measured again at the next start", path, e)
    log.info("timed the audio encoder on %s (%d cores, at least %d runs each): %s", key["cpu"], key["cores"],
             result.rounds, result.summary() or "nothing could run")
    return result


def chosen_options(calibration: Calibration, options: RuntimeOptions) -> RuntimeOptions:
    """``options`` with device (and an 'auto' precision) set to the fastest measured candidate; an explicit
    precision only narrows the choice to the engines that run it. Unchanged where none was measured."""
    best = calibration.fastest(options.precision)
    if best is None:
        return options
    return replace(options, device=best.device, precision=best.precision)
