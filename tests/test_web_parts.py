"""The dashboard's parts without a server: the live hub (what a live view is sent), the spectrogram columns,
the YAML round trip of the settings page, the audio examples' folder, and the store's events list."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from helpers import event_record

from streamdetect.config import ConfigError
from streamdetect.config.yamledit import update_yaml
from streamdetect.pipeline.events import LabelScore
from streamdetect.pipeline.results import WindowResult
from streamdetect.store import EventFilter, activity, connect, event_streams, list_events, set_feedback
from streamdetect.web.examples import ExampleError, ExampleFolder, checked_audio, example_id, known_examples
from streamdetect.web.live import LiveHub
from streamdetect.web.settings_form import form_of, merged_data, schema, yaml_sections
from streamdetect.web.spectro import SpectrogramParams, columns

SR = 48_000


def view(stream: str, t: float, scores=(0.1, 0.2), private: bool = False) -> WindowResult:
    return WindowResult(stream, t - 3, t, 0, 3 * SR, t, ("a", "b"), np.array(scores, np.float32), (None, None),
                        (0.15, 0.5), (LabelScore("b", scores[1]),), (LabelScore("dog", 0.3),), False, private,
                        np.ones(4, np.float32))  # an embedding even when private: the hub must still drop it


def test_a_tone_lights_its_own_frequency_band():
    t = np.arange(SR) / SR
    cols = columns(0.5 * np.sin(2 * np.pi * 3000 * t), SR, SpectrogramParams())
    assert cols.shape == (1 + (SR - 1024) // 3000, 64)
    band = int(3000 / (SR / 2) * 64)  # 375 Hz per band
    assert (cols.argmax(axis=1) == band).all() and cols[:, band].min() > 200
    assert columns(np.zeros(500), SR, SpectrogramParams()).shape == (0, 64)


def test_the_hub_sends_each_view_only_what_is_new():
    hub = LiveHub(history_s=60, stale_after_s=5)
    hub.live_audio("garden", 0, np.zeros(SR, np.float32), SR)
    hub.window(view("garden", 1000.0))
    first = hub.delta("garden", 0)
    assert [s["name"] for s in first["streams"]] == ["garden"]
    assert first["streams"][0]["thresholds"] == {"a": pytest.approx(0.15), "b": 0.5}
    assert first["streams"][0]["sounds_like"] == [["dog", pytest.approx(0.3)]]
    assert first["spectrogram"]["frames"] == 16 and first["windows"][0]["scores"] == {"a": 0.1, "b": 0.2}
    again = hub.delta("garden", first["seq"])
    assert again["streams"] == [] and "spectrogram" not in again and again["windows"] == []
    hub.window(view("garden", 1001.0, (0.3, 0.1)))
    later = hub.delta("garden", first["seq"])
    assert [w["scores"]["a"] for w in later["windows"]] == [0.3]
    other = hub.delta("elsewhere", 0)  # an unknown stream: summaries only
    assert "spectrogram" not in other and "windows" not in other


def tone(seconds: float, hz: float = 1000.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def new_columns(hub: LiveHub, stream: str, after: int) -> tuple[int, np.ndarray]:
    import base64

    out = hub.delta(stream, after)
    spec = out.get("spectrogram", {"columns": "", "frames": 0, "bins": 64})
    return out["seq"], np.frombuffer(base64.b64decode(spec["columns"]), np.uint8).reshape(spec["frames"], spec["bins"])


def test_held_audio_waits_for_judgement_and_only_private_windows_are_blank():
    hub = LiveHub(history_s=10)
    hub.live_audio("room", 0, tone(6.0), SR, held=True)
    assert "spectrogram" not in hub.delta("room", 0) and hub.listen("room", 0)[2].size == 0  # nothing judged yet
    seq, shown = 0, []
    for k, private in enumerate((False, True, False, False)):  # 3 s windows every second: the second has speech
        hub.live_privacy("room", k * SR, (k + 3) * SR, private)
        seq, cols = new_columns(hub, "room", seq)  # each push carries at most 2 s: read them as they come
        shown.append(cols)
    end, rate, heard = hub.listen("room", 0)
    # judged so far: every sample before the newest window's start plus one hop; the private window's 1-4 s silent
    assert (end, rate, heard.size) == (4 * SR, SR, 4 * SR)
    assert np.abs(heard[: SR]).max() > 10_000 and not heard[SR:].any()
    cols, hop = np.concatenate(shown), SR // 16
    starts = np.arange(cols.shape[0]) * hop
    assert cols[starts + 1024 <= SR].max(axis=1).min() > 100  # the tone is shown where no window was private
    blank = cols[(starts >= SR) & (starts + 1024 <= 4 * SR)]
    assert len(blank) > 40 and not blank.any()
    hub.window(view("room", 2000.0, private=True))
    assert hub.recent_embeddings()[0] == []


def test_audio_never_judged_is_never_shown():
    hub = LiveHub()
    hub.live_audio("room", 0, tone(1.0), SR, held=True)
    hub.live_audio("room", SR, tone(1.0), SR, held=False)  # the filter was switched off: nothing will judge it
    _, _, heard = hub.listen("room", None, lead_s=5.0)
    assert heard.size == 2 * SR and not heard[:SR].any() and np.abs(heard[SR:]).max() > 10_000


def test_a_detector_with_the_privacy_filter_blanks_what_it_judged_private(tiny_model, tmp_path):
    """The real detector's judgements, computed again from the same scores: the listeners' audio is the source
    with exactly the private windows silenced."""
    import threading

    from helpers import file_windows, split_threshold, write_tone_scene

    from streamdetect.analysis.replay import run_source
    from streamdetect.config import parse_config
    from streamdetect.daemon.build import build_detector
    from streamdetect.model.manifest import ModelBundle
    from streamdetect.pipeline.tap import AudioTap
    from streamdetect.sinks.base import SinkSet
    from streamdetect.sources.file import FileOptions, FileSource

    wav = write_tone_scene(tmp_path / "scene.wav", seconds=8.0, tone_at=(3.0, 5.0))
    bundle = ModelBundle.load(tiny_model)

    def config(threshold):
        return parse_config({"model": str(tiny_model), "runtime": {"device": "cpu"},
                             "events": [{"label": "any", "prompts": ["wind"], "threshold": -1.0}],
                             "privacy": {"enabled": True, "threshold": threshold}})

    probe = build_detector(config(1.0), bundle, SinkSet([]))
    windows = file_windows(wav)
    speech = probe.scores(windows).embeddings @ probe.bank.privacy
    threshold = split_threshold(speech)
    private = [w for w, v in zip(windows, speech, strict=True) if v >= threshold]
    assert 0 < len(private) < len(windows)
    hub = LiveHub(history_s=20)
    detector = build_detector(config(threshold), bundle, SinkSet([]), listeners=[hub])
    run_source(detector, FileSource(FileOptions(path=str(wav), block_s=0.5), bundle.sample_rate), threading.Event(),
               tap=AudioTap(detector.sinks, hub))
    end, rate, heard = hub.listen("scene.wav", 0, lead_s=20)
    import soundfile as sf

    source, _ = sf.read(wav, dtype="float32")
    expected = source.copy()
    for w in private:
        expected[w.start_sample : w.start_sample + w.n_samples] = 0.0
    assert rate == bundle.sample_rate and 0 < end <= source.size and heard.size == end
    np.testing.assert_allclose(heard / 32767.0, expected[:end], atol=1.5 / 32767, rtol=0)
    assert heard.any() and len(private) < len(windows)


def test_a_listener_gets_at_most_real_time_whatever_the_pace_of_the_stream():
    from streamdetect.web.listen import Pacer

    pace = Pacer(SR, burst_s=1.0)
    assert pace.take(np.arange(5 * SR), now=0.0).size == SR  # a file analysed 5x real time: the newest second
    assert pace.take(np.arange(SR), now=0.25).size == SR // 4
    kept = pace.take(np.arange(SR // 8), now=0.5)  # slower than real time: everything, tokens saved
    assert kept.size == SR // 8 and kept[-1] == SR // 8 - 1
    assert pace.take(np.arange(10 * SR), now=100.0).size == SR  # a long pause fills at most one burst


def test_the_hub_stays_bounded():
    hub = LiveHub(history_s=10)
    for i in range(100):
        hub.live_audio("s", i * SR, np.zeros(SR, np.float32), SR)
        hub.window(view("s", 5000.0 + i))
    names, wall, *_ = hub.recent_embeddings()
    assert len(names) == 11 and wall.min() >= 5000.0 + 99 - 10
    out = hub.delta("s", 0)
    assert len(out["windows"]) == 11 and out["spectrogram"]["frames"] == 32  # at most 2 s of columns a push


def test_live_views_are_bounded():
    hub = LiveHub(max_clients=2)
    assert hub.subscribe() and hub.subscribe() and not hub.subscribe()
    hub.unsubscribe(100)
    assert hub.subscribe() and hub.sent_bytes == 100


def test_settings_keep_comments_and_match_events_by_label(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# top comment\nmodel: m  # the model\nevents:\n"
                    "  - label: dog  # barks\n    prompts: [a dog barking]\n    threshold: 0.3\n"
                    "    examples: [dog.wav]\n"
                    "  - label: bird\n    prompts: birdsong\n    threshold: 0.2\n    cooldown_s: 5\n"
                    "  - label: car\n    prompts: [a car]\n    threshold: 0.4\n")
    update_yaml(path, {"events": [{"label": "bird", "prompts": ["birdsong", "chirping"], "threshold": 0.25},
                                  {"label": "car", "prompts": ["a car"], "threshold": 0.4, "min_windows": 2}]},
                {"events": {"cooldown_s", "min_windows"}})
    text = path.read_text()
    assert text.startswith("# top comment\nmodel: m  # the model\n")
    assert "dog" not in text and "examples" not in text  # the removed event took its examples along
    import yaml

    data = yaml.safe_load(text)
    assert data["events"] == [{"label": "bird", "prompts": ["birdsong", "chirping"], "threshold": 0.25},
                              {"label": "car", "prompts": ["a car"], "threshold": 0.4, "min_windows": 2}]


def test_the_settings_form_is_the_schema_and_writes_only_what_changed(tmp_path):
    from streamdetect.config import load_config, parse_config

    fields = schema()
    mode = next(f for f in fields["sections"]["scoring"] if f["key"] == "mode")
    assert mode["kind"] == "choice" and mode["options"] == ["cosine", "softmax"] and mode["description"]
    assert {f["key"]: f["kind"] for f in fields["events"]}["negatives"] == "lines"
    assert next(f for f in fields["sections"]["gate"] if f["key"] == "min_dbfs")["nullable"] is True
    assert next(f for f in fields["sections"]["novelty"] if f["key"] == "enabled")["kind"] == "bool"
    path = tmp_path / "c.yaml"
    path.write_text("# top comment\nevents:  # what to hear\n  - label: dog\n    prompts: [a dog barking]\n"
                    "    threshold: 0.3\nvocabulary:  # names\n  top_k: 2  # two names\n")
    current = load_config(path)
    form = form_of(current, lambda path: {"id": path})
    known = {}.get  # no example ids: this config has no examples
    with pytest.raises(ConfigError) as bad:
        parse_config(merged_data(current, {"events": form["events"], "novelty": {"threshold": 0}}, known), "settings")
    assert [k for k, _ in bad.value.problems] == ["novelty.threshold"]
    with pytest.raises(ConfigError) as refused:
        merged_data(current, {"events": form["events"], "vocabulary": {"file": "/etc/passwd"}}, known)
    assert [k for k, _ in refused.value.problems] == ["vocabulary.file"]
    events = [dict(form["events"][0], negatives=["a fox"], schedule=["05:00-09:00"])]
    new = parse_config(merged_data(current, {"events": events, "scoring": {"mode": "softmax", "background": ["silence"]},
                                             "vocabulary": {"top_k": 4, "template": "This is a sound of {}."},
                                             "gate": {"min_dbfs": None}}, known), "settings")
    sections, managed = yaml_sections(new, current)
    assert set(sections) == {"events", "scoring", "vocabulary"}  # the gate did not change: the file keeps it
    update_yaml(path, sections, managed)
    text = path.read_text()
    assert text.startswith("# top comment\nevents:  # what to hear\n") and "top_k: 4  # two names" in text
    reread = load_config(path)
    assert reread.scoring.mode == "softmax" and reread.vocabulary.top_k == 4
    assert reread.events[0].negatives == ["a fox"] and reread.events[0].schedule == ["05:00-09:00"]
    assert "template" not in text and "hysteresis" not in text  # defaults are not written out


def encoded(fmt: str, seconds: float = 0.5) -> bytes:
    import io

    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(np.arange(int(seconds * 16000)) * 0.2)).astype(np.float32), 16000, format=fmt)
    return out.getvalue()


def test_example_uploads_are_decoded_and_only_our_files_are_ever_removed(tmp_path):
    from streamdetect.config import load_config, parse_config

    for fmt, suffix in (("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")):
        kind, duration = checked_audio(encoded(fmt))
        assert kind == suffix and duration == pytest.approx(0.5, abs=0.06)
    with pytest.raises(ExampleError, match="AIFF audio is not accepted here"):
        checked_audio(encoded("AIFF"))
    with pytest.raises(ExampleError, match="not an audio file"):
        checked_audio(b"<html>no</html>" * 10)
    folder = ExampleFolder(tmp_path / "examples")
    path = folder.store("dog bark", encoded("FLAC"), "../yard recording.flac")
    assert path.parent.parent == tmp_path / "examples" and path.parent.name.startswith("dog_bark-")
    assert path.suffix == ".flac"
    assert path.name.endswith("_yard_recording-" + path.name.rsplit("-", 1)[1])
    assert folder.store("dog bark", encoded("FLAC"), "other.flac") == path  # one sound, one file
    mine = tmp_path / "examples" / path.parent.name / "bark.flac"  # a file the user put there: not ours
    mine.write_bytes(encoded("FLAC", 0.3))
    config = tmp_path / "c.yaml"
    config.write_text(f"events:\n  - label: dog\n    prompts: [a dog]\n    threshold: 0.3\n    examples: [{mine}]\n")
    current = load_config(config)
    known = known_examples(current, folder)
    assert set(known) == {example_id(path), example_id(mine)}
    events = form_of(current, lambda p: {"id": example_id(p)})["events"]
    with pytest.raises(ConfigError) as refused:  # a path is never taken from the form
        merged_data(current, {"events": [dict(events[0], examples=[str(path), "x"])]}, known.get)
    assert [k for k, _ in refused.value.problems] == ["events[0].examples[0]", "events[0].examples[1]"]
    new = parse_config(merged_data(current, {"events": [dict(events[0], examples=[example_id(path)])]}, known.get),
                       "settings")
    sections, managed = yaml_sections(new, current, tmp_path)
    assert sections["events"][0]["examples"] == [f"examples/{path.parent.name}/{path.name}"]
    update_yaml(config, sections, managed)
    assert load_config(config).events[0].examples == [str(path)]
    assert "\n  - label: dog\n    prompts: [a dog]\n" in config.read_text()  # the file's indentation is kept
    assert folder.discard([str(mine), str(path)], {str(path)}) == []  # not ours; still used
    assert mine.exists() and path.exists()
    assert folder.abandoned() == []  # fresh
    os.utime(path, (time.time() - 2 * 86_400,) * 2)
    assert folder.abandoned() == [str(path)]  # ours only, not the user's bark.flac
    assert folder.discard([str(path)], set()) == [path] and not path.exists()


def test_events_list_pages_filters_and_activity(tmp_path):
    db = connect(tmp_path / "e.db")
    from streamdetect.store import insert_record

    for i in range(30):
        for phase in ("start", "end"):
            rec = event_record(phase, id=f"{i:032x}", label="dog" if i % 2 else "bird", peak_score=i / 100,
                               stream=f"mic{i % 3}", time=f"2026-11-24T06:{i:02d}:00.000+00:00")
            row = rec.to_dict() | {"top": "[]", "embedding": None}
            insert_record(db, row)
    set_feedback(db, f"{5:032x}", "rejected", "2026-11-25T00:00:00+00:00")
    page = list_events(db, EventFilter(), 10)
    assert [e["id"] for e in page] == [f"{i:032x}" for i in range(29, 19, -1)]
    assert all(e["end_s"] == e["start_s"] + 3.0 for e in page)
    nxt = list_events(db, EventFilter(before=(page[-1]["time"], page[-1]["id"])), 10)
    assert nxt[0]["id"] == f"{19:032x}"
    assert {e["label"] for e in list_events(db, EventFilter(label="dog"), 100)} == {"dog"}
    assert [e["id"] for e in list_events(db, EventFilter(review="rejected"), 100)] == [f"{5:032x}"]
    assert len(list_events(db, EventFilter(min_score=0.1, max_score=0.12), 100)) == 3
    assert event_streams(db) == (["bird", "dog"], ["mic0", "mic1", "mic2"])
    counts = activity(db, "2026-11-01T00:00:00+00:00", offset_min=60)
    assert sum(n for label, *_rest, n in counts if label == "dog") == 15 - 1  # event 5 was rejected
    assert {(day, hour) for _label, day, hour, _n in counts} == {("2026-11-24", 7)}
    with pytest.raises(ValueError, match="review must be one of"):
        list_events(db, EventFilter(review="maybe"))
