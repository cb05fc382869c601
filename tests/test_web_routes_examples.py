"""Audio example uploads in-process (``tests/web_site.py``): only an admin with the CSRF token may upload, the
body is bounded and must decode as audio, and no request reads or writes outside the examples folder."""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import pytest
import soundfile as sf
from web_site import ADMIN, VIEWER, Site, build_site

from streamdetect.web.examples import example_id

OCTETS = "application/octet-stream"
MAX_UPLOAD_KB = 64  # the site's web.max_upload_kb


@pytest.fixture
def site(tmp_path):
    return build_site(tmp_path / "site")


def sound(seconds: float = 1.0, hz: float = 700.0, fmt: str = "FLAC") -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    out = io.BytesIO()
    sf.write(out, (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000, format=fmt)
    return out.getvalue()


def browser(site: Site) -> tuple[httpx.Client, str]:
    """A cookie session, as the dashboard's own pages use it, and its CSRF token."""
    client = site.client()
    login = client.post("/api/login", json={"token": ADMIN})
    assert login.status_code == 200
    return client, login.json()["csrf"]


def upload(client: httpx.Client, csrf: str, data: bytes, label: str = "tone", name: str = "bark.flac"):
    return client.post("/api/settings/examples", params={"label": label, "name": name}, content=data,
                       headers={"Content-Type": OCTETS, "X-CSRF-Token": csrf})


def save_examples(client: httpx.Client, csrf: str, ids: object) -> httpx.Response:
    events = client.get("/api/settings").json()["events"]
    events[0]["examples"] = ids
    return client.post("/api/settings", json={"events": events}, headers={"X-CSRF-Token": csrf})


def stored(site: Site) -> set[str]:
    root = site.folder / "examples"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def test_examples_need_an_admin_and_the_csrf_token_and_a_bounded_audio_body(site):
    client, csrf = browser(site)
    data = sound(1.0)
    viewer = site.client(VIEWER).post("/api/settings/examples", params={"label": "tone"}, content=data,
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

    def chunks():  # no Content-Length: the route counts what arrives
        for start in range(0, len(big), 16384):
            yield big[start:start + 16384]

    assert client.post("/api/settings/examples", params={"label": "tone"}, content=chunks(),
                       headers={"Content-Type": OCTETS, "X-CSRF-Token": csrf}).status_code == 413
    for junk in (b"this is not audio\n" * 50, b"", b"RIFF\x00\x00\x00\x00WAVEfmt "):
        answer = upload(client, csrf, junk, name="fake.wav")
        assert answer.status_code == 400
        [problem] = answer.json()["problems"]
        assert problem["key"] == "examples" and "send WAV, FLAC, OGG or MP3" in problem["message"]
    assert stored(site) == set()  # nothing refused was written
    assert site.reloads.applied == []


def test_no_example_request_reaches_outside_the_examples_folder(site, tmp_path):
    client, csrf = browser(site)
    root = site.folder / "examples"
    secret = tmp_path / "secret.wav"
    sf.write(secret, np.zeros(1600, np.float32), 16000)
    outside = {p.name for p in tmp_path.iterdir()}
    answer = upload(client, csrf, sound(1.0), label="../../../tmp/x", name="../../../etc/passwd.flac")
    assert answer.status_code == 201
    [name] = stored(site)
    assert (root / name).resolve().is_relative_to(root.resolve()) and ".." not in name.split("/")
    assert name.split("/")[0].startswith("_") and name.split("/")[1].endswith("passwd.flac")
    # a save may name only the examples the dashboard lists itself: no path, no id of a file outside
    for given in (["/etc/passwd"], [str(secret)], ["../site.yaml"], [example_id(secret)],
                  [example_id(site.config_path)], [{"id": "%2e%2e%2fsecret"}], "examples/"):
        answer = save_examples(client, csrf, given)
        assert answer.status_code == 400, given
        assert answer.json()["problems"][0]["key"].startswith("events[0].examples"), given
    assert site.reloads.config.events[0].examples == []
    for path in ("/api/settings/examples/..%2F..%2Fsite.yaml/audio", "/api/settings/examples/%2e%2e/audio",
                 f"/api/settings/examples/{example_id(secret)}/audio",
                 f"/api/settings/examples/{example_id(site.config_path)}/audio",
                 "/api/settings/examples/" + "0" * 17 + "/audio"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert b"RIFF" not in answer.content and b"events" not in answer.content
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
    answer = upload(client, csrf, sound(1.0, hz=900.0), label="evil")
    assert answer.status_code == 400 and "link" in answer.json()["problems"][0]["message"]
    assert {p.name for p in tmp_path.iterdir()} == outside
    (root / "evil").unlink()
    for folder in [p for p in root.iterdir() if p.is_dir()]:
        os.rmdir(folder)
