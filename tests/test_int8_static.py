"""Static (calibrated) QDQ int8: what the export recorded is what the file measures, on this CPU's recipe."""

import numpy as np
import pytest

from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.export.precisions import (
    calibration_features,
    cosine_vs_fp32,
    fp32_reference,
    quantize_int8_static,
)
from streamdetect.model.manifest import AUDIO_ENCODER, AUDIO_ENCODER_INT8_STATIC, ModelBundle
from streamdetect.util.cpu import CpuInfo


def test_the_recorded_decision_matches_the_cosine_measured_again(tiny_model, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    info = bundle.manifest["precisions"]["int8_static"]
    reduce_range = not CpuInfo.read().has_int8_dot  # 7-bit weights where int8 dot products saturate (no VNNI)
    assert info["method"] == f"static QDQ, per channel, {'7' if reduce_range else '8'}-bit weights"
    reference = fp32_reference(tiny_model / AUDIO_ENCODER, bundle.frontend_params)
    if info["status"] == "shipped":
        measured = cosine_vs_fp32(reference, bundle.path(AUDIO_ENCODER_INT8_STATIC))
    else:  # refused and deleted: made again by the same recipe, it measures the same
        again = tmp_path / "again.onnx"
        quantize_int8_static(tiny_model / AUDIO_ENCODER, again, calibration_features(bundle.frontend_params),
                             reduce_range)
        measured = cosine_vs_fp32(reference, again)
    assert abs(measured - info["cosine_min_vs_fp32"]) < 1e-6
    assert (info["status"] == "shipped") == (measured >= info["required"] == 0.999)


def test_static_int8_embeds_a_window_the_same_in_any_batch(tiny_model):
    """Its activation scales are fixed at export, so unlike dynamic int8 it need not run one window per call."""
    bundle = ModelBundle.load(tiny_model)
    if not bundle.shipped("int8_static"):
        pytest.skip("int8_static was refused on this CPU: there is nothing shipped to run")
    encoder = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="int8_static"))
    assert (encoder.file, encoder.precision, encoder.call_batch) == (AUDIO_ENCODER_INT8_STATIC, "int8_static", None)
    rng = np.random.default_rng(3)
    from streamdetect.embed.frontend import LogMelFrontend

    feats = LogMelFrontend(bundle.frontend_params)(
        [(0.1 * rng.standard_normal(3 * bundle.sample_rate)).astype(np.float32) for _ in range(3)])
    together = encoder(feats)
    alone = np.concatenate([encoder(feats[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
