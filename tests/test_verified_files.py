"""A start does not hash a model file again that was found whole and has not been touched since; any change
to it (even one that puts its modification time back) is hashed again and refused."""

import json
import os
import shutil

import pytest

import streamdetect.model.manifest as manifest_mod
from streamdetect.model.manifest import AUDIO_ENCODER, VERIFIED_NAME, ModelBundle, ModelError


def test_an_untouched_file_is_not_hashed_again_and_a_changed_one_is(tiny_model, tmp_path, monkeypatch):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    ModelBundle.load(copy).path(AUDIO_ENCODER)  # a copy has new inodes and times: hashed, then stamped
    stamps = json.loads((copy / VERIFIED_NAME).read_text())
    assert stamps[AUDIO_ENCODER][0] == ModelBundle.load(copy).manifest["files"][AUDIO_ENCODER]

    hashed = []
    real = manifest_mod.sha256_file
    monkeypatch.setattr(manifest_mod, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    assert ModelBundle.load(copy).path(AUDIO_ENCODER) == copy / AUDIO_ENCODER
    assert hashed == []  # the next start trusts the stamp

    target = copy / AUDIO_ENCODER
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old modification time
    with pytest.raises(ModelError, match=r"audio_encoder\.onnx does not match its manifest"):
        ModelBundle.load(copy).path(AUDIO_ENCODER)
    assert hashed == [AUDIO_ENCODER]
