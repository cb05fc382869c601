import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import decision_line, run_cli_without_torch

from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.device import (
    audio_encoder_file,
    cpu_has_native_bf16,
    openvino_precision,
    resolve_device,
)
from streamdetect.embed.encoder.onnx import OnnxAudioEncoder
from streamdetect.embed.encoder.openvino import OpenVinoAudioEncoder
from streamdetect.embed.encoder.text import TextEncoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.export.convert import ExportError, export_model
from streamdetect.export.precisions import PARITY_BOUNDS, REDUCED_FILES, reduce_precisions
from streamdetect.model.manifest import (
    AUDIO_ENCODER,
    AUDIO_ENCODER_FP16,
    AUDIO_ENCODER_INT8,
    AUDIO_ENCODER_INT8_STATIC,
    AUDIO_ENCODER_OPENVINO,
    AUDIO_ENCODER_OPENVINO_WEIGHTS,
    TEXT_ENCODER,
    TEXT_ENCODER_WEIGHTS,
    TOKENIZER,
    ModelBundle,
    ModelError,
    sha256_file,
)

CPU = RuntimeOptions(device="cpu", precision="fp32")


def noise_features(bundle, n):
    """Log-mel features of n different 3 s noise windows."""
    return LogMelFrontend(bundle.frontend_params)(
        [np.random.default_rng(i).standard_normal(48_000 * 3).astype(np.float32) * 0.1 for i in range(n)])


def cosine_rows(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# The files each reduced precision ships as.
FILES = {"int8": (AUDIO_ENCODER_INT8,), "int8_static": (AUDIO_ENCODER_INT8_STATIC,), "fp16": (AUDIO_ENCODER_FP16,),
         "bf16": (AUDIO_ENCODER_OPENVINO, AUDIO_ENCODER_OPENVINO_WEIGHTS)}
REFUSE, SHIP = 1.0 + 1e-9, -1.0  # bounds no converted encoder reaches / every one reaches


@dataclass
class FlippedExport:
    directory: Path
    report: list[str]  # what the precision stage reported, line by line, as `export` prints it


@pytest.fixture(scope="module")
def flipped(tiny_model, tmp_path_factory):
    """The session export with its reduced precisions decided again by export's own precision stage (on a copy of
    its fp32 files), each parity bound moved so that it decides the opposite of what the session export decided on
    this CPU (refused where that one shipped, shipped where it refused). The two exports together take both
    branches for every precision on any CPU, whatever its int8, fp16 or bf16 arithmetic gives. (The ONNX capture
    before that stage is the same for both: redoing it cost 36 CPU-s.)"""
    natural = json.loads((tiny_model / "manifest.json").read_text())
    bounds = {p: REFUSE if natural["precisions"][p]["status"] == "shipped" else SHIP for p in FILES}
    directory = tmp_path_factory.mktemp("flipped") / "tiny-clap"
    directory.mkdir()
    for name in (AUDIO_ENCODER, TEXT_ENCODER, TEXT_ENCODER_WEIGHTS, TOKENIZER):  # what the capture wrote
        shutil.copy2(tiny_model / name, directory / name)
    manifest = {**natural, "files": {name: natural["files"][name] for name in natural["files"]
                                     if name not in REDUCED_FILES},
                "precisions": {"fp32": natural["precisions"]["fp32"]}}
    lines: list[str] = []
    reduce_precisions(directory, manifest, ModelBundle.load(tiny_model).frontend_params, bounds, lines.append)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return FlippedExport(directory, "\n".join(lines).splitlines())


@pytest.fixture(scope="module")
def exports(tiny_model, flipped):
    return {"session": tiny_model, "flipped": flipped.directory}


def export_where(exports, precision, status):
    """The one of the two exports whose ``precision`` has ``status`` (shipped or refused)."""
    (directory,) = [d for d in exports.values()
                    if json.loads((d / "manifest.json").read_text())["precisions"][precision]["status"] == status]
    return directory


def refused_message(bundle, precision):
    """The error for an explicitly requested precision that the export refused, with its recorded figure."""
    info = bundle.manifest["precisions"][precision]
    assert info["cosine_min_vs_fp32"] < info["required"]
    return re.escape(f"runtime.precision is {precision} but {bundle.directory} has no {precision} encoder: it was "
                     f"refused at export (min cosine vs fp32 {info['cosine_min_vs_fp32']:.5f} < {info['required']})")


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
def test_batched_audio_equals_single_windows(exports, precision):
    """On the export that shipped ``precision`` (one of the two does, on any CPU)."""
    bundle = ModelBundle.load(exports["session"] if precision == "fp32" else export_where(exports, precision, "shipped"))
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


def test_the_precision_stage_reports_each_figure_and_decision(flipped):
    manifest = json.loads((flipped.directory / "manifest.json").read_text())
    for precision in FILES:  # one line per reduced precision: its figure and what was decided
        assert decision_line(precision, manifest["precisions"][precision]) in flipped.report


def test_export_of_a_missing_folder_is_one_line_before_torch_is_loaded(tmp_path):
    result = run_cli_without_torch("export", "--model", str(tmp_path / "no-such-checkpoint"), "--out",
                                   str(tmp_path / "o"), rc=1)
    assert "cannot load CLAP checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("precision", list(FILES))
def test_a_reduced_precision_ships_exactly_when_its_recorded_figure_meets_its_bound(exports, flipped, precision):
    """What each export decided, read from its manifest: a shipped precision's files are listed with their
    sha256; a refused one's are neither listed nor left in the model directory. The session export held it to
    the bound in streamdetect.export.precisions.PARITY_BOUNDS; the flipped export decided the other way."""
    statuses = {}
    for which, directory in exports.items():
        manifest = json.loads((directory / "manifest.json").read_text())
        info = manifest["precisions"][precision]
        assert info["file"] == FILES[precision][0] and info["status"] in ("shipped", "refused")
        assert (info["status"] == "shipped") == (info["cosine_min_vs_fp32"] >= info["required"])
        assert info.get("engine") == ("openvino" if precision == "bf16" else None)
        for name in FILES[precision]:
            if info["status"] == "shipped":
                assert manifest["files"][name] == sha256_file(directory / name)
            else:
                assert name not in manifest["files"] and not (directory / name).exists()
        statuses[which] = info["status"]
        assert ModelBundle.load(directory).shipped(precision) == (info["status"] == "shipped")
    assert json.loads((exports["session"] / "manifest.json").read_text())["precisions"][precision]["required"] \
        == PARITY_BOUNDS[precision]
    assert set(statuses.values()) == {"shipped", "refused"}, statuses


def test_int8_is_the_cpu_default_where_it_shipped_and_auto_falls_back_to_fp32_where_it_was_refused(exports):
    for directory in exports.values():
        bundle = ModelBundle.load(directory)
        info = bundle.manifest["precisions"]["int8"]
        auto = open_audio_encoder(bundle, RuntimeOptions(device="cpu"))
        fp32 = open_audio_encoder(bundle, CPU)
        assert (fp32.file, fp32.precision) == (AUDIO_ENCODER, "fp32")
        if bundle.shipped("int8"):
            assert (auto.file, auto.precision, auto.call_batch) == (AUDIO_ENCODER_INT8, "int8", 1)
            assert open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="int8")).file == AUDIO_ENCODER_INT8
            feats = noise_features(bundle, 4)
            assert cosine_rows(auto(feats), fp32(feats)).min() >= info["required"]
        else:
            assert (auto.file, auto.precision) == (AUDIO_ENCODER, "fp32")
            with pytest.raises(ModelError, match=refused_message(bundle, "int8")):
                open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="int8"))


def test_fp16_keeps_fp32_inputs_and_is_the_gpu_default_only_where_it_shipped(exports):
    for directory in exports.values():
        bundle = ModelBundle.load(directory)
        info = bundle.manifest["precisions"]["fp16"]
        # on a CPU auto never picks fp16 (onnxruntime runs it through casts): int8 where that shipped, else fp32
        cpu_default = AUDIO_ENCODER_INT8 if bundle.shipped("int8") else AUDIO_ENCODER
        assert bundle.audio_encoder_file("auto", on_gpu=False) == cpu_default
        if bundle.shipped("fp16"):
            assert bundle.audio_encoder_file("auto", on_gpu=True) == AUDIO_ENCODER_FP16
            half = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp16"))
            assert (half.file, half.precision) == (AUDIO_ENCODER_FP16, "fp16")
            assert half.session.get_inputs()[0].type == "tensor(float)"
            feats = noise_features(bundle, 4)
            out = half(feats)
            assert out.dtype == np.float32
            assert cosine_rows(out, open_audio_encoder(bundle, CPU)(feats)).min() >= info["required"]
        else:
            assert bundle.audio_encoder_file("auto", on_gpu=True) == AUDIO_ENCODER
            with pytest.raises(ModelError, match=refused_message(bundle, "fp16")):
                open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp16"))


def test_bf16_runs_on_openvino_where_it_shipped_and_openvino_falls_back_to_fp32_where_it_was_refused(exports):
    for directory in exports.values():
        bundle = ModelBundle.load(directory)
        info = bundle.manifest["precisions"]["bf16"]
        if bundle.shipped("bf16"):
            bf16 = open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision="bf16"))
            assert isinstance(bf16, OpenVinoAudioEncoder)
            assert (bf16.precision, bf16.file, bf16.describe()) == ("bf16", AUDIO_ENCODER_OPENVINO, "OpenVINO CPU bf16")
            feats = noise_features(bundle, 3)
            assert cosine_rows(bf16(feats), open_audio_encoder(bundle, CPU)(feats)).min() >= info["required"]
        else:
            with pytest.raises(ModelError, match=refused_message(bundle, "bf16")):
                open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision="bf16"))
            auto = open_audio_encoder(bundle, RuntimeOptions(device="openvino"))  # the fp32 graph, on OpenVINO
            assert (auto.precision, auto.file, auto.describe()) == ("fp32", AUDIO_ENCODER, "OpenVINO CPU fp32")
            assert openvino_precision(bundle, "auto") == "fp32" and openvino_precision(bundle, "fp32") == "fp32"


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

    import streamdetect.embed.encoder.device as device
    from streamdetect.embed.encoder.onnx import tensorrt_profile

    assert tensorrt_profile("input_features", (1, 1001, 64), 16) == {
        "trt_profile_min_shapes": "input_features:1x1x1001x64",
        "trt_profile_opt_shapes": "input_features:16x1x1001x64",
        "trt_profile_max_shapes": "input_features:16x1x1001x64"}
    seen, real = [], onnxruntime.InferenceSession

    def session(path, sess_options, providers, provider_options):
        seen.append(dict(zip(providers, provider_options, strict=True)))
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(device, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    bundle = ModelBundle.load(tiny_model)
    with pytest.raises(RuntimeError, match="could not start TensorrtExecutionProvider"):
        open_audio_encoder(bundle, RuntimeOptions(device="tensorrt", precision="fp32", max_batch=8))
    trt = seen[0]["TensorrtExecutionProvider"]
    frames, mels = bundle.frontend_params.n_frames, bundle.frontend_params.n_mels
    assert trt["trt_profile_max_shapes"] == f"input_features:8x1x{frames}x{mels}"
    assert trt["trt_engine_cache_enable"] == "True" and seen[0]["CUDAExecutionProvider"] == {}


def test_tensorrt_without_the_provider_is_a_clear_error(tiny_model, monkeypatch):
    import streamdetect.embed.encoder.device as device

    monkeypatch.setattr(device, "nvidia_driver_present", lambda: True)
    # onnxruntime-gpu lists the provider even without the TensorRT libraries; then it cannot start it
    with pytest.raises(RuntimeError, match=r"runtime\.device is 'tensorrt' but .*TensorrtExecutionProvider"):
        open_audio_encoder(ModelBundle.load(tiny_model), RuntimeOptions(device="tensorrt"))


def test_openvino_runs_the_fp32_graph_at_fp32_and_at_the_bf16_the_export_verified(exports):
    """On the export that shipped bf16; this CPU's own bf16 units decide what auto runs."""
    bundle = ModelBundle.load(export_where(exports, "bf16", "shipped"))
    required = bundle.manifest["precisions"]["bf16"]["required"]
    feats = noise_features(bundle, 5)
    reference = open_audio_encoder(bundle, CPU)(feats)
    native_bf16 = cpu_has_native_bf16()
    for precision, bound in (("fp32", 0.9999), ("bf16", required), ("auto", required)):
        encoder = open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision=precision))
        out = encoder(feats)
        assert out.dtype == np.float32 and cosine_rows(out, reference).min() >= bound
        singles = np.concatenate([encoder(feats[i : i + 1]) for i in range(len(feats))])
        np.testing.assert_allclose(out, singles, atol=1e-5)  # a window's embedding never depends on its batch
        expected = "bf16" if precision == "bf16" or (precision == "auto" and native_bf16) else "fp32"
        assert encoder.precision == expected and encoder.describe() == f"OpenVINO CPU {expected}"
        # the file that runs keys the example-embedding cache: the IR at bf16, the fp32 graph at fp32
        assert encoder.file == audio_encoder_file(bundle, RuntimeOptions(device="openvino", precision=precision))
        assert encoder.file == (AUDIO_ENCODER_OPENVINO if expected == "bf16" else AUDIO_ENCODER)


def test_bf16_runs_from_an_openvino_ir_whose_weights_are_checked(exports, tmp_path):
    shipped = export_where(exports, "bf16", "shipped")
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert manifest["precisions"]["bf16"]["file"] == AUDIO_ENCODER_OPENVINO
    for name in (AUDIO_ENCODER_OPENVINO, AUDIO_ENCODER_OPENVINO_WEIGHTS):
        assert manifest["files"][name] == sha256_file(shipped / name)
    copy = tmp_path / "copy"
    shutil.copytree(shipped, copy)
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


def test_embedding_caches_of_an_openvino_ir_are_keyed_by_its_weights_too(exports):
    bundle = ModelBundle.load(export_where(exports, "bf16", "shipped"))
    files = bundle.manifest["files"]
    assert bundle.file_digest(AUDIO_ENCODER) == files[AUDIO_ENCODER] and bundle.file_digest("nothing") is None
    before = bundle.file_digest(AUDIO_ENCODER_OPENVINO)
    files[AUDIO_ENCODER_OPENVINO_WEIGHTS] = "0" * 64  # another checkpoint of the same architecture: same .xml
    assert bundle.file_digest(AUDIO_ENCODER_OPENVINO) != before


def test_the_rule_for_an_untimed_auto_picks_openvino_bf16_only_on_bf16_units(exports, monkeypatch):
    """What resolve_device does with an 'auto' nobody timed (open_audio_encoder times it first: see
    tests/test_calibration.py): decided from the CPU's bf16 units (patched here, so both answers are checked on
    any CPU), the GPU driver and what the export shipped."""
    import streamdetect.embed.encoder.device as device

    shipped = ModelBundle.load(export_where(exports, "bf16", "shipped"))
    refused = ModelBundle.load(export_where(exports, "bf16", "refused"))
    monkeypatch.setattr(device, "nvidia_driver_present", lambda: False)
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)  # AMX or AVX-512 BF16
    assert resolve_device(shipped, RuntimeOptions()) == "openvino" and openvino_precision(shipped, "auto") == "bf16"
    assert audio_encoder_file(shipped, RuntimeOptions()) == AUDIO_ENCODER_OPENVINO
    auto = open_audio_encoder(shipped, RuntimeOptions(device=resolve_device(shipped, RuntimeOptions())))
    assert isinstance(auto, OpenVinoAudioEncoder)
    assert (auto.precision, auto.file, auto.describe()) == ("bf16", AUDIO_ENCODER_OPENVINO, "OpenVINO CPU bf16")
    # an explicit onnxruntime precision, an explicit device, or an export that refused bf16 keep onnxruntime
    for options in (RuntimeOptions(precision="int8"), RuntimeOptions(precision="fp32"), RuntimeOptions(device="cpu")):
        assert resolve_device(shipped, options) == options.device
    assert resolve_device(shipped, RuntimeOptions(precision="bf16")) == "openvino"
    assert resolve_device(refused, RuntimeOptions()) == "auto" and openvino_precision(refused, "auto") == "fp32"
    with pytest.raises(ModelError, match=refused_message(refused, "bf16")):
        openvino_precision(refused, "bf16")
    # a CPU without bf16 units: onnxruntime, at int8 where the export shipped it
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert resolve_device(shipped, RuntimeOptions()) == "auto" and openvino_precision(shipped, "auto") == "fp32"
    assert openvino_precision(shipped, "bf16") == "bf16"  # asked for explicitly, it is emulated (and logged)
    plain = open_audio_encoder(shipped, RuntimeOptions(device="cpu"))
    assert isinstance(plain, OnnxAudioEncoder) and plain.providers[0] == "CPUExecutionProvider"
    assert plain.file == (AUDIO_ENCODER_INT8 if shipped.shipped("int8") else AUDIO_ENCODER)
    assert plain.describe() == "onnxruntime CPUExecutionProvider"
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(device, "nvidia_driver_present", lambda: True)  # a GPU machine: onnxruntime's
    assert resolve_device(shipped, RuntimeOptions()) == "auto"


def test_openvino_choices_that_cannot_work_are_clear_errors(tiny_model, monkeypatch):

    bundle = ModelBundle.load(tiny_model)
    with pytest.raises(ModelError, match="precision int8 does not run on openvino"):
        open_audio_encoder(bundle, RuntimeOptions(device="openvino", precision="int8"))
    with pytest.raises(ModelError, match="bf16 runs only with runtime.device: openvino"):
        open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="bf16"))
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(RuntimeError, match=r"pip install 'streamdetect\[openvino\]'"):
        open_audio_encoder(bundle, RuntimeOptions(device="openvino"))
