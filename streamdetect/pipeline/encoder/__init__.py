"""Audio encoder backends behind one ``AudioEncoder`` Protocol; ``open_audio_encoder`` picks the backend."""

from __future__ import annotations

from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.encoder.base import AudioEncoder, RuntimeOptions
from streamdetect.pipeline.encoder.device import resolve_device
from streamdetect.pipeline.encoder.onnx import OnnxAudioEncoder
from streamdetect.pipeline.encoder.openvino import OpenVinoAudioEncoder
from streamdetect.pipeline.observers import RemoteEncoderObserver

__all__ = ["AudioEncoder", "RuntimeOptions", "open_audio_encoder"]


def open_audio_encoder(bundle: ModelBundle, options: RuntimeOptions | None = None,
                       observer: RemoteEncoderObserver | None = None) -> AudioEncoder:
    """The backend the options resolve to (see ``resolve_device``), opened and warmed up; ``observer`` counts what
    a remote (Triton) encoder does."""
    options = options or RuntimeOptions()
    device = resolve_device(bundle, options)
    if device == "triton":
        from streamdetect.pipeline.encoder.triton import open_triton_encoder  # httpx only where it is used

        return open_triton_encoder(bundle, options, open_audio_encoder, observer)
    if device == "openvino":
        return OpenVinoAudioEncoder(bundle, options)
    return OnnxAudioEncoder(bundle, options)
