"""``runtime.device: auto`` on a CPU runs what was measured fastest here, cached per CPU and engine versions.

Which engine wins differs between CPUs, so every check reads what the code measured and decided; the choice
rule itself is checked with timings written into the cache, so both outcomes (OpenVINO bf16 ahead, onnxruntime
int8 ahead) are exercised on any CPU.
"""

import json
import shutil

import pytest
from helpers import run_cli

import streamdetect.embed.encoder as encoder_mod
from streamdetect.embed.encoder import open_audio_encoder, runtime_choice
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.calibration import (
    CALIBRATION_NAME,
    Calibration,
    Candidate,
    calibration_key,
    candidates,
    load_calibration,
    openvino_version,
)
from streamdetect.embed.encoder.openvino import OpenVinoAudioEncoder
from streamdetect.model.manifest import ModelBundle
from streamdetect.util.cpu import CpuInfo


@pytest.fixture
def fresh(tiny_model, tmp_path):
    """A copy of the tiny export with no timing cached (as on a machine that did not export it)."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    (copy / CALIBRATION_NAME).unlink(missing_ok=True)
    return copy


@pytest.fixture
def counted(monkeypatch):
    """Counts the calibrations runtime_choice starts (the real ones run, each candidate its fewest runs: what is
    checked here is what was timed and chosen, not how steady the timings are; 8 calibrations of 3-4 CPU-s each
    at the default budget)."""
    calls = []
    real = encoder_mod.calibrate

    def calibrate(*args, **kwargs):
        calls.append(args[0].directory)
        return real(*args, **{"budget_s": 0.0, **kwargs})

    monkeypatch.setattr(encoder_mod, "calibrate", calibrate)
    return calls


def opened_as(encoder) -> Candidate:
    return Candidate("openvino" if isinstance(encoder, OpenVinoAudioEncoder) else "cpu", encoder.precision)


def test_first_auto_run_times_every_shipped_candidate_and_runs_the_fastest(fresh, counted, caplog):
    bundle = ModelBundle.load(fresh)
    with caplog.at_level("INFO"):
        encoder = open_audio_encoder(bundle, RuntimeOptions())
    assert counted == [fresh]
    cached = json.loads((fresh / CALIBRATION_NAME).read_text())
    # every engine x precision this export shipped (OpenVINO where it is installed) was timed or has its error
    expected = {c.label for c in candidates(bundle, with_openvino=openvino_version() is not None)}
    assert set(cached["ms_per_window"]) | set(cached["errors"]) == expected
    assert all(ms > 0 for ms in cached["ms_per_window"].values()) and cached["rounds"] >= 3
    fastest = min(cached["ms_per_window"], key=cached["ms_per_window"].get)
    assert cached["fastest"] == fastest == opened_as(encoder).label
    assert cached["key"] == calibration_key(bundle, RuntimeOptions())
    assert f"runtime.device auto: {fastest}, the fastest measured on this CPU (measured now" in caplog.text


def test_the_cached_choice_is_reused_without_timing_again(fresh, counted, caplog):
    first = open_audio_encoder(ModelBundle.load(fresh), RuntimeOptions())
    before = (fresh / CALIBRATION_NAME).read_text()
    with caplog.at_level("INFO"):
        again = open_audio_encoder(ModelBundle.load(fresh), RuntimeOptions())
    assert len(counted) == 1 and (fresh / CALIBRATION_NAME).read_text() == before
    assert opened_as(again) == opened_as(first) and "(cached:" in caplog.text


@pytest.mark.parametrize("change", ["engine version", "cpu", "export"])
def test_a_changed_key_times_again(fresh, counted, monkeypatch, change, caplog):
    bundle = ModelBundle.load(fresh)
    runtime_choice(bundle, RuntimeOptions())
    cached = json.loads((fresh / CALIBRATION_NAME).read_text())
    if change == "engine version":  # as if onnxruntime had been upgraded since
        cached["key"]["onnxruntime"] = "0.0.1"
        (fresh / CALIBRATION_NAME).write_text(json.dumps(cached))
    elif change == "cpu":  # the model folder moved to another machine
        real = CpuInfo.read()
        other = CpuInfo("Another CPU", real.flags ^ {"avx512f"}, real.cores, real.max_mhz, real.clock_source)
        monkeypatch.setattr(CpuInfo, "read", classmethod(lambda cls, *a, **k: other))
    else:  # exported again: another fp32 file
        bundle.manifest["files"]["audio_encoder.onnx"] = "0" * 64
    with caplog.at_level("INFO"):
        assert load_calibration(bundle, RuntimeOptions()) is None
        runtime_choice(bundle, RuntimeOptions())
    assert len(counted) == 2
    changed = {"engine version": "onnxruntime", "cpu": "cpu, cpu_flags", "export": "files"}[change]
    assert f"was measured under another {changed}; timing the encoders again" in caplog.text
    assert json.loads((fresh / CALIBRATION_NAME).read_text())["key"] == calibration_key(bundle, RuntimeOptions())


def forge(bundle, options, ms: dict[str, float]) -> None:
    """A cache under this machine's key with chosen timings: the rule is checked, not this CPU's speed."""
    (bundle.directory / CALIBRATION_NAME).write_text(
        Calibration(calibration_key(bundle, options), ms, {}, 3, "forged").to_json())


def test_auto_runs_whatever_was_fastest_and_an_explicit_setting_wins(fresh, counted):
    bundle = ModelBundle.load(fresh)
    auto = RuntimeOptions()
    shipped = [c for c in candidates(bundle, with_openvino=openvino_version() is not None)]
    for winner in shipped:  # each candidate in turn is made the fastest: auto follows the timings, nothing else
        forge(bundle, auto, {c.label: (1.0 if c == winner else 5.0 + i) for i, c in enumerate(shipped)})
        chosen = runtime_choice(bundle, auto)
        assert (chosen.device, chosen.precision) == (winner.device, winner.precision)
    if Candidate("openvino", "bf16") in shipped:  # an AMX CPU where bf16 is fastest: bf16 it is
        forge(bundle, auto, {"OpenVINO bf16": 20.0, "onnxruntime int8": 29.0, "onnxruntime fp32": 40.0})
        encoder = open_audio_encoder(bundle, auto)
        assert opened_as(encoder) == Candidate("openvino", "bf16")
    # OpenVINO timed fastest at everything; explicit settings still decide
    forge(bundle, auto, {c.label: (1.0 if c.device == "openvino" else 9.0) for c in shipped})
    assert runtime_choice(bundle, RuntimeOptions(device="cpu")) == RuntimeOptions(device="cpu")
    plain = open_audio_encoder(bundle, RuntimeOptions(device="cpu", precision="fp32"))
    assert opened_as(plain) == Candidate("cpu", "fp32")
    # an explicit precision with device auto: the fastest engine at that precision
    fp32_engines = {c.device for c in shipped if c.precision == "fp32"}
    assert runtime_choice(bundle, RuntimeOptions(precision="fp32")).device == \
        ("openvino" if "openvino" in fp32_engines else "cpu")
    int8 = RuntimeOptions(device="cpu", precision="int8") if bundle.shipped("int8") else RuntimeOptions(precision="int8")
    assert runtime_choice(bundle, RuntimeOptions(precision="int8")) == int8
    assert counted == []  # all from the (forged) cache


def test_devices_shows_the_choice_and_its_timings(fresh):
    result = run_cli("devices", "--model", str(fresh))  # no cache yet: it is measured now, then shown
    cached = json.loads((fresh / CALIBRATION_NAME).read_text())
    assert f"encoder for {fresh} (runtime.device auto, precision auto): {cached['fastest']}, " in result.stdout, \
        result.stdout + result.stderr
    assert "measured on this CPU" in result.stdout and "Traceback" not in result.stderr
    for label, ms in cached["ms_per_window"].items():
        assert f"{label} {ms:.1f} ms" in result.stdout
    cpu = CpuInfo.read()
    assert f"CPU: {cpu.model}, {cpu.cores} cores" in result.stdout
    run_cli("devices", "--model", str(fresh))  # cached: shown again, not measured again
    assert json.loads((fresh / CALIBRATION_NAME).read_text())["measured_at"] == cached["measured_at"]
    retimed = run_cli("devices", "--model", str(fresh), "--retime")  # after a busy first time: measured again
    again = json.loads((fresh / CALIBRATION_NAME).read_text())
    assert again["measured_at"] != cached["measured_at"] and f"{again['fastest']}, " in retimed.stdout
    explicit = run_cli("devices", "--model", str(fresh), "--config", str(write_config(fresh, "cpu")))
    cpu_file = "audio_encoder.int8.onnx" if ModelBundle.load(fresh).shipped("int8") else "audio_encoder.onnx"
    assert f"(runtime.device cpu, precision auto): onnxruntime, {cpu_file}" in explicit.stdout, explicit.stdout
    assert "an explicit runtime.device is used as given" in explicit.stdout
    missing = run_cli("devices", "--model", str(fresh / "nope"))
    assert f"encoder: no exported model at {fresh / 'nope'}" in missing.stdout and "Traceback" not in missing.stderr


def write_config(folder, device):
    path = folder.parent / "cfg.yaml"
    path.write_text(f"runtime:\n  device: {device}\nevents:\n  - label: x\n    prompts: [birdsong]\n    threshold: 0.3\n")
    return path


def test_a_read_only_model_folder_still_runs_the_measured_choice(fresh, counted, monkeypatch, caplog):
    import streamdetect.embed.encoder.calibration as calibration

    def refuse(path, data, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(calibration, "atomic_write", refuse)
    with caplog.at_level("INFO"):
        encoder = open_audio_encoder(ModelBundle.load(fresh), RuntimeOptions())
    assert len(counted) == 1 and not (fresh / CALIBRATION_NAME).exists()
    assert "could not cache the encoder timing" in caplog.text
    assert f"runtime.device auto: {opened_as(encoder).label}," in caplog.text
