"""The shared helpers of ``streamdetect.util``: atomic writes, safe names, back-off, rate-limited logs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from streamdetect.util.files import TEMP_NAME, atomic_write


def test_atomic_write_takes_bytes_text_and_a_writer_and_replaces_the_target(tmp_path):
    target = tmp_path / "x.npy"
    atomic_write(target, b"old")
    atomic_write(target, "neu: ü")
    assert target.read_text(encoding="utf-8") == "neu: ü"
    atomic_write(target, lambda fh: np.save(fh, np.arange(3)))
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # no temp file left


def test_a_failed_atomic_write_leaves_the_target_and_no_temp_file(tmp_path):
    target = tmp_path / "spool.jsonl"
    target.write_bytes(b"whole\n")

    def half(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half)
    assert target.read_bytes() == b"whole\n" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_write_uses_ordinary_permissions_and_a_recognisable_temp_name(tmp_path):
    seen = []
    atomic_write(tmp_path / "a.flac", lambda fh: seen.extend(p.name for p in tmp_path.iterdir()))
    assert len(seen) == 1 and TEMP_NAME.match(seen[0])["target"] == "a.flac"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.flac").stat().st_mode & 0o777 == 0o666 & ~umask
