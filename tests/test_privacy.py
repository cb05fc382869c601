"""The privacy filter: windows whose speech score reaches the threshold are silenced in clips (or their clip is
skipped), never reach the embedding log, are counted, and the events overlapping them say ``private: true``.

The tiny test model's text prompts mean nothing, so "speech" here is whatever part of a tone scene scores
above a threshold set between the scene's windows' speech scores; every assertion is against what the
detector decided, computed again independently from the same scores."""

import threading
from pathlib import Path

import numpy as np
import soundfile as sf
from helpers import (
    SAMPLE_RATE,
    collecting_sink,
    file_windows,
    split_threshold,
    write_tone_scene,
    written_clips,
)

from streamdetect.analysis.embedding_log import read_log
from streamdetect.analysis.replay import run_source
from streamdetect.config import parse_config
from streamdetect.daemon.build import build_detector
from streamdetect.daemon.embedding_log import EmbeddingLogWriter
from streamdetect.daemon.metrics import Metrics
from streamdetect.model.manifest import ModelBundle
from streamdetect.sinks.base import SinkSet, build_sinks
from streamdetect.sinks.clips import ClipsOptions, ClipsSink
from streamdetect.sources.file import FileOptions, FileSource

PCM_TOL = 1.0 / 32768 + 1e-7
EVERYTHING = [{"label": "any", "prompts": ["wind noise"], "threshold": -1.0}]  # one event over the whole file


class EmbeddingLog(EmbeddingLogWriter):
    """The daemon's embedding-log writer as the detector's listener; ``windows``: the starts of the windows it
    wrote to disk, read back once it is closed."""

    def __init__(self, folder):
        super().__init__(folder, "privacy-test-model-key")
        self.folder = folder

    @property
    def windows(self):
        self.close()
        return sorted(read_log(self.folder, "privacy-test-model-key").starts_s.tolist())


def privacy_config(model, threshold, **privacy):
    return parse_config({"model": str(model), "events": EVERYTHING, "runtime": {"device": "cpu"},
                         "privacy": {"enabled": True, "threshold": threshold, **privacy}})


def speech_threshold(model, wav):
    """A threshold between the scene's windows' speech scores, and which windows it makes private."""
    probe = build_detector(privacy_config(model, 1.0), ModelBundle.load(model), SinkSet([]))
    windows = file_windows(wav)
    speech = probe.scores(windows).embeddings @ probe.bank.privacy
    threshold = split_threshold(speech)
    return threshold, [w for w, s in zip(windows, speech, strict=True) if s >= threshold], windows


def run(model, wav, config, clips_options):
    folder = Path(clips_options.pop("dir"))
    clips = ClipsSink(ClipsOptions(dir=str(folder), pre_roll_s=0.0, post_roll_s=0.0, **clips_options))
    collect, log, metrics = collecting_sink(), EmbeddingLog(folder.parent / "emb"), Metrics()
    sinks = SinkSet([("clips", clips), ("collect", collect)], threaded=True, drain_timeout_s=60)
    detector = build_detector(config, ModelBundle.load(model), sinks, observer=metrics, listeners=[metrics, log])
    stream = run_source(detector, FileSource(FileOptions(path=str(wav), block_s=0.5), SAMPLE_RATE),
                        threading.Event())
    sinks.close()
    assert sinks.failures == {"clips": 0, "collect": 0}
    return clips, collect.records, log, metrics, stream


def test_speech_windows_are_silenced_in_clips_and_absent_from_the_embedding_log(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=12.0, tone_at=(4.0, 8.0))
    threshold, private, windows = speech_threshold(tiny_model, wav)
    assert 0 < len(private) < len(windows)
    clips, records, log, metrics, stream = run(tiny_model, wav, privacy_config(tiny_model, threshold),
                                               {"dir": tmp_path / "clips", "spectrogram": True})
    [path] = written_clips(clips)
    data, _ = sf.read(path, dtype="float32")
    source, _ = sf.read(wav, dtype="float32")
    expected = source.copy()
    for w in private:
        expected[w.start_sample : w.start_sample + w.n_samples] = 0.0
    np.testing.assert_allclose(data, expected[: data.size], atol=PCM_TOL, rtol=0)
    assert data.size == source.size and np.any(data)  # same length, only the speech is gone
    assert path.with_suffix(".png").is_file()
    assert sorted(log.windows) == sorted(w.start_s for w in windows if w not in private)
    assert stream.private_windows == len(private)
    assert metrics.registry.get_sample_value("streamdetect_private_windows_total",
                                             {"stream": "scene.wav"}) == len(private)
    assert [r.phase for r in records] == ["start", "end"] and records[-1].private is True
    assert records[-1].to_dict()["private"] is True


def test_skip_mode_writes_no_clip_for_an_event_touching_speech(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=8.0, tone_at=(3.0, 5.0))
    threshold, private, _ = speech_threshold(tiny_model, wav)
    assert private
    clips, records, *_ = run(tiny_model, wav, privacy_config(tiny_model, threshold),
                             {"dir": tmp_path / "clips", "private": "skip"})
    assert records and records[-1].private is True
    assert written_clips(clips) == [] and not any((tmp_path / "clips").rglob("*.flac"))


def test_no_speech_means_nothing_private_and_an_explicit_false(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=6.0)
    clips, records, log, _, stream = run(tiny_model, wav, privacy_config(tiny_model, 1.0),
                                         {"dir": tmp_path / "clips"})
    source, _ = sf.read(wav, dtype="float32")
    data, _ = sf.read(written_clips(clips)[0], dtype="float32")
    np.testing.assert_allclose(data, source, atol=PCM_TOL, rtol=0)
    assert stream.private_windows == 0 and len(log.windows) == stream.windows
    assert records[-1].to_dict()["private"] is False  # the filter is on and found nothing


def test_store_audio_false_keeps_only_the_records(tiny_model, tmp_path):
    config = parse_config({"model": str(tiny_model), "events": EVERYTHING,
                           "privacy": {"enabled": False, "store_audio": False},
                           "sinks": [{"type": "clips", "dir": str(tmp_path / "clips")},
                                     {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}]})
    sinks = build_sinks(config.sinks, keep_audio=config.privacy.store_audio)
    try:
        assert [name for name, _ in sinks.sinks] == ["jsonl#1"] and not sinks.wants_audio
    finally:
        sinks.close()
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=5.0)
    collect, log = collecting_sink(), EmbeddingLog(tmp_path / "emb")
    detector = build_detector(config, ModelBundle.load(tiny_model), SinkSet([("c", collect)]), listeners=[log])
    run_source(detector, FileSource(FileOptions(path=str(wav)), SAMPLE_RATE), threading.Event())
    assert collect.records and all(r.embedding is None for r in collect.records) and log.windows == []
    assert "private" not in collect.records[0].to_dict()  # the filter is off: records as before
