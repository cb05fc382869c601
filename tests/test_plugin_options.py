"""Plugin options are typed end to end: the ``Options`` object the config validated is what the sinks, the
dashboard, the summary and the command line read, with the defaults of that one model."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import event_record

from streamdetect.config import ConfigError, parse_config
from streamdetect.sinks.base import build_sinks
from streamdetect.sinks.clips import ClipsOptions
from streamdetect.sinks.sqlite import SqliteOptions

EVENTS = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 0.3}]


def test_the_dashboard_shows_what_a_sqlite_sink_without_a_path_wrote(tmp_path, monkeypatch):
    """The sink wrote events/events.db (its default) while the dashboard read events.db: an empty Events page."""
    from starlette.testclient import TestClient

    from streamdetect.web.app import build_app
    from streamdetect.web.auth import Auth
    from streamdetect.web.context import WebContext, store_places

    monkeypatch.chdir(tmp_path)
    config = parse_config({"events": EVENTS, "sinks": [{"type": "sqlite"}]})
    sinks = build_sinks(config.sinks)
    sinks.emit(event_record("start", id="a" * 32))
    sinks.close()

    db, clips = store_places(config)
    ctx = WebContext(config.web, lambda: config, None, None, None, None, None, db, clips)  # type: ignore[arg-type]
    with TestClient(build_app(ctx, Auth(config.web, {})), base_url="http://127.0.0.1") as client:
        answer = client.get("/api/events")
    ctx.close()
    assert answer.status_code == 200, answer.text
    assert [(e["id"], e["label"]) for e in answer.json()["events"]] == [("a" * 32, "dog")]


def test_the_summary_and_the_cli_read_the_store_where_the_sink_writes(tmp_path):
    from streamdetect.cli.parser import DEFAULT_DB
    from streamdetect.daemon.summary import store_and_clips

    plain = parse_config({"events": EVENTS, "sinks": [{"type": "sqlite"}, {"type": "clips", "dir": "c"}]})
    assert store_and_clips(plain) == (Path(SqliteOptions().path), Path("c")) == (DEFAULT_DB, Path("c"))
    placed = parse_config({"events": EVENTS, "sinks": [{"type": "jsonl", "path": "-"},
                                                       {"type": "sqlite", "path": str(tmp_path / "x.db")}]})
    assert store_and_clips(placed) == (tmp_path / "x.db", None)
    assert placed.sink_options(SqliteOptions) == [SqliteOptions(path=str(tmp_path / "x.db"))]
    assert placed.sink_options(ClipsOptions) == []


def test_entries_hold_the_plugins_own_options_and_dump_back_to_the_files_shape():
    config = parse_config({"events": EVENTS, "sinks": [{"type": "clips", "dir": "c", "pre_roll_s": 1.5,
                                                        "name": "keep"}],
                           "source": {"type": "file", "path": "a.wav", "events": ["dog"]}})
    sink, source = config.sinks[0], config.all_sources[0]
    assert isinstance(sink.options, ClipsOptions) and sink.options.pre_roll_s == 1.5 and sink.name == "keep"
    assert sink.options.post_roll_s == ClipsOptions.model_fields["post_roll_s"].default
    assert type(source.options).__name__ == "FileOptions" and source.events == ["dog"]
    dumped = config.model_dump()
    assert dumped["sinks"] == [{"type": "clips", "name": "keep", "dir": "c", "pre_roll_s": 1.5}]
    assert dumped["source"]["path"] == "a.wav" and "options" not in dumped["source"]
    assert parse_config(dumped) == config


def test_a_wrong_entry_reports_its_own_keys_and_its_options_together():
    with pytest.raises(ConfigError) as info:
        parse_config({"events": EVENTS, "sinks": [{"type": "sqlite", "name": "", "path": 3, "colour": "red"},
                                                  {"type": "pigeon-post"}]})
    problems = dict(info.value.problems)
    assert set(problems) == {"sinks[0].name", "sinks[0].path", "sinks[0].colour", "sinks[1].type"}, problems
    assert problems["sinks[0].colour"] == "unknown key (found 'red')"
    assert problems["sinks[1].type"].startswith("unknown sink type 'pigeon-post'; known types: apprise, clips")


def test_a_plugin_whose_options_are_not_sink_options_is_named_at_its_type(monkeypatch):
    from pydantic import BaseModel

    from streamdetect.plugins import SINKS

    class Odd:
        class Options(BaseModel):
            loft: str = "roof"

    monkeypatch.setitem(SINKS._loaded, "odd", Odd)
    with pytest.raises(ConfigError) as info:
        parse_config({"events": EVENTS, "sinks": [{"type": "odd"}]})
    assert info.value.problems == [("sinks[0].type", "the odd plugin's Options must derive from SinkOptions "
                                                     "(found 'odd')")]
