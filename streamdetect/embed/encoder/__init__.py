"""Audio encoder backends behind one ``AudioEncoder`` Protocol; ``open_audio_encoder`` picks the backend."""

from __future__ import annotations

import logging

from streamdetect.embed.encoder import device as _device
from streamdetect.embed.encoder.base import AudioEncoder, RemoteEncoderObserver, RuntimeOptions
from streamdetect.embed.encoder.calibration import calibrate, chosen_options, load_calibration
from streamdetect.embed.encoder.onnx import OnnxAudioEncoder
from streamdetect.embed.encoder.openvino import OpenVinoAudioEncoder
from streamdetect.model.manifest import ModelBundle

__all__ = ["AudioEncoder", "RuntimeOptions", "chosen_encoder_file", "open_audio_encoder", "runtime_choice"]

log = logging.getLogger(__name__)


def runtime_choice(bundle: ModelBundle, options: RuntimeOptions, say: bool = True,
                   retime: bool = False) -> RuntimeOptions:
    """``runtime.device: auto`` on a machine without an NVIDIA GPU becomes the engine (and, for an 'auto'
    precision, the precision) measured fastest on this CPU, timed once and cached in the model folder (see
    ``calibration``; ``retime`` measures again even so). Any other device is the user's choice and is returned
    unchanged."""
    if options.device != "auto" or _device.nvidia_driver_present():
        return options
    calibration = None if retime else load_calibration(bundle, options)
    cached = calibration is not None
    if calibration is None:
        log.info("runtime.device auto: timing each shipped engine and precision on this CPU once (cached in %s)",
                 bundle.directory)
        calibration = calibrate(bundle, options, _open_backend)
    chosen = chosen_options(calibration, options)
    if say:
        log.info("runtime.device auto: %s %s, the fastest %s on this CPU (%s: %s)", _device_name(chosen.device),
                 chosen.precision, "measured" if options.precision == "auto" else f"at precision {options.precision}",
                 "cached" if cached else "measured now", calibration.summary())
    return chosen


def _device_name(device: str) -> str:
    return {"cpu": "onnxruntime", "openvino": "OpenVINO"}.get(device, device)


def chosen_encoder_file(bundle: ModelBundle, options: RuntimeOptions) -> str:
    """The exported file these options run, after ``auto`` is resolved: it keys caches of embeddings."""
    return _device.audio_encoder_file(bundle, runtime_choice(bundle, options, say=False))


def open_audio_encoder(bundle: ModelBundle, options: RuntimeOptions | None = None,
                       observer: RemoteEncoderObserver | None = None) -> AudioEncoder:
    """The backend the options resolve to (see ``runtime_choice`` and ``resolve_device``), opened and warmed up;
    ``observer`` counts what a remote (Triton) encoder does."""
    options = runtime_choice(bundle, options or RuntimeOptions())
    if _device.resolve_device(bundle, options) == "triton":
        from streamdetect.embed.encoder.triton import open_triton_encoder  # httpx only where it is used

        return open_triton_encoder(bundle, options, open_audio_encoder, observer)
    return _open_backend(bundle, options)


def _open_backend(bundle: ModelBundle, options: RuntimeOptions) -> AudioEncoder:
    if _device.resolve_device(bundle, options) == "openvino":
        return OpenVinoAudioEncoder(bundle, options)
    return OnnxAudioEncoder(bundle, options)
