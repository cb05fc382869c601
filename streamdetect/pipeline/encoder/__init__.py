"""Audio encoder backends behind one ``AudioEncoder`` Protocol; ``open_audio_encoder`` picks the backend."""

from __future__ import annotations

from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.encoder.base import AudioEncoder, RuntimeOptions
from streamdetect.pipeline.encoder.device import resolve_device
from streamdetect.pipeline.encoder.onnx import OnnxAudioEncoder
from streamdetect.pipeline.encoder.openvino import OpenVinoAudioEncoder

__all__ = ["AudioEncoder", "RuntimeOptions", "open_audio_encoder"]


def open_audio_encoder(bundle: ModelBundle, options: RuntimeOptions | None = None) -> AudioEncoder:
    """The backend the options resolve to (see ``resolve_device``), opened and warmed up."""
    options = options or RuntimeOptions()
    if resolve_device(bundle, options) == "openvino":
        return OpenVinoAudioEncoder(bundle, options)
    return OnnxAudioEncoder(bundle, options)
