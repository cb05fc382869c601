"""The dashboard end to end: Debian's headless chromium (through Selenium and chromedriver) against a real
``streamdetect run`` daemon listening to generated audio through ffmpeg at real-time pace.

What a user does is what is checked: the live page updates; an event appears in the list; its clip plays (the
audio element reports a duration and seeks, which needs Range requests); "confirm" writes the feedback that
``streamdetect events`` shows; the playground draws a curve and "add as event" makes later windows score the new
label; a viewer cannot review. Every page is photographed on the way (into ``docs/images/dashboard-*.png``, the
docs' figures, with STREAMDETECT_DOC_SHOTS=1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml
from helpers import CliRun, free_port, run_cli, tone_events, write_tone_scene

pytestmark = pytest.mark.browser

ADMIN, VIEWER = "browser-admin-" + "a" * 20, "browser-viewer-" + "v" * 20
# The pages photographed on the way go into the docs' figures only when asked (STREAMDETECT_DOC_SHOTS=1), so a
# test run never changes tracked files; otherwise into a temporary folder of this process.
DOC_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model):
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: run `bash scripts/setup.sh --dev`")
    folder = tmp_path_factory.mktemp("browser-station")
    scene = write_tone_scene(folder / "scene.wav", seconds=14.0, tone_at=(4.0, 8.0))
    port = free_port()
    names = folder / "names.txt"
    names.write_text("kettle\nbeep\nrain\nengine\nbird\n")
    config = {"model": str(tiny_model), "runtime": {"device": "cpu"}, "events": tone_events(tiny_model),
              "sources": [{"type": "ffmpeg", "name": "garden", "url": str(scene),
                           "input_args": ["-re", "-stream_loop", "-1"]}],
              "sinks": [{"type": "sqlite", "path": str(folder / "events.db")},
                        {"type": "clips", "dir": str(folder / "clips"), "pre_roll_s": 1.0, "post_roll_s": 1.0}],
              "embedding_log": {"dir": str(folder / "embeddings")},
              "vocabulary": {"file": str(names), "top_k": 2},
              "web": {"port": port, "login": "always"}}
    path = folder / "station.yaml"
    text = yaml.safe_dump(config, sort_keys=False).replace("events:\n", "events:  # what to listen for\n")
    path.write_text("# the browser test's station\n" + text)
    env = {**os.environ, "STREAMDETECT_WEB_ADMIN_TOKEN": ADMIN, "STREAMDETECT_WEB_VIEWER_TOKEN": VIEWER}
    run = CliRun("run", "--config", str(path), env=env)
    try:
        run.wait_for("dashboard on", 120)
        yield {"url": f"http://127.0.0.1:{port}", "db": folder / "events.db", "run": run, "config": path}
    finally:
        assert run.stop() == 0, run.log


def chromium(width: int = 1200, height: int = 1400):
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            pytest.fail(f"{tool} not found: run `bash scripts/setup.sh --dev` (Debian chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait(driver, condition, timeout_s: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition(driver)
        except Exception:  # noqa: BLE001 - the element may not exist yet
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def login(driver, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    wait(driver, lambda d: d.current_url.endswith("/login"), what="the login page")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(driver, lambda d: "#/live" in d.current_url, what="the dashboard after login")


def shot(driver, name: str) -> None:
    folder = DOC_IMAGES if os.environ.get("STREAMDETECT_DOC_SHOTS") else \
        Path(tempfile.gettempdir()) / f"streamdetect-shots-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)  # let the canvases finish drawing
    assert driver.save_screenshot(str(folder / f"dashboard-{name}.png")), name


def canvas_drawn(driver, selector: str) -> bool:
    """The canvas holds more than one colour (something was drawn on it)."""
    return driver.execute_script("""
        const c = document.querySelector(arguments[0]); if (!c || !c.width) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
        return seen.size > 8;""", selector)


@pytest.fixture(scope="module")
def admin(daemon):
    driver = chromium()
    try:
        login(driver, daemon["url"], ADMIN)
        yield driver
    finally:
        driver.quit()


def test_live_page_updates(daemon, admin):
    admin.get(daemon["url"] + "/#/live")
    first = int(wait(admin, lambda d: d.find_element("id", "main").get_attribute("data-messages"), what="a push"))
    wait(admin, lambda d: int(d.find_element("id", "main").get_attribute("data-messages")) >= first + 3,
         what="three more pushed updates")
    # the pushes above may be audio only (spectrogram columns) until the first window has been scored; the card
    # is drawn anew on updates, so it is looked up each time
    card = wait(admin, lambda d: next((c for c in d.find_elements("css selector", '.stream-card[data-stream="garden"]')
                                       if "tone" in c.text), None), what="the stream card's first scored window")
    assert "windows" in card.text
    assert "sounds like:" in card.find_element("css selector", ".sounds-like").text
    wait(admin, lambda d: canvas_drawn(d, "#live-spectrogram"), what="the live spectrogram")
    wait(admin, lambda d: canvas_drawn(d, '#live-strips canvas[data-label="tone"]'), what="the score strip")
    assert [o.text for o in admin.find_elements("css selector", "#live-source option")] == ["garden"]
    check_listening(admin)
    wait(admin, lambda d: int(d.find_element("css selector", '.stream-card[data-stream="garden"] p.windows')
                              .text.split()[0]) >= 15,
         what="15 windows on the card (for the screenshot)")
    shot(admin, "live")


def check_listening(driver) -> None:
    """"Listen" plays the stream: audio arrives, is not silence (the scene has a tone and noise), and the
    page's audio clock runs; a second click stops it."""
    button = driver.find_element("id", "live-listen")
    button.click()
    wait(driver, lambda d: float(button.get_attribute("data-received-s") or 0) >= 2.0, 30, "two seconds of audio")
    assert button.get_attribute("data-state") == "playing" and button.text == "Stop listening"
    assert float(button.get_attribute("data-peak")) > 0.01
    assert float(button.get_attribute("data-played-s")) > 0.5
    button.click()
    wait(driver, lambda d: button.get_attribute("data-state") == "stopped", 10, "listening to stop")


def closed_event_row(driver):
    rows = driver.find_elements("css selector", "tr.event-row")
    return next((r for r in rows if "open" not in r.text), None)


def test_an_event_appears_and_its_clip_plays_and_seeks(daemon, admin):
    admin.get(daemon["url"] + "/#/events")

    def row(d):
        d.find_element("css selector", "#event-filters button").click()
        time.sleep(1.0)
        return closed_event_row(d)

    found = wait(admin, row, 120, "an ended event in the list")
    names = {"kettle", "beep", "rain", "engine", "bird"}
    sounds_like = found.find_elements("css selector", "td")[6].text
    assert sounds_like and set(sounds_like.split(", ")) <= names, f"sounds like {sounds_like!r} in {found.text!r}"
    wait(admin, lambda d: canvas_drawn(d, "tr.event-row canvas.thumb"), what="a spectrogram thumbnail")
    shot(admin, "events")
    found.click()
    wait(admin, lambda d: d.find_element("id", "event-label").text == "tone", what="the event detail")
    duration = wait(admin, lambda d: d.execute_script(
        "const a = document.getElementById('clip-player'); return a.readyState >= 1 && a.duration"),
        what="the clip's duration")
    assert duration > 1.0
    landed = admin.execute_async_script("""
        const done = arguments[arguments.length - 1], a = document.getElementById('clip-player');
        a.addEventListener('seeked', () => done(a.currentTime), {once: true});
        a.currentTime = arguments[0];""", duration / 2)
    assert abs(landed - duration / 2) < 0.1
    played = admin.execute_async_script("""
        const done = arguments[arguments.length - 1], a = document.getElementById('clip-player');
        a.muted = true; a.play().then(() => setTimeout(() => done(a.currentTime), 700), e => done(String(e)));""")
    assert isinstance(played, float) and played > duration / 2
    wait(admin, lambda d: canvas_drawn(d, "#event-spectrogram"), what="the event's spectrogram")
    wait(admin, lambda d: canvas_drawn(d, "#event-curve"), what="the score curve around the event")
    shot(admin, "event")
    check_the_spectrogram_zooms(admin, duration)


def spectrogram_range(driver) -> dict[str, float]:
    data = driver.find_element("id", "event-spectrogram").get_attribute
    return {k: float(data(f"data-{k}")) for k in ("t0", "t1", "f0", "f1")}


def check_the_spectrogram_zooms(driver, duration: float) -> None:
    """Drag a box over the middle of the clip, wheel over the frequency axis, reset: the axes follow."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "event-spectrogram")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    full = spectrogram_range(driver)
    assert full["t0"] == 0 and full["t1"] == pytest.approx(duration, abs=0.1) and full["f0"] == 0
    width = canvas.size["width"]
    left = 42  # the frequency axis (SPEC_LEFT in charts.js)
    plot = width - left
    # offsets are from the canvas centre: drag from 25 % to 75 % of the plot's width, keeping the height
    x0, x1 = left + plot * 0.25 - width / 2, left + plot * 0.75 - width / 2
    ActionChains(driver).move_to_element_with_offset(canvas, int(x0), -20).click_and_hold() \
        .move_by_offset(int(x1 - x0) // 2, 1).move_by_offset(int(x1 - x0) - int(x1 - x0) // 2, 1).release().perform()
    zoomed = wait(driver, lambda d: (r := spectrogram_range(d))["t1"] < full["t1"] - 0.5 and r, 10, "a time zoom")
    span = full["t1"] - full["t0"]
    assert zoomed["t0"] == pytest.approx(span * 0.25, abs=span * 0.05)
    assert zoomed["t1"] == pytest.approx(span * 0.75, abs=span * 0.05)
    assert (zoomed["f0"], zoomed["f1"]) == (full["f0"], full["f1"])  # a flat drag keeps the frequencies
    driver.execute_script("""  // two wheel steps in over the frequency axis, near its bottom
        const c = arguments[0], r = c.getBoundingClientRect();
        for (let i = 0; i < 2; i++) c.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, bubbles: true,
            cancelable: true, clientX: r.left + 10, clientY: r.top + (r.height - 18) * 0.9}));""", canvas)
    narrowed = spectrogram_range(driver)
    assert narrowed["f1"] < full["f1"] * 0.8 and (narrowed["t0"], narrowed["t1"]) == (zoomed["t0"], zoomed["t1"])
    assert canvas_drawn(driver, "#event-spectrogram")
    assert "kHz" in driver.find_element("id", "event-spectrogram-range").text
    shot(driver, "event-zoom")
    driver.find_element("id", "event-spectrogram-reset").click()
    assert spectrogram_range(driver) == full


def test_confirm_writes_feedback_that_streamdetect_events_shows(daemon, admin):
    if "#/event/" not in admin.current_url:
        test_an_event_appears_and_its_clip_plays_and_seeks(daemon, admin)
    event_id = admin.current_url.rsplit("/", 1)[1]
    admin.find_element("id", "confirm-btn").click()
    wait(admin, lambda d: d.find_element("id", "event-review").text == "confirmed", what="the confirmed badge")
    listed = run_cli("events", "--db", str(daemon["db"]))
    assert listed.returncode == 0, listed.stderr
    with httpx.Client(base_url=daemon["url"], headers={"Authorization": f"Bearer {VIEWER}"}) as api:
        event = api.get(f"/api/events/{event_id}").json()
    assert any(event["time"] in line and line.endswith("confirmed") for line in listed.stdout.splitlines())


def test_playground_draws_a_curve_and_add_as_event_scores_the_new_label(daemon, admin):
    from selenium.webdriver.common.by import By

    admin.get(daemon["url"] + "/#/playground")
    admin.find_element(By.ID, "pg-prompt").send_keys("a high beep")
    admin.find_element(By.CSS_SELECTOR, "#pg-form button").click()
    wait(admin, lambda d: int(d.find_element(By.ID, "pg-curve").get_attribute("data-points") or 0) > 5,
         what="the prompt's score curve")
    assert canvas_drawn(admin, "#pg-curve")
    admin.find_element(By.ID, "pg-curve").click()  # picks a threshold on the curve
    picked = admin.find_element(By.ID, "pg-threshold").get_attribute("value")
    assert picked != ""
    label = admin.find_element(By.ID, "pg-label")
    label.clear()
    label.send_keys("beep")
    admin.find_element(By.ID, "search-q").send_keys("beep")
    admin.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait(admin, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results .hit"), what="search hits")
    shot(admin, "playground")
    admin.find_element(By.ID, "pg-add").click()
    wait(admin, lambda d: "beep" in d.find_element(By.ID, "pg-note").text, what="the event being added")
    with httpx.Client(base_url=daemon["url"], headers={"Authorization": f"Bearer {VIEWER}"}) as api:
        deadline = time.monotonic() + 30
        while "beep" not in api.get("/api/live", params={"stream": "garden"}).json()["streams"][0]["scores"]:
            assert time.monotonic() < deadline, "later windows never scored the new label"
            time.sleep(0.5)
        assert "beep" in api.get("/api/session").json()["labels"]


def test_activity_and_settings_pages(daemon, admin):
    from selenium.webdriver.common.by import By

    admin.get(daemon["url"] + "/#/activity")
    panel = wait(admin, lambda d: d.find_element(By.CSS_SELECTOR, '.activity-label[data-label="tone"]'),
                 what="the tone heatmap")
    assert int(panel.get_attribute("data-total")) >= 1
    wait(admin, lambda d: canvas_drawn(d, ".activity-label canvas.heatmap"), what="the heatmap")
    shot(admin, "activity")
    admin.get(daemon["url"] + "/#/settings")
    form = '.event-form[data-index="0"] [data-field="{}"]'
    field = wait(admin, lambda d: d.find_element(By.CSS_SELECTOR, form.format("threshold")), what="the settings form")
    top_k = admin.find_element(By.CSS_SELECTOR, '.section-form[data-section="vocabulary"] [data-field="top_k"]')
    assert admin.find_element(By.CSS_SELECTOR, '.section-form[data-section="scoring"] select[data-field="mode"]')
    field.clear()
    field.send_keys("5")
    top_k.clear()
    top_k.send_keys("99")
    admin.find_element(By.ID, "settings-save").click()
    error = wait(admin, lambda d: d.find_element(By.CSS_SELECTOR, '.field-error[data-key="events[0].threshold"]').text,
                 what="the threshold's error next to its field")
    assert "less than or equal to 1" in error
    assert "less than or equal to 50" in admin.find_element(
        By.CSS_SELECTOR, '.field-error[data-key="vocabulary.top_k"]').text
    admin.execute_script("window.scrollTo(0, 0)")
    shot(admin, "settings")
    field.clear()
    field.send_keys("0.5")
    top_k.clear()
    top_k.send_keys("4")
    admin.find_element(By.CSS_SELECTOR, form.format("prompts")).send_keys("\na steady tone")
    admin.find_element(By.CSS_SELECTOR, form.format("negatives")).send_keys("a kettle whistling")
    admin.find_element(By.ID, "settings-save").click()
    wait(admin, lambda d: "saved to" in d.find_element(By.ID, "toast").text, what="the settings being saved")
    assert not admin.find_element(By.CSS_SELECTOR, '.field-error[data-key="events[0].threshold"]').text
    text = daemon["config"].read_text()
    assert text.startswith("# the browser test's station\n") and "events:  # what to listen for\n" in text
    saved = yaml.safe_load(text)
    tone = next(e for e in saved["events"] if e["label"] == "tone")
    assert tone["prompts"][-1] == "a steady tone" and tone["negatives"] == ["a kettle whistling"]
    assert saved["vocabulary"]["top_k"] == 4 and saved["vocabulary"]["file"]  # the key not in the form is kept
    with httpx.Client(base_url=daemon["url"], headers={"Authorization": f"Bearer {VIEWER}"}) as api:
        running = next(e for e in api.get("/api/settings").json()["events"] if e["label"] == "tone")
        assert running["threshold"] == 0.5 and running["negatives"] == ["a kettle whistling"]
        assert running["prompts"][-1] == "a steady tone"
        deadline = time.monotonic() + 30  # applied live: later windows name four sounds, not two
        while len(api.get("/api/live", params={"stream": "garden"}).json()["streams"][0]["sounds_like"]) != 4:
            assert time.monotonic() < deadline, "later windows did not follow vocabulary.top_k"
            time.sleep(0.5)
    check_an_example_is_uploaded(daemon, admin)


def check_an_example_is_uploaded(daemon, admin) -> None:
    """An audio file chosen in the event's examples field is uploaded at once, listed as new, and after Apply
    listed by the running config and the YAML file, stored in the examples folder next to it."""
    from selenium.webdriver.common.by import By

    box = '.event-form[data-index="0"] '
    sound = write_tone_scene(daemon["config"].parent / "tone-sample.wav", seconds=2.0, tone_at=(0.0, 2.0))
    admin.find_element(By.CSS_SELECTOR, box + "input.example-upload").send_keys(str(sound))
    item = wait(admin, lambda d: d.find_element(By.CSS_SELECTOR, box + "li.example"), what="the uploaded example")
    assert "new: kept on Apply" in item.text and "2.0 s" in item.text
    admin.find_element(By.ID, "settings-save").click()
    # after the save the form is drawn again from the running config: the example is listed, no longer "new"
    item = wait(admin, lambda d: next((li for li in d.find_elements(By.CSS_SELECTOR, box + "li.example")
                                       if "new" not in li.text), None), what="the saved example")
    assert "saved to" in admin.find_element(By.ID, "toast").text
    name = item.find_element(By.CSS_SELECTOR, ".example-name").text
    assert name.endswith("_tone-sample.wav") and "2.0 s" in item.text
    admin.execute_script("arguments[0].closest('.event-form').scrollIntoView()", item)
    shot(admin, "settings-examples")
    tone = next(e for e in yaml.safe_load(daemon["config"].read_text())["events"] if e["label"] == "tone")
    assert tone["examples"] == [f"examples/tone/{name}"]
    assert (daemon["config"].parent / "examples" / "tone" / name).read_bytes() == sound.read_bytes()


def test_a_viewer_cannot_review(daemon):
    from selenium.webdriver.common.by import By

    driver = chromium(390, 844)  # a phone
    try:
        driver.get(daemon["url"] + "/login")
        shot(driver, "login")
        login(driver, daemon["url"], VIEWER)
        wait(driver, lambda d: canvas_drawn(d, "#live-spectrogram"), what="the live view on a phone")
        shot(driver, "phone-live")
        check_listening(driver)  # a viewer may listen
        driver.get(daemon["url"] + "/#/events")
        found = wait(driver, closed_event_row, 60, "an event row")
        found.click()
        button = wait(driver, lambda d: d.find_element(By.ID, "confirm-btn"), what="the review buttons")
        assert not button.is_enabled()
        assert not wait(driver, lambda d: d.find_element(By.ID, "as-example-btn"), what="use as example").is_enabled()
        assert "viewers cannot review" in driver.find_element(By.ID, "review-actions").text
        event_id = driver.current_url.rsplit("/", 1)[1]
        status = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const s = await (await fetch('/api/session')).json();
            const r = await fetch(`/api/events/${arguments[0]}/feedback`, {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf},
                body: JSON.stringify({verdict: 'rejected'})});
            done(r.status);""", event_id)
        assert status == 403
        shot(driver, "phone-event")
        driver.get(daemon["url"] + "/#/settings")  # the example the admin uploaded: listed, read-only
        item = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "li.example"), what="the examples, read-only")
        assert not item.find_element(By.CSS_SELECTOR, ".example-remove").is_enabled()
        assert not driver.find_elements(By.CSS_SELECTOR, "input.example-upload")
    finally:
        driver.quit()
