import os
import threading

import numpy as np
import pytest
import soundfile as sf
from helpers import write_tone_scene

from streamdetect.sources import SOURCES
from streamdetect.sources.base import SourceError
from streamdetect.sources.file import FileOptions, FileSource

SR = 48_000


def _collect(source):
    return list(source.blocks(threading.Event()))


@pytest.mark.parametrize(
    "suffix, rate, channels, subtype",
    [(".wav", 44_100, 2, "PCM_16"), (".flac", 16_000, 1, "PCM_24"), (".ogg", 22_050, 2, "VORBIS"),
     (".wav", 48_000, 6, "FLOAT"), (".wav", 8_000, 1, "PCM_U8")],
)
def test_any_rate_and_channel_count_becomes_48k_mono(tmp_path, suffix, rate, channels, subtype):
    seconds = 2.5
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    path = tmp_path / f"x{suffix}"
    sf.write(path, data, rate, subtype=subtype)
    blocks = _collect(FileSource(FileOptions(path=str(path), block_s=0.5), SR))
    audio = np.concatenate(blocks)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - seconds * SR) <= 2  # resampler accounts for every input sample
    spectrum = np.abs(np.fft.rfft(audio[SR // 2 : SR // 2 + SR]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 s of audio: bin index == Hz
    assert 0.3 < np.sqrt(np.mean(audio[SR // 2 : -SR // 2] ** 2)) < 0.4  # mixed down, not summed


def test_file_is_read_in_blocks(tmp_path, monkeypatch):
    path = write_tone_scene(tmp_path / "long.wav", seconds=20.0)
    reads = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    blocks = _collect(FileSource(FileOptions(path=str(path), block_s=1.0), SR))
    assert len(blocks) >= 20 and max(b.size for b in blocks) <= SR + 64
    assert reads and all(0 < n <= SR for n in reads)


def test_stop_event_ends_a_file_early(tmp_path):
    path = write_tone_scene(tmp_path / "a.wav", seconds=10.0)
    stop = threading.Event()
    got = []
    for block in FileSource(FileOptions(path=str(path)), SR).blocks(stop):
        got.append(block)
        stop.set()
    assert len(got) == 1


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        FileSource(FileOptions(path=str(tmp_path / "nope.wav")), SR)
    os.mkfifo(tmp_path / "fifo.wav")  # opened as audio, a FIFO would wait for a writer for ever
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "nope.wav")
    for path, what in ((tmp_path, "is a folder"), (tmp_path / "fifo.wav", r"is not a regular file \(a FIFO\)"),
                       ("/dev/zero", r"is not a regular file \(a device\)"), (tmp_path / "loop.wav", "is a symlink loop"),
                       (tmp_path / "dangling.wav", "is a link to nothing")):
        with pytest.raises(SourceError, match=f"audio file {path} {what}$"):
            FileSource(FileOptions(path=str(path)), SR)
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio")
    with pytest.raises(SourceError, match=r"(?s)cannot decode .*fake\.wav as audio.*supported formats"):
        FileSource(FileOptions(path=str(fake)), SR)


def test_registry_knows_builtin_sources():
    assert {"file", "microphone"} <= set(SOURCES.names())
    assert SOURCES.get("file") is FileSource


def test_device_resolution_by_index_name_and_substring(monkeypatch):
    from streamdetect.sources import microphone

    devices = [
        {"index": 0, "name": "HDA Intel PCH: ALC892 Analog", "channels": 2, "sample_rate": 44100.0, "default": False},
        {"index": 3, "name": "USB Audio Device: Mic", "channels": 1, "sample_rate": 48000.0, "default": True},
        {"index": 4, "name": "USB Audio Device: Line", "channels": 2, "sample_rate": 48000.0, "default": False},
    ]
    monkeypatch.setattr(microphone, "input_devices", lambda: devices)
    assert microphone.resolve_device(None)["index"] == 3
    assert microphone.resolve_device("0")["index"] == 0
    assert microphone.resolve_device(4)["index"] == 4
    assert microphone.resolve_device("alc892")["index"] == 0
    with pytest.raises(SourceError, match="matches several input devices"):
        microphone.resolve_device("usb audio")
    with pytest.raises(SourceError, match=r"(?s)no input device matches 'webcam'.*\[3\] USB Audio Device: Mic"):
        microphone.resolve_device("webcam")
    with pytest.raises(SourceError, match="no input device with index 9"):
        microphone.resolve_device("9")
