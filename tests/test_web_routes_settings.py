"""The settings, activity and playground routes in-process (``tests/web_site.py``): a save is validated, applied
and written into the YAML with its comments kept; example uploads and "use as example"; the activity heatmap;
the playground's curve and search; "add as event". Every answer has exactly its model's fields, a bad query
answers 400 naming its key, and only an admin changes anything."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import yaml
from web_site import ADMIN, CLIPPED, COMMENT, VIEWER, build_site

from streamdetect.config import load_config
from streamdetect.web.defs import response

OCTETS = "application/octet-stream"


@pytest.fixture
def site(tmp_path):
    return build_site(tmp_path)


def fields(model: type) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def sound(seconds: float = 1.0) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    out = io.BytesIO()
    sf.write(out, (0.4 * np.sin(2 * np.pi * 700 * t)).astype(np.float32), 16000, format="FLAC")
    return out.getvalue()


def test_settings_show_the_form_and_a_save_is_applied_and_written_with_the_comments(site):
    admin = site.client(ADMIN)
    form = admin.get("/api/settings").json()
    assert set(form) == fields(response.SettingsPage)
    assert form["file"] == str(site.config_path) and form["max_upload_kb"] == 64
    assert [e["label"] for e in form["events"]] == ["tone", "dog"]
    assert {f["key"] for f in form["schema"]["sections"]["scoring"]} == {"mode", "background"}
    bad = admin.post("/api/settings", json={"events": [dict(form["events"][0], threshold=7)]})
    assert bad.status_code == 400
    assert bad.json()["problems"] == [{"key": "events[0].threshold",
                                       "message": "expected less than or equal to 1 (found 7)"}]
    assert site.reloads.applied == []
    events = [dict(form["events"][0], threshold=0.35, negatives=["a kettle whistling"]), form["events"][1]]
    saved = admin.post("/api/settings", json={"events": events, "gate": {"min_dbfs": -70}})
    assert saved.status_code == 200, saved.text
    assert set(saved.json()) == fields(response.SettingsSaved)
    assert saved.json()["status"] == "applied" and saved.json()["saved_to"] == str(site.config_path)
    assert saved.json()["events"][0]["threshold"] == 0.35
    assert site.reloads.config.events[0].threshold == 0.35 and site.reloads.config.gate.min_dbfs == -70
    text = site.config_path.read_text()
    assert text.startswith(COMMENT) and "# what to listen for" in text
    reread = load_config(site.config_path)
    assert reread.events[0].negatives == ["a kettle whistling"] and reread.gate.min_dbfs == -70


def test_a_save_still_pending_after_the_gates_wait_is_written_to_the_yaml(site):
    """An apply the inference thread has not reached within the wait answers 202; it is applied later, so the
    file must say so too (it was never written, and a restart undid the change)."""
    site.reloads.held = True
    site.ctx.gate.apply_timeout_s = 0.2
    events = site.client(ADMIN).get("/api/settings").json()["events"]
    saved = site.client(ADMIN).post("/api/settings", json={"events": [dict(events[0], threshold=0.45), events[1]]})
    site.reloads.tickets[-1].done.set()
    assert saved.status_code == 202 and saved.json()["status"].startswith("pending")
    assert saved.json()["saved_to"] == str(site.config_path)
    assert load_config(site.config_path).events[0].threshold == 0.45


def test_an_uploaded_example_is_described_served_and_bounded(site):
    admin = site.client(ADMIN)
    uploaded = admin.post("/api/settings/examples", params={"label": "tone", "name": "../bark.flac"},
                          content=sound(), headers={"Content-Type": OCTETS})
    assert uploaded.status_code == 201, uploaded.text
    example = uploaded.json()
    assert set(example) == fields(response.Example)
    assert example["playable"] and example["duration_s"] == 1.0 and example["name"].endswith(".flac")
    played = site.client(VIEWER).get(f"/api/settings/examples/{example['id']}/audio")
    assert played.status_code == 200 and played.headers["content-type"] == "audio/flac"
    assert played.content == sound()
    too_long = admin.post("/api/settings/examples", params={"label": "x" * 201}, content=sound(),
                          headers={"Content-Type": OCTETS})
    assert too_long.status_code == 400 and too_long.json()["error"] == "label or name too long"
    not_audio = admin.post("/api/settings/examples", params={"label": "tone"}, content=b"not audio",
                           headers={"Content-Type": OCTETS})
    assert not_audio.status_code == 400 and not_audio.json()["problems"][0]["key"] == "examples"
    hours = io.BytesIO()  # 301 s of silence in a few kB: refused by what it decodes to, with the limit named
    sf.write(hours, np.zeros(301 * 8000, np.int16), 8000, format="FLAC")
    too_long = admin.post("/api/settings/examples", params={"label": "tone"}, content=hours.getvalue(),
                          headers={"Content-Type": OCTETS})
    assert too_long.status_code == 400 and len(hours.getvalue()) < 64 * 1024
    assert "an audio example may last at most 300 s" in too_long.json()["problems"][0]["message"]
    big = admin.post("/api/settings/examples", params={"label": "tone"}, content=b"\0" * (65 * 1024),
                     headers={"Content-Type": OCTETS})
    assert big.status_code == 413
    assert site.client(VIEWER).post("/api/settings/examples", params={"label": "tone"}, content=sound(),
                                    headers={"Content-Type": OCTETS}).status_code == 403
    for bad_id in ("0123456789abcdef", "nothex"):
        assert admin.get(f"/api/settings/examples/{bad_id}/audio").status_code == 404


def test_use_as_example_stores_the_events_part_of_its_clip_and_saves_it(site):
    answer = site.client(ADMIN).post(f"/api/events/{CLIPPED}/as-example", json={})
    assert answer.status_code == 200, answer.text
    tone = answer.json()["events"][0]
    [example] = tone["examples"]
    assert example["name"].endswith(f"_event-{CLIPPED[:8]}.flac") and example["playable"]
    assert example["duration_s"] == 2.0  # the event's extent inside its clip, not the whole clip
    listed = yaml.safe_load(site.config_path.read_text())["events"][0]["examples"]
    assert listed == [f"examples/tone/{example['name']}"]
    assert site.reloads.config.events[0].examples


@pytest.mark.parametrize("days", [7, 30])
def test_the_activity_heatmap_counts_each_label_per_local_day(site, days):
    answer = site.client(VIEWER).get("/api/activity", params={"days": days, "tz_offset_min": 60})
    assert answer.status_code == 200 and set(answer.json()) == fields(response.ActivityAnswer)
    data = answer.json()
    assert len(data["days"]) == days and data["days"] == sorted(data["days"])
    assert {label: entry["total"] for label, entry in data["labels"].items()} == {"tone": 2, "dog": 1}
    tone = data["labels"]["tone"]
    assert set(tone) == fields(response.LabelActivity)
    assert sum(tone["per_day"].values()) == 2 and sum(cell[2] for cell in tone["cells"]) == 2


@pytest.mark.parametrize(("path", "params", "named"), [
    ("/api/activity", {"days": 8}, "days must be 7 or 30"), ("/api/activity", {"days": "week"}, "days must be a number"),
    ("/api/activity", {"tz_offset_min": 5000}, "tz_offset_min must lie within"),
    ("/api/activity", {"days": "1e400"}, "days must be a finite number, found '1e400'"),
    ("/api/activity", {"tz_offset_min": "nan"}, "tz_offset_min must be a finite number"),
    ("/api/events", {"min_score": "-inf"}, "min_score must be a finite number"),
    ("/api/events", {"limit": "1e400"}, "limit must be a finite number"),
    ("/api/playground", {}, "type a prompt of 1 to 500 characters"),
    ("/api/playground", {"q": "x" * 501}, "type a prompt"), ("/api/search", {"q": "  "}, "type a prompt"),
    ("/api/search", {"q": "a dog", "since": "last week"}, "since: 'last week' is neither")])
def test_a_bad_query_answers_400_naming_its_key(site, path, params, named):
    answer = site.client(VIEWER).get(path, params=params)
    assert answer.status_code == 400 and named in answer.json()["error"]


def test_the_playground_scores_a_prompt_over_the_windows_in_memory(site):
    viewer = site.client(VIEWER)
    played = viewer.get("/api/playground", params={"q": "  a dog barking "})
    assert played.status_code == 200 and set(played.json()) == fields(response.PlaygroundAnswer)
    assert played.json() == {"query": "a dog barking", "curves": {}, "windows": 0, "best": []}
    found = viewer.get("/api/search", params={"q": "a dog barking", "since": "1d"})
    assert found.status_code == 200 and found.json() == {"query": "a dog barking", "windows": 0, "best": []}


def test_add_as_event_applies_the_new_event_and_refuses_a_bad_one(site):
    admin = site.client(ADMIN)
    added = admin.post("/api/playground/add", json={"label": "kettle", "prompt": "a kettle", "threshold": 0.2})
    assert added.status_code == 200 and set(added.json()) == fields(response.EventsApplied)
    assert added.json() == {"status": "applied", "events": ["tone", "dog", "kettle"]}
    bad = admin.post("/api/playground/add", json={"label": "tone", "prompt": "again", "threshold": 0.2})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid config"
    assert admin.post("/api/playground/add", json=["kettle"]).status_code == 400
    assert [c.events[-1].label for c in site.reloads.applied] == ["kettle"]


def test_request_bodies_are_bounded(site):
    admin = site.client(ADMIN)
    big = b'{"events": ["' + b"x" * (16 * 1024) + b'"]}'
    assert admin.post("/api/settings", content=big, headers={"Content-Type": "application/json"}).status_code == 413

    def chunks():  # no Content-Length: the route counts what arrives
        for _ in range(5):
            yield b" " * 4096

    answer = admin.post("/api/settings", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"] == "request body over 16384 bytes"
