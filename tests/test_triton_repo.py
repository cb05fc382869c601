"""``streamdetect export --triton-repo``: the model repository, its config checked against Triton's own
model-configuration schema, and the model identity a station checks."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import run_cli
from triton_server import triton_python

from streamdetect.model.identity import ONNX_SHA256, ModelIdentity, frontend_sha256, served_file
from streamdetect.model.manifest import (
    AUDIO_ENCODER,
    AUDIO_ENCODER_FP16,
    ModelBundle,
    ModelError,
    sha256_file,
)
from streamdetect.model.triton_repo import TritonRepoOptions, config_pbtxt, write_triton_repo

# Parsed by the protobuf package with the ModelConfig message that tritonclient compiles from Triton's
# model_config.proto (triton-inference-server/common): an unknown field, a wrong type or a bad enum value fails.
PARSE = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
config = text_format.Parse(open(sys.argv[1]).read(), model_config_pb2.ModelConfig())
print(json_format.MessageToJson(config, preserving_proto_field_name=True))
"""


def parsed_by_triton_schema(path) -> dict:
    done = subprocess.run([str(triton_python()), "-c", PARSE, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout)


@pytest.mark.triton
def test_the_export_cli_writes_a_repository_triton_s_schema_accepts(tiny_model, tmp_path):
    done = run_cli("export", "--out", str(tiny_model), "--triton-repo", str(tmp_path / "repo"), "--triton-kind",
                   "cpu", "--triton-max-batch", "32", "--triton-preferred", "4,16", "--triton-delay-us", "2500",
                   "--triton-instances", "2")
    assert done.returncode == 0, done.stderr
    model_dir = tmp_path / "repo" / "streamdetect_audio"
    assert sha256_file(model_dir / "1" / "model.onnx") == ModelBundle.load(tiny_model).manifest["files"][AUDIO_ENCODER]
    config = parsed_by_triton_schema(model_dir / "config.pbtxt")
    assert config["backend"] == "onnxruntime" and config["max_batch_size"] == 32
    assert config["input"] == [{"name": "input_features", "data_type": "TYPE_FP32", "dims": ["1", "1001", "64"]}]
    assert config["output"] == [{"name": "audio_embedding", "data_type": "TYPE_FP32", "dims": ["32"]}]
    assert config["dynamic_batching"] == {"preferred_batch_size": [4, 16], "max_queue_delay_microseconds": "2500"}
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    params = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert served_file(ModelBundle.load(tiny_model), params) == AUDIO_ENCODER
    assert not (model_dir / "1" / "model.py").exists()


@pytest.mark.triton
def test_the_schema_check_fails_on_a_config_triton_would_reject(tiny_model, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    text = config_pbtxt(bundle, TritonRepoOptions(), ModelIdentity.of(bundle, AUDIO_ENCODER))
    for broken in (text.replace("TYPE_FP32", "TYPE_FLOAT32", 1), text.replace("max_batch_size", "max_batch"),
                   text.replace('backend: "onnxruntime"', "backend: onnxruntime")):
        (tmp_path / "config.pbtxt").write_text(broken)
        with pytest.raises(ValueError):
            parsed_by_triton_schema(tmp_path / "config.pbtxt")


@pytest.mark.triton
def test_a_gpu_repository_serves_fp16_where_the_export_verified_it(tiny_model, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    assert bundle.shipped("fp16")
    model_dir = write_triton_repo(bundle, tmp_path / "repo", TritonRepoOptions(name="clap"))
    assert sha256_file(model_dir / "1" / "model.onnx") == bundle.manifest["files"][AUDIO_ENCODER_FP16]
    config = parsed_by_triton_schema(model_dir / "config.pbtxt")
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]
    assert config["parameters"]["streamdetect_precision"]["string_value"] == "fp16"
    python = write_triton_repo(bundle, tmp_path / "py", TritonRepoOptions(backend="python", kind="cpu"))
    assert parsed_by_triton_schema(python / "config.pbtxt")["backend"] == "python"
    assert (python / "1" / "model.py").is_file()


def test_a_repository_refuses_what_it_cannot_serve(tiny_model, tmp_path):
    bundle = ModelBundle.load(tiny_model)
    with pytest.raises(ModelError, match="preferred"):
        write_triton_repo(bundle, tmp_path, TritonRepoOptions(max_batch_size=8, preferred_batch_sizes=(4, 16)))
    with pytest.raises(ModelError, match="fp32 or fp16"):
        write_triton_repo(bundle, tmp_path, TritonRepoOptions(precision="int8"))
    done = run_cli("export", "--out", str(tiny_model), "--triton-repo", str(tmp_path), "--triton-preferred", "x")
    assert done.returncode != 0 and "--triton-preferred" in done.stderr and "Traceback" not in done.stderr


def test_the_identity_tells_which_file_a_server_runs_and_refuses_any_other(tiny_model):
    bundle = ModelBundle.load(tiny_model)
    for name in (AUDIO_ENCODER, AUDIO_ENCODER_FP16):
        assert served_file(bundle, ModelIdentity.of(bundle, name).parameters()) == name
    params = ModelIdentity.of(bundle, AUDIO_ENCODER).parameters()
    with pytest.raises(ValueError, match="different audio encoder"):
        served_file(bundle, {**params, ONNX_SHA256: "0" * 64})
    with pytest.raises(ValueError, match="front-end parameters differ"):
        served_file(bundle, {**params, "streamdetect_frontend_sha256": "0" * 64})
    with pytest.raises(ValueError, match="no streamdetect_onnx_sha256"):
        served_file(bundle, {})
    frontend = bundle.manifest["frontend"]
    assert frontend_sha256(frontend) == frontend_sha256(dict(reversed(list(frontend.items()))))
    assert frontend_sha256(frontend) != frontend_sha256({**frontend, "n_mels": 128})
