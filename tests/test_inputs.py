"""Inputs that used to be taken at their word: a truncated WAV, two sources of one name, a database folder
removed while the daemon writes to it."""

from __future__ import annotations

import logging
import shutil
import sqlite3

import numpy as np
import soundfile as sf
import yaml
from helpers import SAMPLE_RATE, event_record, run_cli, write_config, write_tone_scene

from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink
from streamdetect.sources.file import FileOptions, FileSource, wav_header_frames


def truncated_wav(path, seconds: float, keep_s: float):
    sf.write(path, np.zeros(int(seconds * SAMPLE_RATE), np.float32), SAMPLE_RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:44 + int(keep_s * SAMPLE_RATE) * 2])
    return path


def test_truncated_wav_is_analysed_with_a_warning_giving_both_lengths(tiny_model, tmp_path):
    wav = truncated_wav(tmp_path / "cut.wav", 12.0, 4.0)
    config = write_config(tmp_path / "c.yaml", tiny_model, [{"label": "x", "prompts": ["a"], "threshold": 0.5}],
                          sinks=[{"type": "stdout"}], runtime={"device": "cpu"})
    result = run_cli("run", "--config", str(config), "--input", str(wav))
    assert result.returncode == 0, result.stderr
    assert "cut.wav is truncated: its header says 12.0 s of audio, the file holds 4.0 s" in result.stderr, \
        result.stderr
    assert "4.0 s of audio" in result.stderr  # and it was analysed


def test_header_only_wav_warns_too_and_whole_files_do_not(tmp_path, caplog):
    empty = truncated_wav(tmp_path / "empty.wav", 12.0, 0.0)
    whole = write_tone_scene(tmp_path / "whole.wav", 2.0)
    assert wav_header_frames(empty) == 12 * SAMPLE_RATE and wav_header_frames(whole) == 2 * SAMPLE_RATE
    with caplog.at_level(logging.WARNING, "streamdetect.sources.file"):
        FileSource(FileOptions(path=str(whole)), SAMPLE_RATE)
        assert not caplog.records
        FileSource(FileOptions(path=str(empty)), SAMPLE_RATE)
    assert "header says 12.0 s of audio, the file holds 0.0 s" in caplog.text


def test_two_file_sources_with_the_same_basename_are_refused(tiny_model, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_tone_scene(tmp_path / "a" / "x.wav", 2.0), write_tone_scene(tmp_path / "b" / "x.wav", 2.0)
    data = {"model": str(tiny_model), "runtime": {"device": "cpu"},
            "events": [{"label": "x", "prompts": ["a"], "threshold": 0.5}],
            "sources": [{"type": "file", "path": str(one)}, {"type": "file", "path": str(two)}]}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data))
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "sources[0] and sources[1] are both named 'x.wav'; give each its own `name:`" in result.stderr
    data["sources"][1]["name"] = "second"
    config.write_text(yaml.safe_dump(data))
    assert run_cli("run", "--config", str(config)).returncode == 0


def test_removing_the_database_folder_mid_run_loses_no_record(tmp_path, caplog):
    folder = tmp_path / "events"
    sink = SqliteSink(SqliteOptions(path=str(folder / "events.db")))
    try:
        for i in range(3):
            sink.emit(event_record("start", id=f"e{i}"))
        shutil.rmtree(folder)
        with caplog.at_level(logging.ERROR, "streamdetect.sinks.sqlite"):
            for i in range(3, 10):
                sink.emit(event_record("start", id=f"e{i}"))
    finally:
        sink.close()
    db = sqlite3.connect(folder / "events.db")
    ids = sorted(row[0] for row in db.execute("SELECT id FROM records"))
    db.close()
    assert ids == [f"e{i}" for i in range(10)]
    assert sink.reopened == 1
    assert "was deleted while running (1 time(s) so far)" in caplog.text
    assert "copied the 3 record(s) of the removed file" in caplog.text
