import csv
import io
import json
import sys
from datetime import datetime, timezone

import pytest
from helpers import event_record, run_cli, write_config, write_tone_scene

from streamdetect.pipeline.events import LabelScore
from streamdetect.sinks.base import SinkError
from streamdetect.sinks.command import CommandOptions, CommandSink
from streamdetect.sinks.sqlite import SqliteOptions, SqliteSink
from streamdetect.store import parse_when, query_events


def rec(i, label="dog", phase="end", time="2026-11-24T06:00:00.000+00:00"):
    return event_record(phase, id=f"e{i}", label=label, start_s=1.0, end_s=4.0 if phase == "end" else None,
                        peak_score=0.4, peak_time_s=2.5, stream="garden", time=time, top=(LabelScore(label, 0.4),))


def test_sqlite_store_survives_reopening_and_filters(tmp_path):
    db = tmp_path / "store" / "events.db"
    sink = SqliteSink(SqliteOptions(path=str(db)))
    sink.emit(rec(1, time="2026-11-20T10:00:00.000+00:00"))
    sink.emit(rec(2, label="bird", time="2026-11-23T10:00:00.000+00:00"))
    sink.emit(rec(2, label="bird", time="2026-11-23T10:00:00.000+00:00"))  # a repeat is stored once
    sink.close()
    sink = SqliteSink(SqliteOptions(path=str(db)))  # "restart"
    sink.emit(rec(3, time="2026-11-24T10:00:00.000+00:00"))
    sink.close()
    assert [r["id"] for r in query_events(db)] == ["e1", "e2", "e3"]
    assert [r["id"] for r in query_events(db, label="dog")] == ["e1", "e3"]
    assert [r["id"] for r in query_events(db, since="2026-11-22T00:00:00.000+00:00")] == ["e2", "e3"]
    row = query_events(db, label="bird")[0]
    assert json.loads(row["top"]) == [{"label": "bird", "score": 0.4}] and row["end_s"] == 4.0
    import sqlite3

    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_parse_when():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert parse_when("2h", now) == "2026-11-24T10:00:00.000+00:00"
    assert parse_when("7d", now) == "2026-11-17T12:00:00.000+00:00"
    assert parse_when("2026-11-24T08:00:00", now) == "2026-11-24T08:00:00.000+00:00"
    with pytest.raises(ValueError, match="neither an ISO-8601 time nor an age"):
        parse_when("yesterday", now)


def test_cli_run_into_sqlite_then_events_command(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "a.wav", seconds=4.0)
    db = tmp_path / "events.db"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [
        {"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0},
        {"label": "rain", "prompts": ["rain"], "threshold": -1.0}], sinks=[{"type": "sqlite", "path": str(db)}])
    assert run_cli("run", "--config", str(cfg), "--input", str(wav)).returncode == 0
    table = run_cli("events", "--db", str(db), "--label", "dog", "--since", "1h")
    assert table.returncode == 0 and table.stdout.count("dog") == 2 and "rain" not in table.stdout
    assert "a.wav" in table.stdout and "0.0-4.0 s" in table.stdout
    rows = list(csv.DictReader(io.StringIO(run_cli("events", "--db", str(db), "--csv").stdout)))
    assert sorted((r["label"], r["phase"]) for r in rows) == [("dog", "end"), ("dog", "start"), ("rain", "end"),
                                                              ("rain", "start")]
    missing = run_cli("events", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no event database" in missing.stderr


def test_command_sink_gets_the_record_on_stdin_without_a_shell(tmp_path):
    out = tmp_path / "got.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(sys.stdin.read())"
    CommandSink(CommandOptions(argv=[sys.executable, "-c", script])).emit(rec(1, label="dog; rm -rf /"))
    assert json.loads(out.read_text())["label"] == "dog; rm -rf /"
    with pytest.raises(SinkError, match="exited 3: boom"):
        CommandSink(CommandOptions(argv=[sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
                                   )).emit(rec(1))
    with pytest.raises(SinkError, match="not found"):
        CommandSink(CommandOptions(argv=["/no/such/program"])).emit(rec(1))
    with pytest.raises(SinkError, match="ran over"):
        CommandSink(CommandOptions(argv=[sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2)
                    ).emit(rec(1))
