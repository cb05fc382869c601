"""The dashboard's HTTP API against a real daemon (``DetectorService`` with ``web:``) served by uvicorn on
loopback: logins and roles, CSRF, Range requests for clips, path traversal and symlinks, bounded bodies, a live
view that disconnects mid-stream, feedback that the ``feedback`` command's readers see, settings written into
the YAML with its comments kept."""

from __future__ import annotations

import json
import socket
import time

import httpx
import numpy as np
import pytest
from helpers import run_cli
from web_station import ADMIN, CONFIG_COMMENT, VIEWER, Station, running_station, write_station_config

from streamdetect.config import load_config
from streamdetect.daemon.service import DetectorService, preflight
from streamdetect.model.manifest import ModelBundle
from streamdetect.web.tokens import WebError


@pytest.fixture(scope="module")
def station(tmp_path_factory, tiny_model):
    with running_station(tmp_path_factory.mktemp("station"), tiny_model) as st:
        yield st


def closed_event(station: Station) -> dict:
    return next(e for e in station.events() if e["end_s"] is not None)


def test_every_page_and_endpoint_needs_a_login(station):
    with httpx.Client(base_url=station.url, timeout=30) as anon:
        assert anon.get("/").status_code == 303 and anon.get("/").headers["location"] == "/login"
        assert anon.get("/#/events").status_code == 303
        for path in ("/api/events", "/api/session", "/api/live", "/api/live/stream", "/api/activity",
                     "/static/js/app.js", "/api/settings"):
            assert anon.get(path).status_code == 401, path
        assert anon.post("/api/refine", json={}).status_code == 401
        assert anon.get("/login").status_code == 200
        assert anon.post("/api/login", json={"token": "wrong"}).status_code == 401
        assert anon.get("/api/events", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_viewer_sees_and_listens_but_cannot_change_anything(station):
    event = closed_event(station)
    viewer = station.client(VIEWER)
    assert viewer.get("/api/session").json()["role"] == "viewer"
    assert viewer.get("/api/events").status_code == 200
    assert viewer.get(f"/api/events/{event['id']}/clip").status_code == 200
    for path, body in ((f"/api/events/{event['id']}/feedback", {"verdict": "confirmed"}), ("/api/refine", {}),
                       ("/api/settings", {"events": []}), ("/api/playground/add", {"label": "x"})):
        response = viewer.post(path, json=body)
        assert response.status_code == 403, path
        assert "admin" in response.json()["error"]
    assert next(e for e in station.events() if e["id"] == event["id"])["feedback"] is None


def test_confirm_writes_the_feedback_that_streamdetect_events_shows(station):
    event = closed_event(station)
    response = station.client(ADMIN).post(f"/api/events/{event['id']}/feedback", json={"verdict": "confirmed"})
    assert response.status_code == 200, response.text
    listed = run_cli("events", "--db", str(station.db))
    assert listed.returncode == 0, listed.stderr
    assert any(event["time"] in line and line.rstrip().endswith("confirmed") for line in listed.stdout.splitlines())
    confirmed = station.client(ADMIN).get("/api/events", params={"review": "confirmed"}).json()["events"]
    assert [e["id"] for e in confirmed] == [event["id"]]


def test_refine_now_learns_from_the_feedback_and_applies_it_live(station):
    admin = station.client(ADMIN)
    before = station.service.detector.bank.events[0].copy()
    event = closed_event(station)
    assert admin.post(f"/api/events/{event['id']}/feedback", json={"verdict": "confirmed"}).status_code == 200
    response = admin.post("/api/refine", json={})
    assert response.status_code == 200, response.text
    tone = next(r for r in response.json()["labels"] if r["label"] == "tone")
    assert tone["version"] >= 1 and tone["confirmed"] >= 1 and tone["angle_deg"] > 0
    after = station.service.detector.bank.events[0]
    assert float(after @ before) < 0.99999  # the running detector scores with the refined vector
    assert (station.config_path.parent / "model" / "refinements").is_dir()


def test_relabel_and_reject_leave_the_activity_counts(station):
    admin = station.client(ADMIN)

    def tone_ids():
        return {e["id"] for e in admin.get("/api/events", params={"label": "tone", "limit": 200}).json()["events"]}

    seen = tone_ids()
    before = admin.get("/api/activity", params={"days": 7}).json()["labels"]["tone"]["total"]
    unreviewed = admin.get("/api/events", params={"review": "unreviewed", "label": "tone"}).json()["events"]
    assert len(unreviewed) >= 1
    target = unreviewed[0]
    response = admin.post(f"/api/events/{target['id']}/feedback", json={"verdict": "relabel", "label": "beep"})
    assert response.status_code == 200 and response.json()["verdict"] == "rejected"
    after = admin.get("/api/activity", params={"days": 7}).json()["labels"]["tone"]["total"]
    started_meanwhile = len(tone_ids() - seen)  # the station keeps listening while the test reads
    assert before - 1 <= after <= before - 1 + started_meanwhile
    shown = admin.get(f"/api/events/{target['id']}").json()
    assert (shown["feedback"], shown["relabel"]) == ("rejected", "beep")
    assert admin.post(f"/api/events/{target['id']}/feedback", json={"verdict": "maybe"}).status_code == 400


def test_cookie_sessions_need_the_csrf_token_and_same_origin(station):
    with httpx.Client(base_url=station.url, timeout=30) as browser:
        login = browser.post("/api/login", json={"token": ADMIN})
        assert login.status_code == 200
        assert "httponly" in login.headers["set-cookie"].lower() and "samesite=strict" in login.headers["set-cookie"].lower()
        csrf = login.json()["csrf"]
        event = closed_event(station)
        url = f"/api/events/{event['id']}/feedback"
        assert browser.get("/api/session").json()["csrf"] == csrf
        assert browser.post(url, json={"verdict": "confirmed"}).status_code == 403  # no token
        assert browser.post(url, json={"verdict": "confirmed"}, headers={"X-CSRF-Token": "guess"}).status_code == 403
        assert browser.post(url, content="verdict=confirmed", headers={
            "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
        assert browser.post(url, json={"verdict": "confirmed"}, headers={
            "X-CSRF-Token": csrf, "Origin": "http://evil.example"}).status_code == 403
        assert browser.post(url, json={"verdict": "confirmed"}, headers={"X-CSRF-Token": csrf}).status_code == 200
        assert browser.post("/api/logout", json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
        assert browser.get("/api/session").status_code == 401


def test_clips_honour_range_requests_and_download(station):
    event = closed_event(station)
    admin = station.client(ADMIN)
    detail = admin.get(f"/api/events/{event['id']}").json()
    assert detail["clip"]["duration_s"] > 1.0
    lo, hi = detail["clip"]["extent_s"]
    assert 0 <= lo < hi <= detail["clip"]["duration_s"]
    whole = admin.get(detail["clip"]["url"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes"
    part = admin.get(detail["clip"]["url"], headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
    assert part.content == whole.content[100:1100]
    tail = admin.get(detail["clip"]["url"], headers={"Range": f"bytes={len(whole.content) - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    assert admin.get(detail["clip"]["url"], headers={"Range": f"bytes={len(whole.content) + 5}-"}).status_code == 416
    download = admin.get(detail["clip"]["url"], params={"download": 1})
    assert download.headers["content-disposition"].startswith("attachment")
    spec = admin.get(f"/api/events/{event['id']}/spectrogram").json()
    assert spec["frames"] > 10 and spec["bins"] == 64 and spec["max_hz"] == 24000


def test_no_request_reads_outside_the_clips_folder(station, tmp_path):
    admin = station.client(ADMIN)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    for path in ("/api/events/..%2F..%2F..%2Fetc%2Fpasswd/clip", "/api/events/%2e%2e/clip",
                 "/api/events/....%2f....%2fsecret/clip", "/static/..%2F..%2Fauth.py", "/static/%2e%2e/auth.py",
                 "/static/../web/auth.py", "/api/events/" + "a" * 65 + "/clip"):
        response = admin.get(path)
        assert response.status_code == 404, path
        assert b"not for the web" not in response.content and b"import" not in response.content
    # a clip file replaced by a symlink to a file outside is not served
    event = [e for e in station.events() if e["end_s"] is not None][-1]
    clip = next(p for p in station.clips.glob("*/*.flac") if p.name.endswith(f"_{event['id'][:8]}.flac"))
    clip.unlink()
    clip.symlink_to(secret)
    response = admin.get(f"/api/events/{event['id']}/clip")
    assert response.status_code == 404 and b"not for the web" not in response.content


def test_request_bodies_are_bounded(station):
    admin = station.client(ADMIN)
    limit = station.service.config.web.max_body_kb * 1024
    big = json.dumps({"events": ["x" * (limit + 10)]})
    response = admin.post("/api/settings", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the server counts what arrives
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    response = admin.post("/api/settings", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert admin.get("/api/session").status_code == 200


def test_a_live_view_that_disconnects_mid_stream_is_released(station):
    hub = station.service.live
    host, port = station.service.web.address[:2]
    before = hub.subscribers
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(f"GET /api/live/stream?stream=scene.wav HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Authorization: Bearer {VIEWER}\r\n\r\n".encode())
    received = b""
    while b"\ndata: " not in received and b"\r\n\r\ndata" not in received:
        received += sock.recv(65536)
    assert b"text/event-stream" in received
    assert hub.subscribers == before + 1
    sock.close()  # the browser goes away mid-stream
    deadline = time.monotonic() + 15
    while hub.subscribers != before:
        assert time.monotonic() < deadline, "the server kept a vanished live view"
        time.sleep(0.1)
    first = station.client(VIEWER).get("/api/live", params={"stream": "scene.wav"}).json()
    assert {s["name"] for s in first["streams"]} == {"scene.wav", "scene2.wav", "quiet"}
    assert first["spectrogram"]["frames"] > 0 and first["windows"]


def test_a_viewer_listens_to_a_stream_as_bounded_pcm(station):
    with station.client(VIEWER) as viewer:
        assert viewer.get("/api/live/audio", params={"stream": "nothing"}).status_code == 404
        with viewer.stream("GET", "/api/live/audio", params={"stream": "quiet"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "audio/L16; rate=16000; channels=1"
            data = b""
            for chunk in response.iter_bytes():  # a new listener starts a second back, then follows the stream
                data += chunk
                if len(data) >= 64_000:
                    break
    # the quiet stream is a constant 1e-4 of full scale: about 3 in PCM16, as heard after resampling
    pcm = np.frombuffer(data[: len(data) // 2 * 2], ">i2")
    assert pcm.size >= 32_000 and np.median(pcm) == 3
    deadline = time.monotonic() + 30
    while station.service.live.subscribers:  # the listener's slot is given back
        assert time.monotonic() < deadline, "the server kept a vanished listener"
        time.sleep(0.1)


def test_settings_apply_live_and_keep_the_yaml_comments(station):
    admin = station.client(ADMIN)
    form = admin.get("/api/settings").json()
    bad = [dict(form["events"][0], threshold=7)]
    response = admin.post("/api/settings", json={"events": bad, "gate": {"min_dbfs": None}})
    assert response.status_code == 400
    assert {"key": "events[0].threshold", "message": "expected less than or equal to 1 (found 7)"} in \
        response.json()["problems"]
    assert {f["key"] for f in form["schema"]["sections"]["scoring"]} == {"mode", "background"}
    response = admin.post("/api/settings", json={"events": form["events"], "novelty": {"warmup_windows": 0}})
    assert response.status_code == 400
    assert [p["key"] for p in response.json()["problems"]] == ["novelty.warmup_windows"]
    new_threshold = round(form["events"][0]["threshold"] + 0.01, 6)
    good = [dict(form["events"][0], threshold=new_threshold, negatives=["a kettle whistling"],
                 prompts=form["events"][0]["prompts"] + ["a steady tone"])]
    response = admin.post("/api/settings", json={"events": good, "gate": {"min_dbfs": -70},
                                                 "vocabulary": {"top_k": 5}})
    assert response.status_code == 200, response.text
    running = station.service.detector.config
    assert running.events[0].threshold == pytest.approx(new_threshold)
    assert running.events[0].prompts[-1] == "a steady tone"
    assert running.gate.min_dbfs == -70 and running.vocabulary.top_k == 5
    text = station.config_path.read_text()
    assert text.startswith(CONFIG_COMMENT) and "# what to listen for" in text
    reread = load_config(station.config_path)
    assert reread.events[0].threshold == pytest.approx(new_threshold)
    assert reread.events[0].negatives == ["a kettle whistling"] and reread.gate.min_dbfs == -70
    assert reread.events[0].prompts[-1] == "a steady tone" and reread.vocabulary.top_k == 5


def test_events_list_pages_and_filters(station):
    admin = station.client(ADMIN)
    everything = station.events()
    assert len(everything) >= 2
    assert [e["time"] for e in everything] == sorted((e["time"] for e in everything), reverse=True)
    first = admin.get("/api/events", params={"limit": 1}).json()
    second = admin.get("/api/events", params={"limit": 1, "before": first["next"]}).json()
    assert [first["events"][0]["id"], second["events"][0]["id"]] == [e["id"] for e in everything[:2]]
    assert {e["stream"] for e in admin.get("/api/events", params={"stream": "scene2.wav"}).json()["events"]} == \
        {"scene2.wav"}
    top = max(e["peak_score"] for e in everything)
    assert [e["peak_score"] for e in admin.get("/api/events", params={"min_score": top}).json()["events"]] == [top]
    assert admin.get("/api/events", params={"since": "1m"}).json()["events"]
    assert admin.get("/api/events", params={"until": "2000-01-01T00:00:00"}).json()["events"] == []
    assert admin.get("/api/events", params={"review": "nonsense"}).status_code == 400


def test_a_login_is_required_off_loopback_and_the_token_comes_from_the_environment(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMDETECT_WEB_ADMIN_TOKEN", raising=False)
    config = load_config(write_station_config(tmp_path, tiny_model, [{"label": "x", "prompts": ["a"], "threshold": 0.1}],
                                              host="0.0.0.0"))
    with pytest.raises(WebError, match="export STREAMDETECT_WEB_ADMIN_TOKEN"):
        preflight(config)


def test_on_loopback_without_login_only_the_loopback_host_is_answered(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMDETECT_WEB_ADMIN_TOKEN", raising=False)
    path = write_station_config(tmp_path, tiny_model, [{"label": "x", "prompts": ["a"], "threshold": 0.1}])
    with DetectorService(load_config(path), ModelBundle.load(tiny_model), config_path=path) as service:
        host, port = service.web.address[:2]
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as local:
            session = local.get("/api/session").json()
            assert session["role"] == "admin" and not session["login_required"]
            assert local.get("/api/session", headers={"Host": "attacker.example"}).status_code == 421
            # a cross-site page cannot send the CSRF header without a preflight we never grant
            assert local.post("/api/refine", json={}).status_code == 403
