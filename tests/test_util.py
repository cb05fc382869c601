"""The shared helpers of ``streamdetect.util``: atomic writes, safe names, back-off, rate-limited logs."""

from __future__ import annotations

import logging
import os
import random
import re
import time

import numpy as np
import pytest
import soundfile as sf
from helpers import window_result

from streamdetect.analysis.embedding_log import read_log
from streamdetect.daemon.embedding_log import EmbeddingLogWriter
from streamdetect.prompts.refine import RefinementStore, _legacy_label_dir
from streamdetect.sources.base import SourceError, backoff_delay
from streamdetect.sources.file import read_audio, read_blocks
from streamdetect.util.backoff import Backoff
from streamdetect.util.files import TEMP_NAME, atomic_write
from streamdetect.util.names import safe_name
from streamdetect.util.ratelimit import RateLimitedLog


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


SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def test_names_that_are_safe_already_stay_unchanged():
    for name in ("dog_barking", "glass-breaking", "yard.wav", "cam_1", "A9", "dog_bark-1.2"):
        assert safe_name(name) == name


def test_changed_names_carry_a_hash_so_distinct_names_never_share_a_folder_or_topic():
    names = ["a b", "a_b", "a/b", "a  b", "glass/breaking", "glass breaking", "glass_breaking", "🐶", "🐱", "",
             "_", ".", "..", ".hidden", "hidden", "Küche", "K_che", "x" * 64, "x" * 65, "x" * 64 + "y"]
    mapped = [safe_name(n) for n in names]
    assert len(set(mapped)) == len(names), dict(zip(names, mapped, strict=True))
    assert all(SAFE.match(m) and len(m) <= 71 for m in mapped), mapped
    assert safe_name("glass breaking").startswith("glass_breaking-")  # still readable
    assert safe_name("🐶").startswith("_-") and safe_name("🐶") == safe_name("🐶")  # stable
    assert not set("/+# ") & set("".join(mapped))  # also fine as MQTT topic levels


def test_the_embedding_log_keeps_streams_a_b_and_a_underscore_b_apart(tmp_path):
    writer = EmbeddingLogWriter(tmp_path, "k" * 16, flush_s=60.0)
    wall = time.time()
    writer.window(window_result("a b", 0.0, 3.0, wall, np.ones(4, np.float32)))
    writer.window(window_result("a_b", 0.0, 3.0, wall, -np.ones(4, np.float32)))
    writer.close()
    folders = sorted(p.name for p in (tmp_path / ("k" * 16)).iterdir())
    assert folders == sorted([safe_name("a b"), "a_b"]) and len(folders) == 2
    logged = read_log(tmp_path, "k" * 16)
    assert sorted(logged.streams.tolist()) == ["a b", "a_b"]


def test_refinements_saved_in_the_old_folder_layout_are_still_found(tmp_path):
    old = tmp_path / _legacy_label_dir("dog_barking")  # always hashed before, even for a safe label
    old.mkdir()
    np.save(old / "v1.npy", np.ones(4, np.float32))
    (old / "v1.json").write_text('{"version": 1, "prompt_key": "p"}')
    store = RefinementStore(tmp_path)
    assert store.latest("dog_barking")[1]["version"] == 1
    assert store.save("dog_barking", np.zeros(4, np.float32), {}) == 2 and (old / "v2.npy").is_file()
    assert store.save("cat", np.zeros(4, np.float32), {}) == 1 and (tmp_path / "cat" / "v1.npy").is_file()


def test_backoff_doubles_with_equal_jitter_up_to_the_cap_and_starts_over_after_reset():
    backoff = Backoff(0.5, 4.0, rng=random.Random(7))
    for full in (0.5, 1.0, 2.0, 4.0, 4.0, 4.0):
        assert full / 2 <= backoff.next_delay() <= full
    assert backoff.failures == 6
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5 and backoff.failures == 1
    assert Backoff(0.5, 4.0, rng=random.Random(7)).delay(3) == Backoff(0.5, 4.0, rng=random.Random(7)).delay(3)
    assert Backoff(2.0, 1.0).delay(1) <= 1.0  # max_s below min_s caps every wait
    assert all(Backoff(1.0, 8.0, floor_s=1.0).delay(1) == 1.0 for _ in range(20))  # the floor after the jitter


def test_the_backoff_delay_third_party_sources_use_is_the_one_backoff():
    seeded = [backoff_delay(a, 0.5, 4.0, random.Random(7)) for a in range(1, 8)]
    assert seeded == [Backoff(0.5, 4.0, rng=random.Random(7)).delay(a) for a in range(1, 8)]
    assert 0.25 <= seeded[0] <= 0.5 and all(2.0 <= d <= 4.0 for d in seeded[3:])


def test_rate_limited_log_says_the_first_at_once_then_once_per_interval_with_what_it_left_out(caplog):
    now = [0.0]
    say = RateLimitedLog(logging.getLogger("t"), 60.0, logging.ERROR, clock=lambda: now[0])
    caplog.set_level(logging.ERROR)
    logged = []
    for second in range(130):
        now[0] = float(second)
        logged.append(say("disk full on %s", "a", key="a"))
    assert say("other", key="b")  # keys are independent
    lines = [r.getMessage() for r in caplog.records]
    assert [i for i, ok in enumerate(logged) if ok] == [0, 60, 120]
    assert lines[:2] == ["disk full on a", "disk full on a (59 not logged since the last message)"]
    assert lines[-1] == "other" and caplog.records[0].funcName.startswith("test_rate_limited")


def test_read_blocks_streams_a_file_and_read_audio_returns_it_whole_or_its_start(tmp_path):
    wav = tmp_path / "two.wav"
    stereo = np.stack([np.linspace(-0.5, 0.5, 16_000), np.linspace(-0.5, 0.5, 16_000)], axis=1)
    sf.write(wav, stereo, 8000)  # 2 s stereo at 8 kHz: mixed to mono, resampled to 16 kHz
    blocks = list(read_blocks(wav, 16_000, block_s=0.5))
    assert len(blocks) >= 4 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    whole = read_audio(wav, 16_000)
    assert abs(whole.size - 32_000) <= 16 and np.allclose(whole, np.concatenate(blocks))
    assert read_audio(wav, 16_000, max_s=0.25).size == 4000
    with pytest.raises(SourceError, match="does not exist"):
        read_blocks(tmp_path / "missing.wav", 16_000)  # at once, not at the first block
