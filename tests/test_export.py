import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from streamdetect.model.export import ExportError, export_model
from streamdetect.model.manifest import (
    AUDIO_ENCODER,
    AUDIO_ENCODER_FP16,
    AUDIO_ENCODER_INT8,
    AUDIO_ENCODER_OPENVINO,
    AUDIO_ENCODER_OPENVINO_WEIGHTS,
    TEXT_ENCODER,
    TOKENIZER,
    ModelBundle,
    ModelError,
    sha256_file,
)
from streamdetect.pipeline.encoder import open_audio_encoder
from streamdetect.pipeline.encoder.base import RuntimeOptions
from streamdetect.pipeline.encoder.device import audio_encoder_file, resolve_device
from streamdetect.pipeline.encoder.text import TextEncoder
from streamdetect.pipeline.frontend import LogMelFrontend

CPU = RuntimeOptions(device="cpu", precision="fp32")


def noise_features(bundle, n):
    """Log-mel features of n different 3 s noise windows."""
    return LogMelFrontend(bundle.frontend_params)(
        [np.random.default_rng(i).standard_normal(48_000 * 3).astype(np.float32) * 0.1 for i in range(n)])


def cosine_rows(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_manifest_describes_the_export(tiny_model, tiny_checkpoint):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["source"]["model"] == str(tiny_checkpoint)
    assert manifest["source"]["local_directory"] == str(tiny_checkpoint.resolve())
    for name in (AUDIO_ENCODER, TEXT_ENCODER, TOKENIZER):
        assert manifest["files"][name] == sha256_file(tiny_model / name)
    assert manifest["frontend"] == {"sample_rate": 48000, "n_fft": 1024, "hop_length": 480, "n_mels": 64,
                                    "f_min": 50.0, "f_max": 14000.0, "max_length_s": 10.0, "padding": "repeatpad"}
    assert manifest["embedding_dim"] == 32 and manifest["sample_rate"] == 48000
    assert manifest["logit_scale"]["audio"] == pytest.approx(1 / 0.07, rel=1e-5)
    assert {"torch", "transformers", "onnx", "onnxruntime", "opset", "streamdetect"} <= set(manifest["export"])
    check = manifest["verification"]
    assert check["audio_cosine_min"] >= 0.9999 and check["text_cosine_min"] >= 0.9999
    assert check["frontend_max_abs_db"] <= 1e-3


@pytest.fixture(scope="module")
def torch_clap(tiny_checkpoint):
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    return (ClapModel.from_pretrained(tiny_checkpoint).eval(), ClapFeatureExtractor.from_pretrained(tiny_checkpoint),
            AutoTokenizer.from_pretrained(tiny_checkpoint))


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_audio_embeddings_match_pytorch_on_fresh_audio(tiny_model, torch_clap, batch):
    import torch

    model, fe, _ = torch_clap
    rng = np.random.default_rng(batch)
    clips = [(rng.standard_normal(48_000 * (1 + i)) * 0.2).astype(np.float32) for i in range(batch)]
    bundle = ModelBundle.load(tiny_model)
    ours = open_audio_encoder(bundle, CPU)(LogMelFrontend(bundle.frontend_params)(clips))
    with torch.no_grad():
        ref = model.get_audio_features(**fe(clips, sampling_rate=48_000, return_tensors="pt")).pooler_output.numpy()
    assert ours.shape == (batch, 32)
    assert cosine_rows(ours, ref).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_onnx_text_embeddings_match_pytorch_without_transformers_tokenizer(tiny_model, torch_clap):
    import torch

    model, _, tokenizer = torch_clap
    prompts = ["rain", "a dog barking far away while traffic passes " * 3, "smoke alarm", "ünïcödé birdsong 🐦"]
    ours = TextEncoder(ModelBundle.load(tiny_model), CPU)(prompts)
    with torch.no_grad():
        ref = model.get_text_features(**tokenizer(prompts, padding=True, truncation=True, max_length=77,
                                                  return_tensors="pt")).pooler_output.numpy()
    assert cosine_rows(ours, ref).min() >= 0.9999


@pytest.mark.parametrize("precision", ["fp32", "int8", "fp16"])
def test_batched_audio_equals_single_windows(tiny_model, precision):
    bundle = ModelBundle.load(tiny_model)
    encoder = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision=precision))
    feats = noise_features(bundle, 6)
    batched = encoder(feats)
    singles = np.concatenate([encoder(feats[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_fused_checkpoints_are_refused(tiny_checkpoint, tmp_path):
    fused = tmp_path / "fused"
    shutil.copytree(tiny_checkpoint, fused)
    cfg_path = fused / "processor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["feature_extractor"]["truncation"] = "fusion"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="feature fusion"):
        export_model(str(fused), tmp_path / "out", report=lambda _m: None)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_existing_export_is_not_overwritten_without_force(tiny_model, tiny_checkpoint):
    with pytest.raises(ExportError, match="--force"):
        export_model(str(tiny_checkpoint), tiny_model, report=lambda _m: None)


def test_tampered_file_is_refused(tiny_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    with open(copy / AUDIO_ENCODER, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match=r"audio_encoder\.onnx does not match its manifest"):
        open_audio_encoder(ModelBundle.load(copy), CPU)


def test_export_cli_prints_parity_figures(tiny_checkpoint, tmp_path):
    out = tmp_path / "cli-export"
    result = run_cli("export", "--model", str(tiny_checkpoint), "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "min cosine ONNX vs PyTorch" in result.stderr and (out / "manifest.json").is_file()
    missing = run_cli("export", "--model", str(tmp_path / "no-such-checkpoint"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and "cannot load CLAP checkpoint" in missing.stderr


def test_int8_encoder_ships_when_close_to_fp32_and_is_the_cpu_default(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    int8 = manifest["precisions"]["int8"]
    assert int8["status"] == "shipped" and int8["cosine_min_vs_fp32"] >= 0.999
    assert manifest["files"][AUDIO_ENCODER_INT8] == sha256_file(tiny_model / AUDIO_ENCODER_INT8)
    bundle = ModelBundle.load(tiny_model)
    auto = open_audio_encoder(bundle, RuntimeOptions(device="cpu"))
    fp32 = open_audio_encoder(bundle, CPU)
    assert auto.file == AUDIO_ENCODER_INT8 and fp32.file == AUDIO_ENCODER
    feats = noise_features(bundle, 4)
    assert cosine_rows(auto(feats), fp32(feats)).min() >= 0.999


def test_int8_is_refused_below_the_bound_and_then_cannot_be_requested(tiny_checkpoint, tmp_path, monkeypatch):
    import streamdetect.export as export

    monkeypatch.setattr(export, "INT8_MIN_COSINE", 1.0 + 1e-9)  # no quantised model can reach this
    messages = []
    out = tmp_path / "strict"
    export.export_model(str(tiny_checkpoint), out, report=messages.append)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precisions"]["int8"]["status"] == "refused"
    assert AUDIO_ENCODER_INT8 not in manifest["files"] and not (out / AUDIO_ENCODER_INT8).exists()
    assert any("int8: min cosine vs fp32" in m and "refused" in m for m in messages)
    bundle = ModelBundle.load(out)
    assert open_audio_encoder(bundle, RuntimeOptions(device="cpu")).file == AUDIO_ENCODER  # auto falls back
    with pytest.raises(ModelError, match=r"no int8 encoder: it was refused at export \(min cosine vs fp32 0\.9"):
        open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="int8"))


def test_fp16_encoder_ships_when_close_to_fp32_and_keeps_fp32_inputs(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    fp16 = manifest["precisions"]["fp16"]
    assert fp16["status"] == "shipped" and fp16["cosine_min_vs_fp32"] >= 0.999
    assert manifest["files"][AUDIO_ENCODER_FP16] == sha256_file(tiny_model / AUDIO_ENCODER_FP16)
    bundle = ModelBundle.load(tiny_model)
    half = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp16"))
    assert half.file == AUDIO_ENCODER_FP16 and half.session.get_inputs()[0].type == "tensor(float)"
    # on a CPU, auto keeps int8; fp16 is the GPU default (manifest.audio_encoder_file decides both)
    assert open_audio_encoder(bundle, RuntimeOptions(device="cpu")).file == AUDIO_ENCODER_INT8
    assert bundle.audio_encoder_file("auto", on_gpu=True) == AUDIO_ENCODER_FP16
    feats = noise_features(bundle, 4)
    out = half(feats)
    assert out.dtype == np.float32 and cosine_rows(out, open_audio_encoder(bundle, CPU)(feats)).min() >= 0.999


def test_io_binding_path_gives_the_same_embeddings(tiny_model):
    """The GPU path binds inputs and outputs; on a CPU the same calls must give identical results."""
    bundle = ModelBundle.load(tiny_model)
    encoder = open_audio_encoder(bundle, CPU)
    feats = noise_features(bundle, 3)
    plain = encoder(feats)
    encoder.io_binding = True
    np.testing.assert_array_equal(encoder(feats), plain)


def test_calls_larger_than_the_engine_batch_are_split_and_give_the_same_embeddings(tiny_model):
    bundle = ModelBundle.load(tiny_model)
    encoder = open_audio_encoder(bundle, CPU)
    feats = noise_features(bundle, 5)
    whole = encoder(feats)
    sizes, run = [], encoder._run
    encoder._run = lambda f: sizes.append(len(f)) or run(f)
    encoder.call_batch = 2  # what a TensorRT engine built for batches up to 2 would take
    np.testing.assert_allclose(encoder(feats), whole, atol=1e-5)
    assert sizes == [2, 2, 1]


def test_tensorrt_gets_one_shape_profile_up_to_the_configured_batch(tiny_model, monkeypatch):
    import onnxruntime

    import streamdetect.encoder as encoder_module

    assert encoder_module.tensorrt_profile("input_features", (1, 1001, 64), 16) == {
        "trt_profile_min_shapes": "input_features:1x1x1001x64",
        "trt_profile_opt_shapes": "input_features:16x1x1001x64",
        "trt_profile_max_shapes": "input_features:16x1x1001x64"}
    seen, real = [], onnxruntime.InferenceSession

    def session(path, sess_options, providers, provider_options):
        seen.append(dict(zip(providers, provider_options, strict=True)))
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(encoder_module, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    bundle = ModelBundle.load(tiny_model)
    with pytest.raises(RuntimeError, match="could not start TensorrtExecutionProvider"):
        open_audio_encoder(bundle, RuntimeOptions(device="tensorrt", precision="fp32", max_batch=8))
    trt = seen[0]["TensorrtExecutionProvider"]
    frames, mels = bundle.frontend_params.n_frames, bundle.frontend_params.n_mels
    assert trt["trt_profile_max_shapes"] == f"input_features:8x1x{frames}x{mels}"
    assert trt["trt_engine_cache_enable"] == "True" and seen[0]["CUDAExecutionProvider"] == {}


def test_fp16_is_refused_below_the_bound_and_auto_on_gpu_falls_back_to_fp32(tiny_checkpoint, tmp_path,
                                                                           monkeypatch):
    import streamdetect.export as export

    monkeypatch.setattr(export, "FP16_MIN_COSINE", 1.0 + 1e-9)
    monkeypatch.setattr(export, "BF16_MIN_COSINE", 1.0 + 1e-9)  # the same export also refuses bf16
    out = tmp_path / "strict16"
    export.export_model(str(tiny_checkpoint), out, report=lambda _m: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precisions"]["fp16"]["status"] == "refused" and not (out / AUDIO_ENCODER_FP16).exists()
    assert manifest["precisions"]["int8"]["status"] == "shipped"
    bundle = ModelBundle.load(out)
    assert bundle.audio_encoder_file("auto", on_gpu=True) == AUDIO_ENCODER
    with pytest.raises(ModelError, match=r"no fp16 encoder: it was refused at export"):
        open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp16"))
    assert manifest["precisions"]["bf16"]["status"] == "refused"
    assert open_audio_encoder(bundle, RuntimeOptions(device="openvino")).precision == "fp32"  # auto falls back
    with pytest.raises(ModelError, match=r"no bf16 encoder: it was refused at export"):
        open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision="bf16"))


def test_tensorrt_without_the_provider_is_a_clear_error(tiny_model, monkeypatch):
    import streamdetect.encoder as encoder

    monkeypatch.setattr(encoder, "nvidia_driver_present", lambda: True)
    # onnxruntime-gpu lists the provider even without the TensorRT libraries; then it cannot start it
    with pytest.raises(RuntimeError, match=r"runtime\.device is 'tensorrt' but .*TensorrtExecutionProvider"):
        open_audio_encoder(ModelBundle.load(tiny_model), RuntimeOptions(device="tensorrt"))


def test_openvino_runs_the_fp32_graph_at_fp32_and_at_the_bf16_the_export_verified(tiny_model):
    import openvino

    manifest = json.loads((tiny_model / "manifest.json").read_text())
    bf16 = manifest["precisions"]["bf16"]
    assert bf16["engine"] == "openvino" and bf16["status"] == "shipped" and bf16["cosine_min_vs_fp32"] >= 0.999
    bundle = ModelBundle.load(tiny_model)
    feats = noise_features(bundle, 5)
    reference = open_audio_encoder(bundle, CPU)(feats)
    native_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for precision, bound in (("fp32", 0.9999), ("bf16", 0.999), ("auto", 0.999)):
        encoder = open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision=precision))
        out = encoder(feats)
        assert out.dtype == np.float32 and cosine_rows(out, reference).min() >= bound
        singles = np.concatenate([encoder(feats[i : i + 1]) for i in range(len(feats))])
        np.testing.assert_allclose(out, singles, atol=1e-5)  # a window's embedding never depends on its batch
        expected = "bf16" if precision == "bf16" or (precision == "auto" and native_bf16) else "fp32"
        assert encoder.precision == expected and encoder.providers == [f"OpenVINO CPU {expected}"]
        # the file that runs keys the example-embedding cache: the IR at bf16, the fp32 graph at fp32
        assert encoder.file == audio_encoder_file(bundle, RuntimeOptions(device="openvino", precision=precision))
        assert encoder.file == (AUDIO_ENCODER_OPENVINO if expected == "bf16" else AUDIO_ENCODER)


def test_bf16_runs_from_an_openvino_ir_whose_weights_are_checked(tiny_model, tmp_path):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["precisions"]["bf16"]["file"] == AUDIO_ENCODER_OPENVINO
    for name in (AUDIO_ENCODER_OPENVINO, AUDIO_ENCODER_OPENVINO_WEIGHTS):
        assert manifest["files"][name] == sha256_file(tiny_model / name)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    weights = copy / AUDIO_ENCODER_OPENVINO_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # the .xml is intact, its weights are not
    with pytest.raises(ModelError, match=r"audio_encoder\.openvino\.bin does not match its manifest"):
        open_audio_encoder(ModelBundle.load(copy), RuntimeOptions(device="openvino", precision="bf16"))
    # an export from before the IR named the fp32 graph as its bf16 file; it still runs
    old = json.loads((copy / "manifest.json").read_text())
    old["precisions"]["bf16"]["file"] = AUDIO_ENCODER
    for name in (AUDIO_ENCODER_OPENVINO, AUDIO_ENCODER_OPENVINO_WEIGHTS):
        del old["files"][name]
        (copy / name).unlink()
    (copy / "manifest.json").write_text(json.dumps(old))
    encoder = open_audio_encoder(ModelBundle.load(copy), RuntimeOptions(device="openvino", precision="bf16"))
    assert encoder.file == AUDIO_ENCODER and encoder.precision == "bf16"


def test_embedding_caches_of_an_openvino_ir_are_keyed_by_its_weights_too(tiny_model):
    bundle = ModelBundle.load(tiny_model)
    files = bundle.manifest["files"]
    assert bundle.file_digest(AUDIO_ENCODER) == files[AUDIO_ENCODER] and bundle.file_digest("nothing") is None
    before = bundle.file_digest(AUDIO_ENCODER_OPENVINO)
    files[AUDIO_ENCODER_OPENVINO_WEIGHTS] = "0" * 64  # another checkpoint of the same architecture: same .xml
    assert bundle.file_digest(AUDIO_ENCODER_OPENVINO) != before


def test_auto_device_picks_openvino_bf16_only_where_it_is_the_measured_best(tiny_model, monkeypatch):
    import streamdetect.encoder as encoder_module

    bundle = ModelBundle.load(tiny_model)
    monkeypatch.setattr(encoder_module, "nvidia_driver_present", lambda: False)
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: True)
    auto = open_audio_encoder(bundle, RuntimeOptions())
    assert (auto.device, auto.precision, auto.file) == ("openvino", "bf16", AUDIO_ENCODER_OPENVINO)
    # an explicit onnxruntime precision, an explicit device, or a CPU without bf16 units keep onnxruntime
    for options in (RuntimeOptions(precision="int8"), RuntimeOptions(precision="fp32"), RuntimeOptions(device="cpu")):
        assert resolve_device(bundle, options) == options.device
    assert open_audio_encoder(bundle, RuntimeOptions(precision="bf16")).device == "openvino"
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: False)
    plain = open_audio_encoder(bundle, RuntimeOptions())
    assert (plain.device, plain.file, plain.providers[0]) == ("auto", AUDIO_ENCODER_INT8, "CPUExecutionProvider")
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(encoder_module, "nvidia_driver_present", lambda: True)  # a GPU machine: onnxruntime's
    assert resolve_device(bundle, RuntimeOptions()) == "auto"


def test_openvino_choices_that_cannot_work_are_clear_errors(tiny_model, monkeypatch):
    import sys

    bundle = ModelBundle.load(tiny_model)
    with pytest.raises(ModelError, match="precision int8 does not run on openvino"):
        open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision="int8"))
    with pytest.raises(ModelError, match="bf16 runs only with runtime.device: openvino"):
        open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="bf16"))
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(RuntimeError, match=r"pip install 'streamdetect\[openvino\]'"):
        open_audio_encoder(bundle, RuntimeOptions(device="openvino"))
