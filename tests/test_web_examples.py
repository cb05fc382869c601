"""Audio examples on the settings page, against a real daemon: an upload lands in the managed folder next to the
config, a save lists it in the YAML and changes the event's vector live, a removal takes both back; "use as
example" turns an event's clip into one. Only admins with the CSRF token may change them, uploads are bounded
and must decode as audio, and no request reads or writes outside the examples folder."""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml
from web_station import ADMIN, CONFIG_COMMENT, VIEWER, running_station

from streamdetect.model.manifest import ModelBundle
from streamdetect.prompts.examples import example_embedder_for
from streamdetect.web.examples import example_id

MAX_UPLOAD_KB = 256
OCTETS = "application/octet-stream"


@pytest.fixture(scope="module")
def station(tmp_path_factory, tiny_model):
    with running_station(tmp_path_factory.mktemp("examples-station"), tiny_model, max_upload_kb=MAX_UPLOAD_KB) as st:
        yield st


def sound(seconds: float = 2.0, hz: float = 700.0, fmt: str = "FLAC") -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    out = io.BytesIO()
    sf.write(out, (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000, format=fmt)
    return out.getvalue()


def browser(station) -> tuple[httpx.Client, str]:
    """A cookie session, as the dashboard's own pages use it, and its CSRF token."""
    client = httpx.Client(base_url=station.url, timeout=60)
    login = client.post("/api/login", json={"token": ADMIN})
    assert login.status_code == 200
    return client, login.json()["csrf"]


def upload(client: httpx.Client, csrf: str, data: bytes, label: str = "tone", name: str = "bark.flac"):
    return client.post("/api/settings/examples", params={"label": label, "name": name}, content=data,
                       headers={"Content-Type": OCTETS, "X-CSRF-Token": csrf})


def save_examples(client: httpx.Client, csrf: str, ids: list) -> httpx.Response:
    events = client.get("/api/settings").json()["events"]
    events[0]["examples"] = ids
    return client.post("/api/settings", json={"events": events}, headers={"X-CSRF-Token": csrf})


def stored(station) -> set[str]:
    root = station.folder / "examples"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def listed_in_yaml(station) -> dict:
    return yaml.safe_load(station.config_path.read_text())["events"][0]


def tone_vector(station) -> np.ndarray:
    bank = station.service.detector.bank
    return bank.events[bank.labels.index("tone")].copy()


def test_an_uploaded_example_is_applied_live_written_to_the_yaml_and_removed_again(station, tmp_path):
    client, csrf = browser(station)
    before = tone_vector(station)
    data = sound()
    response = upload(client, csrf, data, name="../My bark!.flac")
    assert response.status_code == 201, response.text
    shown = response.json()
    assert shown["duration_s"] == pytest.approx(2.0) and shown["playable"] and shown["name"].endswith(".flac")
    path = station.folder / "examples" / "tone" / shown["name"]
    assert path.read_bytes() == data and stored(station) == {f"tone/{shown['name']}"}
    assert "examples" not in listed_in_yaml(station)  # stored, but listed only once a save names it
    assert upload(client, csrf, data).json()["id"] == shown["id"]  # the same sound again is the same file
    assert stored(station) == {f"tone/{shown['name']}"}

    response = save_examples(client, csrf, [shown["id"]])
    assert response.status_code == 200, response.text
    assert response.json()["events"][0]["examples"] == [shown]
    assert station.service.detector.config.events[0].examples == [str(path)]
    text = station.config_path.read_text()
    assert text.startswith(CONFIG_COMMENT) and "# what to listen for" in text
    assert yaml.safe_load(text)["events"][0]["examples"] == [f"examples/tone/{shown['name']}"]  # relative
    # live: the event's vector moved toward the example's embedding (what a window of that sound scores)
    embedding = example_embedder_for(ModelBundle.load(station.folder / "model"), tmp_path)([path])[0]
    after = tone_vector(station)
    assert not np.allclose(after, before)
    assert float(after @ embedding) > float(before @ embedding) + 1e-3
    played = client.get(f"/api/settings/examples/{shown['id']}/audio")
    assert played.status_code == 200 and played.content == data and played.headers["content-type"] == "audio/flac"
    assert station.client(VIEWER).get(f"/api/settings/examples/{shown['id']}/audio").content == data

    response = save_examples(client, csrf, [])
    assert response.status_code == 200, response.text
    assert station.service.detector.config.events[0].examples == []
    assert "examples" not in yaml.safe_load(station.config_path.read_text())["events"][0]
    assert not path.exists() and stored(station) == set()  # ours, and no event lists it any more
    assert np.allclose(tone_vector(station), before, atol=1e-5)
    assert client.get(f"/api/settings/examples/{shown['id']}/audio").status_code == 404


def test_examples_need_an_admin_and_the_csrf_token_and_a_bounded_audio_body(station):
    client, csrf = browser(station)
    data = sound(1.0)
    viewer = station.client(VIEWER).post("/api/settings/examples", params={"label": "tone"}, content=data,
                                         headers={"Content-Type": OCTETS})
    assert viewer.status_code == 403
    assert client.post("/api/settings/examples", params={"label": "tone"}, content=data,
                       headers={"Content-Type": OCTETS}).status_code == 403  # no CSRF token
    assert client.post("/api/settings/examples", params={"label": "tone"}, content=data, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf}).status_code == 415
    assert client.post("/api/settings/examples", params={"label": "tone"}, content=data, headers={
        "Content-Type": OCTETS, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}).status_code == 403
    big = sound(MAX_UPLOAD_KB * 1024 / 32000 + 1, fmt="WAV")  # a valid file, over the bound
    assert len(big) > MAX_UPLOAD_KB * 1024
    assert upload(client, csrf, big).status_code == 413

    def chunks():  # no Content-Length: the server counts what arrives
        for start in range(0, len(big), 16384):
            yield big[start:start + 16384]

    assert client.post("/api/settings/examples", params={"label": "tone"}, content=chunks(),
                       headers={"Content-Type": OCTETS, "X-CSRF-Token": csrf}).status_code == 413
    for junk in (b"this is not audio\n" * 50, b"", b"RIFF\x00\x00\x00\x00WAVEfmt "):
        response = upload(client, csrf, junk, name="fake.wav")
        assert response.status_code == 400
        [problem] = response.json()["problems"]
        assert problem["key"] == "examples" and "send WAV, FLAC, OGG or MP3" in problem["message"]
    assert stored(station) == set()  # nothing refused was written
    assert "examples" not in listed_in_yaml(station)


def test_no_example_request_reaches_outside_the_examples_folder(station, tmp_path):
    client, csrf = browser(station)
    root = station.folder / "examples"
    secret = tmp_path / "secret.wav"
    sf.write(secret, np.zeros(1600, np.float32), 16000)
    outside = {p.name for p in tmp_path.iterdir()}
    response = upload(client, csrf, sound(1.0), label="../../../tmp/x", name="../../../etc/passwd.flac")
    assert response.status_code == 201
    [name] = stored(station)
    assert (root / name).resolve().is_relative_to(root.resolve()) and ".." not in name.split("/")
    assert name.split("/")[0].startswith("_") and name.split("/")[1].endswith("passwd.flac")
    # a save may name only the examples the daemon lists itself: no path, no id of a file outside
    for given in (["/etc/passwd"], [str(secret)], ["../station.yaml"], [example_id(secret)],
                  [example_id(station.config_path)], [{"id": "%2e%2e%2fsecret"}], "examples/"):
        response = save_examples(client, csrf, given)
        assert response.status_code == 400, given
        assert response.json()["problems"][0]["key"].startswith("events[0].examples"), given
    assert station.service.detector.config.events[0].examples == []
    for path in ("/api/settings/examples/..%2F..%2Fstation.yaml/audio", "/api/settings/examples/%2e%2e/audio",
                 f"/api/settings/examples/{example_id(secret)}/audio",
                 f"/api/settings/examples/{example_id(station.config_path)}/audio",
                 "/api/settings/examples/" + "0" * 17 + "/audio"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"RIFF" not in response.content and b"events" not in response.content
    # a listed file replaced by a symlink to a file outside is neither served nor followed when removed
    stored_path = root / name
    listed = example_id(stored_path)
    assert save_examples(client, csrf, [listed]).status_code == 200
    stored_path.unlink()
    stored_path.symlink_to(secret)
    assert client.get(f"/api/settings/examples/{listed}/audio").status_code == 404
    shown = client.get("/api/settings").json()["events"][0]["examples"]
    assert shown == [{"id": listed, "name": stored_path.name, "duration_s": None, "playable": False}]
    assert save_examples(client, csrf, []).status_code == 200
    assert secret.exists() and stored_path.is_symlink()
    stored_path.unlink()
    # a label folder that is a link to somewhere else is refused, and nothing is written there
    (root / "evil").symlink_to(tmp_path, target_is_directory=True)
    response = upload(client, csrf, sound(1.0, hz=900.0), label="evil")
    assert response.status_code == 400 and "link" in response.json()["problems"][0]["message"]
    assert {p.name for p in tmp_path.iterdir()} == outside
    (root / "evil").unlink()
    for folder in [p for p in root.iterdir() if p.is_dir()]:
        os.rmdir(folder)


def test_use_as_example_turns_an_events_clip_into_an_example_of_its_label(station):
    event = next(e for e in station.events() if e["end_s"] is not None)
    assert station.client(VIEWER).post(f"/api/events/{event['id']}/as-example", json={}).status_code == 403
    client, csrf = browser(station)
    assert client.post(f"/api/events/{event['id']}/as-example", json={}).status_code == 403  # no CSRF token
    assert client.post("/api/events/..%2F..%2Fetc/as-example", json={},
                       headers={"X-CSRF-Token": csrf}).status_code == 404
    before = tone_vector(station)
    response = client.post(f"/api/events/{event['id']}/as-example", json={}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    [shown] = response.json()["events"][0]["examples"]
    assert shown["name"].endswith(f"_event-{event['id'][:8]}.flac") and shown["playable"]
    detail = client.get(f"/api/events/{event['id']}").json()
    lo, hi = detail["clip"]["extent_s"]
    assert shown["duration_s"] == pytest.approx(hi - lo, abs=0.05)  # the event's part of the clip
    assert yaml.safe_load(station.config_path.read_text())["events"][0]["examples"] == [f"examples/tone/{shown['name']}"]
    assert not np.allclose(tone_vector(station), before)
    assert save_examples(client, csrf, []).status_code == 200
    assert stored(station) == set()
