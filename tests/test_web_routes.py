"""The dashboard's routes in-process (``tests/web_site.py``: the app over temporary files, no daemon, no port):
logins and roles, the events list and its filters, an event's detail, clip, spectrogram and score curve,
feedback and "refine now", the live view; every route's answer has exactly the fields of its model, and a bad
query answers 400 naming its key."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from web_site import ADMIN, CLIPPED, OPEN, UNCLIPPED, VIEWER, build_site

from streamdetect.prompts.refine import refinements_dir
from streamdetect.store import EVENT_FIELDS
from streamdetect.web.defs import response


@pytest.fixture
def site(tmp_path):
    return build_site(tmp_path)


def fields(model: type) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_every_page_and_route_needs_a_login(site):
    anon = site.client()
    assert anon.get("/", follow_redirects=False).status_code == 303
    assert anon.get("/", follow_redirects=False).headers["location"] == "/login"
    assert anon.get("/login").status_code == 200 and "frame-ancestors 'none'" in \
        anon.get("/login").headers["content-security-policy"]
    for path in ("/api/session", "/api/events", f"/api/events/{CLIPPED}", f"/api/events/{CLIPPED}/clip",
                 f"/api/events/{CLIPPED}/spectrogram", f"/api/events/{CLIPPED}/curve", "/api/live",
                 "/api/live/stream", "/api/live/audio", "/api/activity", "/api/playground", "/api/search",
                 "/api/settings", "/static/js/app.js"):
        assert anon.get(path).status_code == 401, path
    for path in ("/api/refine", "/api/settings", "/api/playground/add", f"/api/events/{CLIPPED}/feedback",
                 f"/api/events/{CLIPPED}/as-example"):
        assert anon.post(path, json={}).status_code == 401, path
    assert site.client("wrong").get("/api/events").status_code == 401
    assert anon.post("/api/login", json={"token": "wrong"}).status_code == 401
    assert anon.post("/api/login", json={"token": "wrong"}).json() == {"error": "wrong token"}


def test_a_viewer_reads_everything_and_changes_nothing(site):
    viewer = site.client(VIEWER)
    session = viewer.get("/api/session")
    assert session.status_code == 200 and set(session.json()) == fields(response.SessionAnswer)
    assert session.json()["role"] == "viewer" and session.json()["login_required"]
    for path in ("/", "/api/events", f"/api/events/{CLIPPED}", f"/api/events/{CLIPPED}/clip", "/api/live",
                 "/api/activity", "/api/settings"):
        assert viewer.get(path).status_code == 200, path
    for path, body in ((f"/api/events/{CLIPPED}/feedback", {"verdict": "confirmed"}), ("/api/refine", {}),
                       (f"/api/events/{CLIPPED}/as-example", {}), ("/api/settings", {"events": []}),
                       ("/api/playground/add", {"label": "x"})):
        answer = viewer.post(path, json=body)
        assert answer.status_code == 403 and "admin" in answer.json()["error"], path
    assert site.reloads.applied == []
    assert viewer.post("/api/logout", json={}).status_code == 200  # a viewer may log out


def test_a_cookie_session_needs_its_csrf_token_and_the_same_origin(site):
    browser = site.client()
    login = browser.post("/api/login", json={"token": ADMIN})
    assert login.status_code == 200 and set(login.json()) == fields(response.LoginAnswer)
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    csrf = login.json()["csrf"]
    assert browser.get("/api/session").json()["csrf"] == csrf
    url = f"/api/events/{CLIPPED}/feedback"
    assert browser.post(url, json={"verdict": "confirmed"}).status_code == 403
    assert browser.post(url, json={"verdict": "confirmed"}, headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert browser.post(url, content="verdict=confirmed", headers={
        "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    assert browser.post(url, json={"verdict": "confirmed"}, headers={
        "X-CSRF-Token": csrf, "Origin": "http://evil.example"}).status_code == 403
    assert browser.post(url, json={"verdict": "confirmed"}, headers={"X-CSRF-Token": csrf}).status_code == 200
    logout = browser.post("/api/logout", json={}, headers={"X-CSRF-Token": csrf})
    assert logout.status_code == 200 and logout.json() == {"ok": True}
    assert browser.get("/api/session").status_code == 401


def test_on_loopback_without_login_only_the_loopback_host_is_answered(tmp_path):
    site = build_site(tmp_path, login="auto")
    local = site.client(base_url="http://127.0.0.1:8080")
    session = local.get("/api/session").json()
    assert session["role"] == "admin" and not session["login_required"]
    assert local.get("/api/session", headers={"Host": "attacker.example"}).status_code == 421
    assert local.post("/api/refine", json={}).status_code == 403  # no CSRF header from a cross-site page


def test_two_apps_in_one_process_answer_from_their_own_context(tmp_path):
    first, second = build_site(tmp_path / "one"), build_site(tmp_path / "two")
    assert first.client(ADMIN).get("/api/session").json()["settings_file"] == str(first.config_path)
    assert second.client(ADMIN).get("/api/session").json()["settings_file"] == str(second.config_path)


def test_the_events_list_pages_and_filters(site):
    admin = site.client(ADMIN)
    page = admin.get("/api/events").json()
    assert set(page) == fields(response.EventPage)
    assert [e["id"] for e in page["events"]] == [CLIPPED, UNCLIPPED, OPEN]  # newest first
    assert all(set(e) == set(EVENT_FIELDS) for e in page["events"])
    assert page["next"] is None and page["labels"] == ["dog", "tone"] and page["streams"] == ["garden", "porch"]
    first = admin.get("/api/events", params={"limit": 1}).json()
    assert first["next"] == f"{site.times[CLIPPED]}|{CLIPPED}"
    second = admin.get("/api/events", params={"limit": 1, "before": first["next"]}).json()
    assert [e["id"] for e in second["events"]] == [UNCLIPPED]
    assert second["labels"] == [] and second["streams"] == []  # the filters' values come with the first page
    by = {key: [e["id"] for e in admin.get("/api/events", params={key: value}).json()["events"]]
          for key, value in (("label", "dog"), ("stream", "porch"), ("min_score", 0.5), ("max_score", 0.4),
                             ("since", "150m"), ("until", site.times[UNCLIPPED]), ("review", "unreviewed"),
                             ("label", ""))}
    assert by == {"label": [CLIPPED, UNCLIPPED, OPEN], "stream": [UNCLIPPED], "min_score": [CLIPPED, OPEN],
                  "max_score": [UNCLIPPED], "since": [CLIPPED, UNCLIPPED], "until": [UNCLIPPED, OPEN],
                  "review": [CLIPPED, UNCLIPPED, OPEN]}  # an empty parameter counts as absent
    assert len(admin.get("/api/events", params={"limit": 0}).json()["events"]) == 3  # 0: the default
    assert len(admin.get("/api/events", params={"limit": 10**9}).json()["events"]) == 3


@pytest.mark.parametrize(("params", "named"), [
    ({"min_score": "high"}, "min_score must be a number, found 'high'"), ({"max_score": "x"}, "max_score"),
    ({"limit": "many"}, "limit must be a number"), ({"since": "yesterday"}, "since: 'yesterday' is neither"),
    ({"until": "soon"}, "until:"), ({"review": "maybe"}, "review must be one of any, unreviewed")])
def test_a_bad_events_query_answers_400_naming_its_key(site, params, named):
    answer = site.client(VIEWER).get("/api/events", params=params)
    assert answer.status_code == 400 and named in answer.json()["error"]


def test_an_events_detail_clip_and_spectrogram(site):
    admin = site.client(ADMIN)
    detail = admin.get(f"/api/events/{CLIPPED}").json()
    assert set(detail) == set(EVENT_FIELDS) | {"clip"}
    assert detail["clip"] == {"url": f"/api/events/{CLIPPED}/clip", "duration_s": 4.0, "extent_s": [1.0, 3.0]}
    assert "clip" not in admin.get(f"/api/events/{UNCLIPPED}").json()  # absent, not null, without a clip
    assert admin.get("/api/events/..%2F..%2Fetc%2Fpasswd/clip").status_code == 404  # matches no route
    whole = admin.get(detail["clip"]["url"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/flac"
    assert "content-disposition" not in whole.headers
    assert whole.headers["accept-ranges"] == "bytes"
    part = admin.get(detail["clip"]["url"], headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == whole.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
    tail = admin.get(detail["clip"]["url"], headers={"Range": f"bytes={len(whole.content) - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    assert admin.get(detail["clip"]["url"], headers={"Range": f"bytes={len(whole.content) + 5}-"}).status_code == 416
    download = admin.get(detail["clip"]["url"], params={"download": 1})
    assert download.headers["content-disposition"].startswith("attachment")
    assert "content-disposition" not in admin.get(detail["clip"]["url"], params={"download": "yes"}).headers
    spec = admin.get(f"/api/events/{CLIPPED}/spectrogram")
    assert spec.headers["cache-control"] == "private, max-age=300"
    assert set(spec.json()) == fields(response.Spectrogram)
    assert spec.json()["bins"] == 64 and spec.json()["max_hz"] == 8000 and spec.json()["extent_s"] == [1.0, 3.0]
    thumb = admin.get(f"/api/events/{CLIPPED}/spectrogram", params={"thumb": 1}).json()
    assert thumb["bins"] == 32 and thumb["frames"] < spec.json()["frames"]


@pytest.mark.parametrize("path", [f"/api/events/{UNCLIPPED}/clip", f"/api/events/{UNCLIPPED}/spectrogram",
                                  "/api/events/ffffffff/clip", "/api/events/nothex/clip", "/api/events/ffffffff",
                                  "/api/events/" + "a" * 65 + "/clip", "/api/events/%2e%2e/clip"])
def test_an_event_or_clip_that_is_not_there_answers_404(site, path):
    answer = site.client(ADMIN).get(path)
    assert answer.status_code == 404 and "error" in answer.json()


def test_no_request_reads_outside_the_clips_folder(site):
    admin = site.client(ADMIN)
    secret = site.folder / "secret.txt"
    secret.write_text("not for the web")
    for path in ("/api/events/..%2F..%2F..%2Fetc%2Fpasswd/clip", "/api/events/%2e%2e/clip",
                 "/api/events/....%2f....%2fsecret/clip", "/static/..%2F..%2Fauth.py", "/static/%2e%2e/auth.py",
                 "/static/../web/auth.py", "/api/events/" + "a" * 65 + "/clip"):
        answer = admin.get(path)
        assert answer.status_code == 404, path
        assert b"not for the web" not in answer.content and b"import" not in answer.content
    [clip] = site.clips.glob("*/*.flac")
    clip.unlink()
    clip.symlink_to(secret)  # a clip file replaced by a link to a file outside is not served
    answer = admin.get(f"/api/events/{CLIPPED}/clip")
    assert answer.status_code == 404 and b"not for the web" not in answer.content
    assert "clip" not in admin.get(f"/api/events/{CLIPPED}").json()


def test_a_curve_scores_the_labels_prompt_around_the_event(site):
    curve = site.client(VIEWER).get(f"/api/events/{CLIPPED}/curve")
    assert curve.status_code == 200 and set(curve.json()) == fields(response.Curve)
    data = curve.json()
    assert data["label"] == "tone" and data["threshold"] == 0.3 and data["points"] == []  # no windows kept
    assert data["event"][1] - data["event"][0] == pytest.approx(2.0)


def test_feedback_is_written_to_the_store_and_a_bad_verdict_is_refused(site):
    admin = site.client(ADMIN)
    answer = admin.post(f"/api/events/{CLIPPED[:8]}/feedback", json={"verdict": "relabel", "label": "beep"})
    assert answer.status_code == 200
    assert answer.json() == {"id": CLIPPED, "label": "tone", "verdict": "rejected", "relabel": "beep"}
    shown = admin.get(f"/api/events/{CLIPPED}").json()
    assert (shown["feedback"], shown["relabel"]) == ("rejected", "beep")
    assert [e["id"] for e in admin.get("/api/events", params={"review": "rejected"}).json()["events"]] == [CLIPPED]
    activity = admin.get("/api/activity", params={"days": 7}).json()["labels"]
    assert activity["tone"]["total"] == 1  # a rejected event is no activity
    for body in ({"verdict": "maybe"}, {"verdict": "relabel"}, ["confirmed"]):
        assert admin.post(f"/api/events/{UNCLIPPED}/feedback", json=body).status_code == 400, body
    assert admin.post("/api/events/ffffffff/feedback", json={"verdict": "confirmed"}).status_code == 400
    assert admin.post("/api/events/nothex/feedback", json={"verdict": "confirmed"}).status_code == 404


def test_refine_now_learns_from_the_feedback_and_applies_it(site):
    admin = site.client(ADMIN)
    assert admin.post(f"/api/events/{CLIPPED}/feedback", json={"verdict": "confirmed"}).status_code == 200
    assert admin.post("/api/refine", json=["alpha"]).status_code == 400
    assert admin.post("/api/refine", json={"alpha": 2}).status_code == 400
    answer = admin.post("/api/refine", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "applied"
    tone = next(r for r in answer.json()["labels"] if r["label"] == "tone")
    assert set(tone) == fields(response.RefinedLabel)
    assert tone["version"] == 1 and tone["confirmed"] == 1 and tone["angle_deg"] > 0
    assert len(site.reloads.applied) == 1 and refinements_dir(site.ctx.bundle).is_dir()


def test_the_live_view_snapshot_stream_and_listener(site):
    viewer = site.client(VIEWER)
    hub = site.ctx.hub
    hub.live_audio("garden", 0, np.full(16_000, 0.01, np.float32), 16_000)
    snapshot = viewer.get("/api/live", params={"stream": "garden"}).json()
    assert set(snapshot) == fields(response.LiveDelta)  # a selected stream with audio: its columns too
    assert [s["name"] for s in snapshot["streams"]] == ["garden"] and snapshot["spectrogram"]["frames"] > 0
    assert set(viewer.get("/api/live").json()) == {"seq", "streams", "selected", "stale_after_s"}
    assert viewer.get("/api/live/audio", params={"stream": "porch"}).status_code == 404
    closing = threading.Timer(0.3, hub.closed.set)  # the daemon's shutdown ends every live response
    closing.start()
    stream = viewer.get("/api/live/stream", params={"stream": "garden"})
    closing.join()
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    first = stream.text.split("\n\n")[0]
    assert first.startswith("data: {") and '"selected":"garden"' in first
    assert hub.subscribers == 0
    hub.closed.clear()
    closing = threading.Timer(0.3, hub.closed.set)
    closing.start()
    listen = viewer.get("/api/live/audio", params={"stream": "garden"})
    closing.join()
    assert listen.status_code == 200 and listen.headers["content-type"] == "audio/L16; rate=16000; channels=1"
    assert len(listen.content) > 0 and len(listen.content) % 2 == 0 and hub.subscribers == 0
    hub.subscribe(), hub.subscribe()  # the site allows two live views
    for path in ("/api/live/stream", "/api/live/audio?stream=garden"):
        full = viewer.get(path)
        assert full.status_code == 503 and "web.max_live_clients" in full.json()["error"], path
