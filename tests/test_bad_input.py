"""Bad input tried on purpose, through the real code paths. Each case must end in a clear error that names the
file/key and says what is wrong, or in a logged and counted skip; never a traceback, never a quietly wrong answer.
"""

from __future__ import annotations

import json
import shutil
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from helpers import make_detector, run_cli, write_config

from streamdetect.analysis.replay import analyse_file
from streamdetect.config import ConfigError, load_config, parse_config
from streamdetect.model.manifest import AUDIO_ENCODER, TEXT_ENCODER, ModelBundle, ModelError
from streamdetect.pipeline.windows import Windower
from streamdetect.prompts.assemble import prompt_bank_for
from streamdetect.prompts.cache import PromptCache
from streamdetect.sources.base import SourceError
from streamdetect.sources.file import FileOptions, FileSource

SR = 48_000
EVENT = {"label": "tone", "prompts": ["a beep"], "threshold": -1.0}


def read_all(path, rate: int = SR, block_s: float = 1.0) -> np.ndarray:
    source = FileSource(FileOptions(path=str(path), block_s=block_s), rate)
    blocks = list(source.blocks(threading.Event()))
    assert all(isinstance(b, np.ndarray) and b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def sine(seconds: float, rate: int, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


# --- broken and foreign files -----------------------------------------------------------------------------------

@pytest.fixture
def good_files(tmp_path):
    sf.write(tmp_path / "good.wav", sine(1.0, SR), SR, subtype="PCM_16")
    sf.write(tmp_path / "good.flac", sine(1.0, SR), SR)
    return tmp_path


BROKEN = {
    "empty.wav": lambda d: b"",
    "header_cut.wav": lambda d: (d / "good.wav").read_bytes()[:30],
    "header_cut.flac": lambda d: (d / "good.flac").read_bytes()[:30],
    "notes.wav": lambda d: b"these are my notes, not audio\n" * 50,
    "picture.flac": lambda d: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
    "noise.ogg": lambda d: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_or_foreign_file_is_refused_naming_the_file(good_files, name):
    path = good_files / name
    path.write_bytes(BROKEN[name](good_files))
    with pytest.raises(SourceError) as error:
        FileSource(FileOptions(path=str(path)), SR)
    assert str(path) in str(error.value) and "cannot decode" in str(error.value)
    assert "supported formats" in str(error.value)


def test_truncated_data_yields_exactly_the_samples_present(good_files):
    """A WAV cut in its data chunk (header says 1 s): the samples that exist, nothing invented or padded."""
    path = good_files / "cut.wav"
    path.write_bytes((good_files / "good.wav").read_bytes()[:44 + 2 * 1000])
    audio = read_all(path)
    assert audio.shape == (1000,)
    np.testing.assert_allclose(audio, sine(1.0, SR)[:1000], atol=1 / 32768)


def test_damaged_flac_body_gives_a_source_error_or_clean_audio(good_files):
    """Garbage after a valid FLAC header: libsndfile may skip bad frames or fail; either way no traceback of
    another type and no NaN reaches the detector."""
    data = bytearray((good_files / "good.flac").read_bytes())
    rng = np.random.default_rng(1)
    data[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    path = good_files / "damaged.flac"
    path.write_bytes(bytes(data))
    try:
        audio = read_all(path)
    except SourceError as e:
        assert str(path) in str(e)
    else:
        assert np.isfinite(audio).all() and audio.size <= SR + 1


def test_cli_on_a_non_audio_file_exits_with_the_reason_not_a_traceback(tiny_model, tmp_path):
    fake = tmp_path / "song.wav"
    fake.write_text("not audio at all\n")
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [EVENT])
    result = run_cli("run", "--config", str(cfg), "--input", str(fake))
    assert result.returncode == 1
    assert f"cannot decode {fake} as audio" in result.stderr and "Traceback" not in result.stderr


# --- unusual but valid formats -----------------------------------------------------------------------------------

FORMATS = [  # (rate, channels, subtype, file name)
    (48_000, 1, "PCM_U8", "u8.wav"), (48_000, 1, "PCM_24", "s24.wav"), (48_000, 1, "DOUBLE", "f64.wav"),
    (8_000, 1, "PCM_16", "8k.wav"), (192_000, 1, "PCM_24", "192k.wav"), (44_100, 6, "PCM_16", "6ch.wav"),
    (48_000, 2, "PCM_24", "s24.flac"),
]


@pytest.mark.parametrize("rate,channels,subtype,name", FORMATS)
def test_unusual_formats_arrive_as_the_same_mono_48k_signal(tmp_path, rate, channels, subtype, name):
    mono = sine(1.0, rate)
    sf.write(tmp_path / name, np.stack([mono] * channels, axis=1) if channels > 1 else mono, rate, subtype=subtype)
    audio = read_all(tmp_path / name)
    assert abs(audio.shape[0] - SR) <= 1 and np.isfinite(audio).all()
    middle = audio[SR // 10 : -SR // 10]  # away from the resampler's edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.fft.rfftfreq(middle.size, 1 / SR)[np.argmax(spectrum)] == pytest.approx(1000, abs=5)


# --- NaN, Inf and clipping ---------------------------------------------------------------------------------------

def test_non_finite_samples_become_silence_and_are_counted(caplog):
    windower = Windower(0.5, 0.25, 1000)
    block = np.ones(1000, np.float32)
    block[[10, 20, 600]] = [np.nan, np.inf, -np.inf]
    caplog.set_level("WARNING")
    windows = list(windower.push(block)) + list(windower.push(block))
    assert windower.nonfinite_samples == 6
    assert all(np.isfinite(w.samples).all() for w in windows)
    assert windows[0].samples[10] == 0.0 and windows[0].samples[11] == 1.0
    assert caplog.text.count("non-finite audio sample") == 1  # logged once, then counted


def test_nan_file_gives_finite_scores_and_reports_the_count(tiny_model, tmp_path):
    audio = np.random.default_rng(0).normal(0, 0.1, 5 * SR).astype(np.float32)
    audio[SR : SR + 100] = np.nan
    audio[3 * SR] = np.inf
    sf.write(tmp_path / "nan.wav", audio, SR, subtype="FLOAT")
    detector, _ = make_detector(tiny_model, [EVENT])
    stream, records = analyse_file(detector, tmp_path / "nan.wav")
    _starts, _ends, scores, _vetoed = stream.score_log.arrays(1)
    assert scores.shape[0] == 3 and np.isfinite(scores).all()  # without the fix: NaN scores, the event never fires
    assert stream.windower.nonfinite_samples == 101
    assert [r.phase for r in records] == ["start", "end"]

    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [EVENT])
    result = run_cli("run", "--config", str(cfg), "--input", str(tmp_path / "nan.wav"))
    assert result.returncode == 0, result.stderr
    assert "non-finite audio sample" in result.stderr and "nonfinite_samples 101" in result.stderr
    assert all(np.isfinite(json.loads(line)["peak_score"]) for line in result.stdout.splitlines())


@pytest.mark.parametrize("subtype,gain", [("PCM_16", 10.0), ("FLOAT", 1.5)])
def test_clipped_and_over_full_scale_audio_is_analysed(tiny_model, tmp_path, subtype, gain):
    """Saturated 16-bit audio is clipped at full scale; a float file may exceed it. Both are valid input."""
    audio = np.clip(gain * sine(4.0, SR), -1, 1) if subtype == "PCM_16" else gain * sine(4.0, SR)
    sf.write(tmp_path / "loud.wav", audio, SR, subtype=subtype)
    stream, records = analyse_file(make_detector(tiny_model, [EVENT])[0], tmp_path / "loud.wav")
    scores = stream.score_log.arrays(1)[2]
    assert scores.shape[0] == 2 and np.isfinite(scores).all() and len(records) == 2


# --- a 10-hour file ------------------------------------------------------------------------------------------------

def test_a_three_hour_file_streams_with_flat_memory(tmp_path):
    """3 h at 8 kHz (8-bit FLAC, ~21 MB on disk; 346 MB once decoded to float32, 43 times the bound below).
    Reading and windowing it must hold a few blocks, not the file. The encoder is not run over it: the windows
    are counted. (10 h took 14 CPU-s, mostly tracemalloc's cost per allocation, and proved nothing more.)"""
    rate, minutes = 8_000, 180
    minute = sine(60.0, rate, freq=440.0, amp=0.25)
    path = tmp_path / "three_hours.flac"
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_S8", format="FLAC") as fh:
        for m in range(minutes):
            fh.write(minute * (1.0 if m % 2 else 0.5))  # loud and quiet minutes, to check the order arrives
    try:
        source = FileSource(FileOptions(path=str(path), block_s=10.0), rate)
        assert source.duration_s == minutes * 60.0
        windower = Windower(3.0, 1.0, rate)
        count, starts_ok, loud_ok = 0, True, True
        tracemalloc.start()
        try:
            for block in source.blocks(threading.Event()):
                for window in windower.push(block):
                    starts_ok &= window.start_sample == count * rate and window.n_samples == 3 * rate
                    if count % 60 == 10:  # fully inside one minute
                        peak = float(np.abs(window.samples).max())
                        loud_ok &= abs(peak - (0.25 if (count // 60) % 2 else 0.125)) < 0.01
                    count += 1
            tail = list(windower.finish())
            _current, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        path.unlink()
    assert count == minutes * 60 - 2 and tail == [] and starts_ok and loud_ok
    assert windower.total_samples == minutes * 60 * rate
    assert peak_bytes < 8 * 1024 * 1024, f"peak {peak_bytes / 1e6:.1f} MB traced while streaming"


# --- configs -----------------------------------------------------------------------------------------------------

def config_errors(path, text: str) -> str:
    """The message of loading ``text`` as the config file ``path`` (which must fail)."""
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value)


def test_config_with_every_kind_of_mistake_lists_each_one(tmp_path):
    path = tmp_path / "bad.yaml"
    text = config_errors(
        path,
        "modle: models/x\n"
        "windows: {window_s: 12, hop_s: -1}\n"
        "runtime: {batch_size: many}\n"
        "events:\n"
        "  - {label: a, prompts: [x], threshold: 1.7}\n"
        "  - {label: b, prompts: x, threshold: 0.2, treshold: 0.3}\n"
        "sinks:\n"
        "  - {type: webhook, url: 'ftp://example.org/hook'}\n"
        "  - {type: jsonl, path: out.jsonl, labels: [a, c]}\n"
        "  - {type: nosuch}\n",
    )
    for expected in [
        "bad.yaml: modle: unknown key",
        "windows.window_s: expected less than or equal to 10 (found 12)",
        "windows.hop_s: expected greater than 0 (found -1)",
        "runtime.batch_size: expected a valid integer",
        "events[0].threshold: expected less than or equal to 1 (found 1.7)",
        "events[1].treshold: unknown key (found 0.3)",
    ]:
        assert expected in text, text
    # the plugin checks run once the core schema is valid
    text = config_errors(path, "events: [{label: a, prompts: [x], threshold: 0.2}]\n"
                               "sinks:\n  - {type: webhook, url: 'ftp://example.org/hook'}\n"
                               "  - {type: webhook, url: 'file:///etc/passwd'}\n"
                               "  - {type: jsonl, path: out.jsonl, labels: [a, c]}\n  - {type: nosuch}\n")
    assert "sinks[0].url: URL scheme should be 'http' or 'https'" in text
    assert "sinks[1].url: URL scheme should be 'http' or 'https'" in text
    assert "sinks[2].labels: 'c' is not an event label" in text and "sinks[3].type:" in text


def test_window_shorter_than_hop_is_allowed_longer_than_ten_seconds_is_not():
    config = parse_config({"events": [EVENT], "windows": {"window_s": 1.0, "hop_s": 2.5}})
    assert (config.windows.window_s, config.windows.hop_s) == (1.0, 2.5)
    with pytest.raises(ConfigError, match=r"windows.window_s: expected less than or equal to 10 \(found 10.5\)"):
        parse_config({"events": [EVENT], "windows": {"window_s": 10.5}})


def test_yaml_alias_bomb_is_refused_fast(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    lines += ["events: [{label: x, prompts: [y], threshold: 0.2}]", "sinks: [{type: stdout, extra: *i}]"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # 9**9 = 387 million strings once expanded
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="too large: more than 50000 values once YAML aliases"):
        load_config(path)
    assert time.perf_counter() - t0 < 5.0  # unguarded, validation and the error message expand it (minutes, GBs)


def test_deeply_nested_yaml_and_binary_files_are_config_errors(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("events: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: "):
        load_config(path)
    path.write_bytes(b"\xff\xfe\x00garbage\x81")
    with pytest.raises(ConfigError, match="deep.yaml: "):
        load_config(path)


# --- model directory and prompt cache ------------------------------------------------------------------------------

def test_tampered_model_file_is_refused_by_sha256(tiny_model, tmp_path):
    copy = shutil.copytree(tiny_model, tmp_path / "model")
    data = bytearray((copy / AUDIO_ENCODER).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    (copy / AUDIO_ENCODER).write_bytes(bytes(data))
    bundle = ModelBundle.load(copy)  # the manifest itself is fine
    with pytest.raises(ModelError, match="does not match its manifest .* changed or only partly copied"):
        bundle.path(AUDIO_ENCODER)
    cfg = write_config(tmp_path / "cfg.yaml", copy, [EVENT], runtime={"device": "cpu", "precision": "fp32"})
    sf.write(tmp_path / "a.wav", sine(1.0, SR), SR)
    result = run_cli("run", "--config", str(cfg), "--input", str(tmp_path / "a.wav"))
    assert result.returncode == 2 and "does not match its manifest" in result.stderr
    assert "Traceback" not in result.stderr


def test_prompt_cache_of_another_model_is_never_used(tiny_model, tmp_path, caplog):
    bundle = ModelBundle.load(tiny_model)
    events = parse_config({"events": [EVENT]}).events
    own = prompt_bank_for(bundle, events, tmp_path / "cache")
    # Another model's cache: different key, different dimension, planted in the same directory.
    other = PromptCache(tmp_path / "cache", "f" * 64)
    other.put("a beep", np.full(512, 7.0, np.float32))
    # And a foreign embedding copied by hand under this model's key.
    mine = PromptCache(tmp_path / "cache", bundle.text_key)
    np.save(mine._path("a beep"), np.full(512, 7.0, np.float32))
    caplog.set_level("WARNING")
    again = prompt_bank_for(bundle, events, tmp_path / "cache")
    assert again.events.shape == (1, bundle.embedding_dim)
    np.testing.assert_allclose(again.events, own.events, atol=1e-6)
    assert "is not a finite 32-dim embedding of this model" in caplog.text
    assert mine.get("a beep").shape == (bundle.embedding_dim,)  # re-embedded and rewritten


def test_text_encoder_is_verified_before_prompts_are_embedded(tiny_model, tmp_path):
    copy = shutil.copytree(tiny_model, tmp_path / "model")
    with open(copy / TEXT_ENCODER, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="text_encoder.onnx does not match its manifest"):
        prompt_bank_for(ModelBundle.load(copy), parse_config({"events": [EVENT]}).events, tmp_path / "fresh")


@pytest.mark.parametrize("offset,fmt,value", [(24, "<I", 2_000_000_000), (24, "<I", 1), (22, "<H", 1000)])
def test_absurd_rate_or_channel_count_in_a_header_is_refused(good_files, offset, fmt, value):
    """libsndfile opens these; reading one block of a "2 GHz" file would allocate 8 GB, and a "1 Hz" file of
    a few KB would be resampled into hours of audio."""
    data = bytearray((good_files / "good.wav").read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path = good_files / "odd.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"odd.wav: .* is outside what is supported .* is the header damaged"):
        FileSource(FileOptions(path=str(path)), SR)


def test_a_wrong_sink_option_does_not_hide_the_scoring_and_label_mistakes(tmp_path):
    text = config_errors(tmp_path / "bad.yaml", "scoring: {mode: softmax}\n"
                                                "events: [{label: a, prompts: [x], threshold: 0.2}]\n"
                                                "sinks:\n  - {type: webhook, url: 'ftp://example.org/hook'}\n"
                                                "  - {type: jsonl, path: out.jsonl, labels: [c]}\n")
    assert "sinks[0].url: URL scheme should be 'http' or 'https'" in text
    assert "sinks[1].labels: 'c' is not an event label" in text
    assert "scoring.background: softmax over a single prompt is always 1" in text
