import logging
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import (
    collecting_sink,
    event_record,
    fill,
    run_cli,
    write_config,
    write_tone_scene,
    written_clips,
)

from streamdetect.analysis.replay import Replay, run_source
from streamdetect.config import parse_config
from streamdetect.daemon.build import build_detector
from streamdetect.model.manifest import ModelBundle
from streamdetect.sinks import SINKS
from streamdetect.sinks.base import SinkSet
from streamdetect.sinks.clips import CLIP_NAME, ClipsOptions, ClipsSink, safe_name, scan_clips
from streamdetect.sources.file import FileOptions, FileSource
from streamdetect.util.names import short_id

SR = 48_000
PCM_TOL = 1.0 / 32768 + 1e-7  # one PCM16 step: the clip is stored as 16-bit

LOCK = ".streamdetect-clips.lock"  # held by a running sink, so that a second daemon is refused


def end_record(label="bird", stream="garden", start_s=2.0, end_s=4.0, peak=0.5, peak_time_s=None, id_="a1b2c3d4e5"):
    return event_record("end", id=id_, label=label, start_s=start_s, end_s=end_s, peak_score=peak,
                        peak_time_s=peak_time_s, stream=stream, time="2026-11-25T06:40:12.000+00:00")


def feed(sink, audio, stream="garden", sr=8000, block=800, start=0):
    for i in range(0, audio.size, block):
        sink.audio(stream, start + i, audio[i : i + block], sr)


def noise(seconds, sr=8000, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).clip(-1, 1).astype(np.float32)


def emit_in_thread(sink, record):
    errors = []

    def run():
        try:
            sink.emit(record)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


# -- through the real detector ------------------------------------------------------------------------------


def tone_threshold(detector, wav):
    """Between two of the tiny model's window scores for this scene, so that some windows fire."""
    from streamdetect.pipeline.windows import Windower

    windower, windows = Windower(3.0, 1.0, SR), []
    for block in FileSource(FileOptions(path=str(wav)), SR).blocks(threading.Event()):
        windows += windower.push(block)
    windows += windower.finish()
    ordered = np.unique(detector.scores(windows).event[:, 0])
    return float((ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2)


def resampled(wav):
    """The audio exactly as the detector is fed it (at the model rate)."""
    return np.concatenate(list(FileSource(FileOptions(path=str(wav)), SR).blocks(threading.Event())))


def test_clips_from_the_real_detector_hold_the_source_audio(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=14.0, sample_rate=44_100, tone_at=(5.0, 9.0))
    events = [{"label": "tone", "prompts": ["smoke alarm beeping"], "threshold": 0.0, "hysteresis": 0.0,
               "cooldown_s": 0.0}]
    probe = build_detector(parse_config({"model": str(tiny_model), "events": events}), ModelBundle.load(tiny_model),
                     SinkSet([]))
    events[0]["threshold"] = tone_threshold(probe, wav)
    config = parse_config({"model": str(tiny_model), "events": events, "runtime": {"batch_size": 2}})
    clips = ClipsSink(ClipsOptions(dir=str(tmp_path / "clips"), pre_roll_s=2.0, post_roll_s=3.0))
    collect = collecting_sink()
    sinks = SinkSet([("clips", clips), ("collect", collect)], threaded=True, drain_timeout_s=60)
    detector = build_detector(config, ModelBundle.load(tiny_model), sinks)
    run_source(detector, FileSource(FileOptions(path=str(wav), block_s=0.37), SR), threading.Event())
    sinks.close()
    assert sinks.failures == {"clips": 0, "collect": 0}
    ends = [r for r in collect.records if r.phase == "end"]
    assert ends, "the threshold should make the scene fire"
    source = resampled(wav)
    written = {c.event_id8: c.path for c in scan_clips(tmp_path / "clips")}
    assert len(written) == len(ends)
    for record in ends:
        path = written[short_id(record.id)]
        assert path.parent == tmp_path / "clips" / "tone" and CLIP_NAME.match(path.name)
        assert path.name.endswith(f"_scene.wav_{record.peak_score:.4f}_{record.id[:8]}.flac")
        data, rate = sf.read(path, dtype="float32")
        a = max(0, round((record.start_s - 2.0) * SR))
        b = min(source.size, round((record.end_s + 3.0) * SR))  # the post-roll stops at the end of the file
        assert rate == SR and data.ndim == 1 and data.size == b - a
        np.testing.assert_allclose(data, source[a:b], atol=PCM_TOL, rtol=0)


def test_lost_audio_through_the_detector_is_silence_at_the_right_place(tiny_model, tmp_path):
    from streamdetect.sources.base import Gap

    config = parse_config({"model": str(tiny_model), "events": [
        {"label": "any", "prompts": ["wind noise"], "threshold": -1.0}]})  # every window fires: one event
    clips = ClipsSink(ClipsOptions(dir=str(tmp_path), pre_roll_s=0.0, post_roll_s=0.0))
    sinks = SinkSet([("clips", clips)], threaded=True)
    detector = build_detector(config, ModelBundle.load(tiny_model), sinks)
    replay = Replay(detector, detector.open_stream("live", live=False))
    audio = noise(9.0, sr=SR)
    replay.push(audio[: 4 * SR])
    replay.push(Gap(SR))  # 1 s lost: stream time moves on without audio
    replay.push(audio[5 * SR :])
    replay.finish()
    sinks.close()
    [path] = written_clips(clips)
    data, _ = sf.read(path, dtype="float32")
    expected = audio.copy()
    expected[4 * SR : 5 * SR] = 0.0
    assert sinks.failures == {"clips": 0} and data.size == 9 * SR
    np.testing.assert_allclose(data, expected, atol=PCM_TOL, rtol=0)


def test_cli_run_writes_a_clip(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=10.0)
    events = [{"label": "tone/alarm", "prompts": ["smoke alarm beeping"], "threshold": 0.0, "hysteresis": 0.0,
               "cooldown_s": 0.0}]
    probe = build_detector(parse_config({"model": str(tiny_model), "events": events}), ModelBundle.load(tiny_model),
                     SinkSet([]))
    events[0]["threshold"] = tone_threshold(probe, wav)
    out = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, events,
                       sinks=[{"type": "jsonl", "path": str(out)},
                              {"type": "clips", "dir": str(tmp_path / "clips"), "format": "wav",
                               "pre_roll_s": 1.0, "post_roll_s": 1.0, "max_total_mb": 50}])
    result = run_cli("run", "--config", str(cfg), "--input", str(wav))
    assert result.returncode == 0, result.stderr
    import json

    ends = [r for r in map(json.loads, out.read_text().splitlines()) if r["phase"] == "end"]
    files = sorted((tmp_path / "clips").rglob("*.wav"))
    assert ends and len(files) == len(ends)
    assert {f.parent.name for f in files} == {safe_name("tone/alarm")}  # the '/' did not make a sub-folder
    source = resampled(wav)
    by_id = {r["id"][:8]: r for r in ends}
    for f in files:
        record = by_id[CLIP_NAME.match(f.name)["id"]]
        data, rate = sf.read(f, dtype="float32")
        a, b = max(0, round((record["start_s"] - 1) * SR)), min(source.size, round((record["end_s"] + 1) * SR))
        assert rate == SR and data.size == b - a
        np.testing.assert_allclose(data, source[a:b], atol=PCM_TOL, rtol=0)


def test_clips_is_a_registered_sink_with_checked_options():
    assert SINKS.get("clips") is ClipsSink
    from streamdetect.config import ConfigError

    with pytest.raises(ConfigError, match="dir"):
        parse_config({"events": [{"label": "x", "prompts": ["y"], "threshold": 0.1}],
                      "sinks": [{"type": "clips", "format": "mp3"}]})


# -- the sink on its own ------------------------------------------------------------------------------------


def test_clip_waits_for_the_post_roll(tmp_path):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), pre_roll_s=1.0, post_roll_s=2.0, wait_timeout_s=600))
    audio = noise(10.0)
    feed(sink, audio[: 5 * 8000])  # the event ends at 4 s: its post-roll is not heard yet
    thread, errors = emit_in_thread(sink, end_record(start_s=2.0, end_s=4.0))
    time.sleep(0.2)  # give the worker the chance to write too early (a correct sink waits)
    assert len(written_clips(sink)) == 0
    feed(sink, audio[5 * 8000 :], start=5 * 8000)
    thread.join(30)
    assert not thread.is_alive() and not errors
    data, rate = sf.read(written_clips(sink)[0], dtype="float32")
    assert rate == 8000
    np.testing.assert_allclose(data, audio[1 * 8000 : 6 * 8000], atol=PCM_TOL, rtol=0)


def test_post_roll_at_the_end_of_a_file_does_not_hang(tmp_path):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), pre_roll_s=3.0, post_roll_s=3.0, wait_timeout_s=3600))
    audio = noise(5.0)
    feed(sink, audio)
    thread, errors = emit_in_thread(sink, end_record(start_s=1.0, end_s=5.0))
    sink.stream_ended("garden")  # no more audio will come: the clip must be written with what there is
    thread.join(30)
    assert not thread.is_alive() and not errors
    data, _ = sf.read(written_clips(sink)[0], dtype="float32")
    np.testing.assert_allclose(data, audio, atol=PCM_TOL, rtol=0)  # clipped to [0, 5 s] of the file


def test_long_event_keeps_the_stretch_around_its_peak_and_gaps_are_silence(tmp_path, caplog):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), format="wav", pre_roll_s=1.0, post_roll_s=1.0,
                                  max_clip_s=4.0, buffer_slack_s=30.0))
    audio = noise(40.0)
    feed(sink, audio[: 20 * 8000])
    feed(sink, audio[22 * 8000 :], start=22 * 8000)  # 2 s lost (a Gap): the sink sees the index jump
    sink.stream_ended("garden")
    caplog.set_level(logging.WARNING)
    sink.emit(end_record(start_s=2.0, end_s=38.0, peak_time_s=20.0))
    data, _ = sf.read(written_clips(sink)[0], dtype="float32")
    expected = audio[17 * 8000 : 23 * 8000].copy()  # peak +- 2 s, +- 1 s roll
    expected[3 * 8000 : 5 * 8000] = 0.0
    np.testing.assert_allclose(data, expected, atol=PCM_TOL, rtol=0)
    assert "2.00 s of lost audio, written as silence" in caplog.text


def test_audio_that_left_the_buffer_is_reported_not_invented(tmp_path, caplog):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), pre_roll_s=1.0, post_roll_s=1.0, max_clip_s=2.0,
                                  buffer_slack_s=0.0))  # holds 4 s
    audio = noise(12.0)
    feed(sink, audio)
    sink.stream_ended("garden")
    caplog.set_level(logging.WARNING)
    sink.emit(end_record(start_s=2.0, end_s=11.0, peak_time_s=4.0))  # wants [2, 6) s; [8, 12) s is held
    data, _ = sf.read(written_clips(sink)[0], dtype="float32")
    np.testing.assert_allclose(data, audio[8 * 8000 : 12 * 8000], atol=PCM_TOL, rtol=0)
    assert "misses 6.0 s that had left the buffer" in caplog.text
    sinks = SinkSet([("clips", sink)])
    sinks.emit(end_record(start_s=6.0, end_s=7.5))  # nothing of this event is held any more
    assert sinks.failures == {"clips": 1} and len(written_clips(sink)) == 1
    assert "has left the buffer" in caplog.text


def test_start_records_are_ignored_and_unknown_streams_fail_loudly(tmp_path):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path)))
    sink.emit(event_record("start", id="x", label="bird", peak_score=0.5, peak_time_s=1.5, time="t"))
    assert len(written_clips(sink)) == 0
    sinks = SinkSet([("clips", sink)])
    sinks.emit(end_record(stream="nobody"))
    assert sinks.failures == {"clips": 1}


def test_disk_errors_are_counted_and_leave_no_temp_file(tmp_path, monkeypatch):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path)))
    feed(sink, noise(5.0))
    sink.stream_ended("garden")

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("streamdetect.sinks.clips.os.replace", full)
    sinks = SinkSet([("clips", sink)])
    sinks.emit(end_record())
    assert sinks.failures == {"clips": 1}
    assert [p for p in tmp_path.rglob("*") if p.name != LOCK] == [tmp_path / "bird"]  # the temp file was removed


def test_hooks_do_not_wait_when_records_come_in_the_feeding_thread(tmp_path, caplog):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), wait_timeout_s=3600))
    feed(sink, noise(5.0))
    sink.emit(end_record(start_s=1.0, end_s=4.0))  # same thread as feed(): waiting would deadlock
    assert len(written_clips(sink)) == 1 and "cannot be awaited" in caplog.text


# -- names --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["../../etc", "a/b", "/abs", "..", ".", ".hidden", "x\\..\\y", "é\x00"])
def test_labels_and_streams_cannot_escape_the_folder(tmp_path, label):
    root = tmp_path / "clips"
    sink = ClipsSink(ClipsOptions(dir=str(root), pre_roll_s=0.0, post_roll_s=0.0))
    stream = "../" + label
    feed(sink, noise(3.0), stream=stream)
    sink.stream_ended(stream)
    sink.emit(end_record(label=label, stream=stream, id_="../../zz"))
    [path] = written_clips(sink)
    assert path.resolve().parent.parent == root.resolve() and path.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.name != LOCK] == [path]
    assert not path.parent.name.startswith(".") and CLIP_NAME.match(path.name)


def test_safe_names_are_kept_and_changed_names_do_not_collide():
    assert safe_name("dog_bark-1.2") == "dog_bark-1.2"
    assert safe_name("Bär") != safe_name("Bör")
    assert all(set(safe_name(n)) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
               for n in ("../x", "a b/c", "ä", "", "...."))
    m = CLIP_NAME.match("2026-11-25T06-40-12Z_cam_1_-0.0500_abcd1234.flac")  # '_' in a stream, negative score
    assert (m["stream"], m["score"], m["id"]) == ("cam_1", "-0.0500", "abcd1234")


# -- retention ----------------------------------------------------------------------------------------------

NOW = datetime.now(timezone.utc)  # start-up retention uses the real clock: ages are relative to it


def fabricate(root, label, age_days, score, kb, ident):
    when = (NOW - timedelta(days=age_days)).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = Path(root) / label / f"{when}_garden_{score:.4f}_{ident}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * kb * 1000)
    return path


def names(root):
    return sorted(p.name.split("_")[-1].split(".")[0] for p in Path(root).rglob("*.flac"))


def test_retention_by_age_keeps_the_best_clip_of_each_label(tmp_path):
    fabricate(tmp_path, "bird", 40, 0.9, 1, "b0ld")  # best bird, old
    fabricate(tmp_path, "bird", 35, 0.3, 1, "b1ld")
    fabricate(tmp_path, "bird", 1, 0.5, 1, "b2new")
    fabricate(tmp_path, "dog", 50, 0.2, 1, "d0ld")  # the only dog clip, old
    fabricate(tmp_path, "dog", 31, 0.1, 1, "d1ld")
    (tmp_path / "bird" / "notes.txt").write_text("not a clip")
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path)))  # no limits: nothing is deleted
    assert sink.apply_retention(NOW) == [] and len(names(tmp_path)) == 5
    sink.close()  # one sink per folder at a time (it is locked)
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), max_age_days=30))
    sink.apply_retention(NOW)
    assert names(tmp_path) == ["b0ld", "b2new", "d0ld"]
    assert (tmp_path / "bird" / "notes.txt").exists()  # retention only touches files it could have written
    sink.close()
    hard = ClipsSink(ClipsOptions(dir=str(tmp_path), max_age_days=30, keep_best=False))
    hard.apply_retention(NOW)
    assert names(tmp_path) == ["b2new"]
    hard.close()


def test_retention_by_size_deletes_lowest_scores_first_but_never_the_best_per_label(tmp_path, caplog):
    fabricate(tmp_path, "bird", 3, 0.9, 100, "bbest")
    fabricate(tmp_path, "bird", 2, 0.4, 100, "b04old")
    fabricate(tmp_path, "bird", 1, 0.4, 100, "b04new")  # same score, newer: deleted after b04old
    fabricate(tmp_path, "bird", 1, 0.7, 100, "b07")
    fabricate(tmp_path, "dog", 9, 0.05, 100, "dbest")  # lowest score overall, but the only dog clip
    fabricate(tmp_path, "cat", 1, 0.2, 100, "c02")
    fabricate(tmp_path, "cat", 1, 0.3, 100, "cbest")
    tmp = tmp_path / "cat" / ".2026-11-25T00-00-00Z_garden_0.1000_dead.flac.tmp"
    tmp.write_bytes(b"\0" * 1000)  # left by a crash during a write
    caplog.set_level(logging.INFO)
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), max_total_mb=0.45))  # start-up retention runs
    assert names(tmp_path) == ["b07", "bbest", "cbest", "dbest"]
    assert not tmp.exists()
    assert "c02" in caplog.text and "folder over 0.45 MB" in caplog.text
    fabricate(tmp_path, "bird", 0, 0.95, 100, "bnew")  # a new best bird: the lowest bird goes, not the old best
    sink.apply_retention(NOW)
    assert names(tmp_path) == ["bbest", "bnew", "cbest", "dbest"]
    sink.close()  # one sink per folder at a time (it is locked)
    tight = ClipsSink(ClipsOptions(dir=str(tmp_path), max_total_mb=0.1))  # below the best clips alone
    assert names(tmp_path) == ["bnew", "cbest", "dbest"]
    assert "only the best clip of each label is left" in caplog.text
    tight.close()


def test_retention_runs_after_each_clip(tmp_path):
    sink = ClipsSink(ClipsOptions(dir=str(tmp_path), format="wav", pre_roll_s=0.0, post_roll_s=0.0,
                                  max_total_mb=0.1))  # 100 kB: one 3 s clip at 8 kHz PCM16 is 48 kB
    feed(sink, noise(20.0))
    sink.stream_ended("garden")
    for i, score in enumerate([0.5, 0.2, 0.9, 0.1, 0.3]):
        sink.emit(end_record(start_s=3.0 * i, end_s=3.0 * i + 3.0, peak=score, id_=f"{i:08d}"))
    left = sorted(float(CLIP_NAME.match(p.name)["score"]) for p in tmp_path.rglob("*.wav"))
    assert left == [0.5, 0.9]
    assert sum(os.path.getsize(p) for p in tmp_path.rglob("*.wav")) <= 100_000
    sink.close()


def test_a_full_disk_is_one_line_with_its_reason_and_no_cffi_traceback(tmp_path, small_fs, monkeypatch, capfd,
                                                                        caplog):
    """libsndfile wrote the clip through cffi callbacks: an ENOSPC inside one printed a cffi traceback and came back
    as an error with an empty reason. On the test's full tmpfs; where it cannot be mounted, the file handle
    ``atomic_write`` gives the encoder refuses every write with ENOSPC, as a full disk does."""
    folder, mounted = small_fs
    sink = ClipsSink(ClipsOptions(dir=str(folder / "clips")))
    feed(sink, noise(5.0))
    sink.stream_ended("garden")
    if mounted:
        fill(folder)
    else:
        import streamdetect.sinks.clips as clips

        class Full:
            def write(self, _data):
                raise OSError(28, "No space left on device")

            def __getattr__(self, _name):
                return lambda *a, **k: 0

        monkeypatch.setattr(clips, "atomic_write", lambda _path, data: data(Full()) if callable(data) else
                            Full().write(data))
    unraisable = []  # where Python sends an exception raised inside a cffi callback (then printed to stderr)
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    sinks = SinkSet([("clips", sink)])
    with caplog.at_level(logging.ERROR):
        sinks.emit(end_record())
    sink.close()
    assert sinks.failures == {"clips": 1}
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.rstrip().endswith("check the permissions of " + str(folder / "clips") + ")")
    assert "cannot write" in line and "No space left on device" in line
    err = capfd.readouterr().err
    assert unraisable == [] and "cffi" not in err and "Traceback" not in err
