"""Open-set features: softmax scoring against background prompts, audio example prompts, the "sounds like"
vocabulary and novelty. The tiny model's scores mean nothing, so every threshold below is placed between
scores this test computed itself from the model's own embeddings."""

import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import (
    SAMPLE_RATE,
    FailingEncoder,
    make_detector,
    run_cli,
    run_cli_without_torch,
    write_config,
    write_tone_scene,
)

from streamdetect.analysis.replay import analyse_file, score_file
from streamdetect.config import ConfigError, load_config, parse_config
from streamdetect.embed.clip import clip_embedding
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions
from streamdetect.embed.encoder.text import TextEncoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.embed.vectors import normalize
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.windows import Windower
from streamdetect.prompts.assemble import prompt_bank_for
from streamdetect.prompts.examples import ExampleCache
from streamdetect.prompts.vocabulary import vocabulary_names
from streamdetect.sources.file import FileOptions, FileSource

CPU = {"runtime": {"device": "cpu"}}
CPU_RUNTIME = RuntimeOptions(device="cpu")  # what the detectors of these tests run


def run_file(detector, wav, name=None):
    """Records of one file through the detector (in this thread)."""
    stream, records = analyse_file(detector, wav)
    return records


def window_embeddings(model, wav):
    """Every 3 s / 1 s window of a file and its embedding, straight from the front end and the encoder."""
    bundle = ModelBundle.load(model)
    frontend, encoder = LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, CPU_RUNTIME)
    windower, windows = Windower(3.0, 1.0, SAMPLE_RATE), []
    for block in FileSource(FileOptions(path=str(wav)), SAMPLE_RATE).blocks(threading.Event()):
        windows.extend(windower.push(block))
    windows.extend(windower.finish())
    emb = np.concatenate([encoder(frontend([w.samples for w in windows[i : i + 4]]))
                          for i in range(0, len(windows), 4)])
    return windows, emb


def text_embeddings(model, texts):
    return normalize(TextEncoder(ModelBundle.load(model))(list(texts)))


def write_tone(path: Path, seconds: float = 3.0, seed: int = 7) -> Path:
    """The scene's 3 kHz tone over noise of the same level, alone: an example of that sound."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = 0.05 * rng.standard_normal(t.size) + 0.5 * np.sin(2 * np.pi * 3000 * t)
    sf.write(path, x.astype(np.float32), SAMPLE_RATE)
    return path


def tone_windows(windows, tone_at=(4.0, 8.0)):
    """Indices of windows entirely inside / entirely outside the tone."""
    inside = [i for i, w in enumerate(windows) if w.start_s >= tone_at[0] - 1e-9 and w.end_s <= tone_at[1] + 1e-9]
    outside = [i for i, w in enumerate(windows) if w.end_s <= tone_at[0] + 1e-9 or w.start_s >= tone_at[1] - 1e-9]
    return inside, outside


def span_above(windows, scores, threshold):
    """(start, end) of the one run of windows scoring at or above threshold (hysteresis 0, min_windows 1)."""
    above = np.flatnonzero(np.asarray(scores) >= threshold)
    assert above.size and np.all(np.diff(above) == 1), above  # one contiguous run
    return windows[above[0]].start_s, windows[above[-1]].end_s


# ---------------------------------------------------------------- 1. open-set (softmax) scoring


BACKGROUND = ["silence", "wind noise", "room tone"]
EVENTS = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 0.5},
          {"label": "alarm", "prompts": ["smoke alarm beeping", "a beeping alarm"], "threshold": 0.5}]


def test_softmax_mode_is_softmax_of_logit_scaled_cosines_over_events_and_background(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=10.0)
    windows, emb = window_embeddings(tiny_model, wav)
    detector, _ = make_detector(tiny_model, EVENTS, scoring={"mode": "softmax", "background": BACKGROUND})
    got = detector.scores(windows).event

    scale = ModelBundle.load(tiny_model).logit_scale
    assert scale != pytest.approx(1.0)  # the manifest's learned temperature, not a default
    events = np.stack([normalize(text_embeddings(tiny_model, e["prompts"]).mean(axis=0)) for e in EVENTS])
    logits = scale * np.concatenate([emb @ events.T, emb @ text_embeddings(tiny_model, BACKGROUND).T], axis=1)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected[:, :2], rtol=1e-4, atol=1e-6)
    assert np.all(got.sum(axis=1) < 1 - 0.05)  # the background took its share

    cosine, _ = make_detector(tiny_model, [{**e, "threshold": 0.0} for e in EVENTS])
    np.testing.assert_allclose(cosine.scores(windows).event, emb @ events.T, rtol=1e-4, atol=1e-6)


def test_a_window_closest_to_a_background_prompt_fires_in_cosine_mode_but_not_in_softmax_mode(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=12.0)
    windows, emb = window_embeddings(tiny_model, wav)
    dog, water = (emb @ text_embeddings(tiny_model, ["a dog barking", "the sound of water flowing"]).T).T
    inside, outside = tone_windows(windows)
    assert np.all(water > dog)  # every window is closer to the background prompt than to the event
    cos_threshold = float((dog[inside].min() + dog[outside].max()) / 2)
    assert dog[inside].min() > cos_threshold > dog[outside].max()
    event = {"label": "dog", "prompts": ["a dog barking"], "hysteresis": 0.0, "cooldown_s": 0.0}

    cosine, _ = make_detector(tiny_model, [{**event, "threshold": cos_threshold}])
    fired = [r for r in run_file(cosine, wav) if r.phase == "end"]
    assert [(r.start_s, r.end_s) for r in fired] == [span_above(windows, dog, cos_threshold)]

    softmax, _ = make_detector(tiny_model, [{**event, "threshold": 0.5}],
                               scoring={"mode": "softmax", "background": ["the sound of water flowing"]})
    assert np.all(softmax.scores(windows).event < 0.5)
    assert run_file(softmax, wav) == []

    # the same prompts the other way round: the event wins every window and fires in softmax mode
    flipped, _ = make_detector(tiny_model, [{**event, "label": "water", "prompts": ["the sound of water flowing"],
                                             "threshold": 0.5}],
                               scoring={"mode": "softmax", "background": ["a dog barking"]})
    ends = [r for r in run_file(flipped, wav) if r.phase == "end"]
    assert [(r.start_s, r.end_s) for r in ends] == [(0.0, 12.0)]


@pytest.mark.parametrize("scoring, events, key, words", [
    ({"mode": "softmax", "background": ["silence"]}, [{"label": "a", "prompts": ["x"], "threshold": -0.2}],
     "events[0].threshold", ["probability between 0 and 1"]),
    ({"mode": "softmax"}, [{"label": "a", "prompts": ["x"], "threshold": 0.5}], "scoring.background",
     ["single prompt"]),
    ({"background": ["silence"]}, [{"label": "a", "prompts": ["x"], "threshold": 0.2}], "scoring.background",
     ["softmax"]),
    ({"mode": "logits"}, [{"label": "a", "prompts": ["x"], "threshold": 0.2}], "scoring.mode", ["'cosine'"]),
])
def test_scoring_config_mistakes_name_the_key(scoring, events, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config({"events": events, "scoring": scoring}, "cfg.yaml")
    problems = dict(info.value.problems)
    assert key in problems, problems
    assert all(w in problems[key] for w in words), problems[key]


# ---------------------------------------------------------------- 2. audio example prompts


def test_an_event_defined_only_by_an_example_fires_on_that_sound(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=12.0)
    example = write_tone(tmp_path / "tone.wav")
    windows, emb = window_embeddings(tiny_model, wav)
    bundle = ModelBundle.load(tiny_model)
    reference = clip_embedding(example, LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, CPU_RUNTIME))
    similarity = emb @ reference
    inside, outside = tone_windows(windows)
    assert similarity[inside].min() > 0.99 and similarity[inside].min() > similarity[outside].max()
    threshold = float((similarity[inside].min() + similarity[outside].max()) / 2)

    event = {"label": "tone", "examples": [str(example)], "threshold": threshold, "hysteresis": 0.0,
             "cooldown_s": 0.0}
    detector, _ = make_detector(tiny_model, [event], prompt_cache=str(tmp_path / "cache"))
    assert detector.config.events[0].prompts == []
    np.testing.assert_allclose(detector.bank.events[0], reference, atol=1e-5)
    ends = [r for r in run_file(detector, wav) if r.phase == "end"]
    start, end = span_above(windows, similarity, threshold)
    assert start <= 4.0 and end >= 8.0
    assert [(r.label, r.start_s, r.end_s) for r in ends] == [("tone", start, end)]


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0])
def test_example_weight_mixes_text_and_example_as_documented(tiny_model, tmp_path, weight):
    example = write_tone(tmp_path / "tone.wav")
    prompts = ["a beeping alarm", "a high tone"]
    event = {"label": "tone", "prompts": prompts, "examples": [str(example)], "example_weight": weight,
             "threshold": 0.5}
    detector, _ = make_detector(tiny_model, [event], prompt_cache=str(tmp_path / "cache"))
    bundle = ModelBundle.load(tiny_model)
    audio = clip_embedding(example, LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, CPU_RUNTIME))
    text = normalize(text_embeddings(tiny_model, prompts).mean(axis=0))
    expected = normalize((1 - weight) * text + weight * normalize(audio))
    np.testing.assert_allclose(detector.bank.events[0], expected, atol=1e-5)


def test_example_embeddings_are_cached_by_file_content_and_encoder(tiny_model, tmp_path):
    example = write_tone(tmp_path / "tone.wav")
    bundle = ModelBundle.load(tiny_model)
    config = parse_config({"events": [{"label": "t", "examples": [str(example)], "threshold": 0.5}]})
    cache = tmp_path / "cache"
    real = open_audio_encoder(bundle, CPU_RUNTIME)
    first = prompt_bank_for(bundle, config.events, cache, audio_encoder=real)
    stored = list((cache / "examples").rglob("*.npy"))
    assert len(stored) == 1

    # stands in for the same encoder file, and fails if anything is actually encoded
    refusing = FailingEncoder.for_model(tiny_model, file=real.file,
                                        error=AssertionError("the example should have come from the cache"))
    second = prompt_bank_for(bundle, config.events, cache, audio_encoder=refusing)
    assert refusing.calls == 0
    np.testing.assert_array_equal(first.events, second.events)

    write_tone(example, seed=8)  # same name, new audio: the cache must not answer for it
    with pytest.raises(AssertionError, match="from the cache"):
        prompt_bank_for(bundle, config.events, cache, audio_encoder=refusing)
    other = ExampleCache(cache, "0" * 64)  # another encoder file: another cache directory
    assert other.directory != stored[0].parent


def test_example_paths_are_relative_to_the_config_file(tiny_model, tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    write_tone(folder / "tone.wav")
    cfg = write_config(folder / "cfg.yaml", tiny_model, [{"label": "t", "examples": ["tone.wav"], "threshold": 0.5}])
    assert load_config(cfg).events[0].examples == [str(folder / "tone.wav")]
    (folder / "bad.yaml").write_text(cfg.read_text().replace("tone.wav", "missing.wav"))
    with pytest.raises(ConfigError) as info:
        load_config(folder / "bad.yaml")
    problems = dict(info.value.problems)
    assert "missing.wav" in problems["events[0].examples"] and "does not exist" in problems["events[0].examples"]
    with pytest.raises(ConfigError, match="at least one prompt or one example"):
        parse_config({"events": [{"label": "t", "prompts": [], "threshold": 0.5}]})


def test_scan_and_run_use_examples(tiny_model, tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=12.0)
    write_tone(folder / "tone.wav")
    windows, emb = window_embeddings(tiny_model, wav)
    bundle = ModelBundle.load(tiny_model)
    reference = clip_embedding(folder / "tone.wav", LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, CPU_RUNTIME))
    inside, outside = tone_windows(windows)
    threshold = float(((emb @ reference)[inside].min() + (emb @ reference)[outside].max()) / 2)
    cfg = write_config(folder / "cfg.yaml", tiny_model, [
        {"label": "tone", "examples": ["tone.wav"], "threshold": threshold, "hysteresis": 0.0, "cooldown_s": 0.0}],
        sinks=[{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}], prompt_cache=str(tmp_path / "cache"), **CPU)

    table = tmp_path / "scan.csv"
    scan = run_cli("scan", str(wav), "--config", str(cfg), "--csv", str(table), cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["start_s", "end_s", "tone"]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], emb @ reference, atol=1e-4)
    start, end = span_above(windows, emb @ reference, threshold)
    assert scan.stdout.startswith(f"tone: {start:.1f}-{end:.1f} s")

    run = run_cli("run", "--config", str(cfg), "--input", str(wav), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ends = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines() if '"end"' in line]
    assert [(r["start_s"], r["end_s"]) for r in ends] == [(start, end)]


# ---------------------------------------------------------------- 5. "sounds like" and novelty


def test_the_shipped_audioset_vocabulary_has_527_unique_names():
    names = vocabulary_names("audioset")
    path = Path(__file__).resolve().parents[1] / "streamdetect" / "data" / "audioset_labels.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 527 and len(set(lines)) == 527 and names == lines
    assert names[0] == "Speech" and names[74] == "Dog" and names[-1] == "Field recording"
    assert "Smoke detector, smoke alarm" in names


def test_records_carry_the_top_vocabulary_names_of_their_peak_window(tiny_model, tmp_path):
    wav = write_tone_scene(tmp_path / "scene.wav", seconds=10.0)
    windows, emb = window_embeddings(tiny_model, wav)
    events = [{"label": "alarm", "prompts": ["smoke alarm beeping"], "threshold": -1.0, "cooldown_s": 0.0}]
    detector, sink = make_detector(tiny_model, events, vocabulary={"file": "audioset", "top_k": 4},
                                   prompt_cache=str(tmp_path / "cache"))
    records = run_file(detector, wav)
    assert records and all(len(r.sounds_like) == 4 for r in records)

    names = vocabulary_names("audioset")
    vocab = text_embeddings(tiny_model, [f"This is a sound of {n}." for n in names])
    for record in records:
        peak = next(i for i, w in enumerate(windows) if abs((w.start_s + w.end_s) / 2 - record.peak_time_s) < 1e-6)
        cosine = vocab @ emb[peak]
        expected = [names[i] for i in np.argsort(-cosine, kind="stable")[:4]]
        assert [s.label for s in record.sounds_like] == expected
        assert record.sounds_like[0].score == pytest.approx(float(cosine.max()), abs=1e-5)
        assert record.to_dict()["sounds_like"][0] == {"label": expected[0], "score": record.sounds_like[0].score}
    plain, _ = make_detector(tiny_model, events)
    assert all(r.sounds_like == () for r in run_file(plain, wav))  # no vocabulary: the field stays empty


def test_a_vocabulary_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "names.txt").write_text("# my sounds\ndoor\n\nkettle\ndoor\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("events: [{label: a, prompts: [x], threshold: 0.1}]\nvocabulary: {file: names.txt}\n")
    config = load_config(cfg)
    assert vocabulary_names(config.vocabulary.file) == ["door", "kettle"]
    cfg.write_text("events: [{label: a, prompts: [x], threshold: 0.1}]\nvocabulary: {file: nope.txt, top_k: 0}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert {"vocabulary.file", "vocabulary.top_k"} <= {p for p, _ in info.value.problems}


def novelty_scene(path: Path, seconds: float = 50.0, new_at: tuple[float, float] = (40.0, 46.0)) -> Path:
    """A long stretch of steady noise, then a sound the stream has not heard before."""
    return write_tone_scene(path, seconds=seconds, tone_at=new_at)


def novelty_threshold(windows, emb, new_at, warmup):
    """Midpoint between how far steady windows and the new sound's windows are from the steady mean."""
    inside, outside = tone_windows(windows, new_at)
    steady = [i for i in outside if windows[i].end_s <= new_at[0]]
    profile = normalize(emb[steady].mean(axis=0))
    distance = 1 - emb @ profile
    far_steady, near_new = distance[steady[warmup:]].max(), distance[inside].min()
    assert near_new > 10 * far_steady  # the new sound stands out clearly even with random weights
    return float((far_steady + near_new) / 2), inside


def test_novelty_fires_on_a_new_sound_after_steady_background_and_not_before(tiny_model, tmp_path):
    new_at = (40.0, 46.0)
    wav = novelty_scene(tmp_path / "scene.wav", new_at=new_at)
    windows, emb = window_embeddings(tiny_model, wav)
    threshold, inside = novelty_threshold(windows, emb, new_at, warmup=10)
    novelty = {"enabled": True, "threshold": threshold, "max_prompt_similarity": 0.9, "half_life_windows": 100,
               "warmup_windows": 10, "hysteresis": 0.0, "cooldown_s": 0.0}
    events = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 1.0}]
    detector, _ = make_detector(tiny_model, events, novelty=novelty)
    records = run_file(detector, wav)
    assert {r.label for r in records} == {"novelty"}
    starts = [r for r in records if r.phase == "start"]
    assert len(starts) == 1 and new_at[0] - 3.0 < starts[0].start_s <= windows[inside[0]].start_s
    end = next(r for r in records if r.phase == "end")
    assert windows[inside[-1]].end_s <= end.end_s < new_at[1] + 3.0
    assert end.peak_score >= threshold
    again, _ = make_detector(tiny_model, events, novelty=novelty)
    assert score_file(again, wav).events == []  # evaluate / calibrate score configured events only

    # without novelty, or with the sound known as an event (an example of it), nothing novel is reported
    plain, _ = make_detector(tiny_model, events)
    assert run_file(plain, wav) == []
    example = write_tone(tmp_path / "tone.wav")
    known, _ = make_detector(tiny_model, [{"label": "tone", "examples": [str(example)], "threshold": 1.0}],
                             novelty={**novelty, "max_prompt_similarity": 0.99},
                             prompt_cache=str(tmp_path / "cache"))
    similarity = emb @ known.bank.events[0]
    assert similarity[inside].min() > 0.99 > similarity[: inside[0] - 3].max()  # only the tone is that close
    assert run_file(known, wav) == []


def test_each_stream_keeps_its_own_site_profile(tiny_model, tmp_path):
    new_at = (40.0, 46.0)
    wav = novelty_scene(tmp_path / "scene.wav", new_at=new_at)
    quiet = write_tone_scene(tmp_path / "quiet.wav", seconds=50.0, tone_at=(0.0, 0.0))
    windows, emb = window_embeddings(tiny_model, wav)
    threshold, _ = novelty_threshold(windows, emb, new_at, warmup=10)
    novelty = {"enabled": True, "threshold": threshold, "max_prompt_similarity": 0.9, "half_life_windows": 100,
               "warmup_windows": 10}
    events = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 1.0}]
    one, _ = make_detector(tiny_model, events, novelty=novelty)
    two, _ = make_detector(tiny_model, events, novelty=novelty)
    assert {r.label for r in run_file(one, wav)} == {"novelty"}
    assert run_file(two, quiet) == []  # the other detector's profile and events were not shared
    assert run_file(one, quiet) == []  # a second stream of the same detector starts its own profile
    profiles = [s.novelty.profile for s in one.streams]
    assert len(profiles) == 2 and profiles[0] is not profiles[1] and profiles[1].windows == 48


def test_novelty_config_is_checked():
    with pytest.raises(ConfigError) as info:
        parse_config({"events": [{"label": "novelty", "prompts": ["x"], "threshold": 0.1}],
                      "novelty": {"enabled": True, "threshold": 0, "half_life_windows": 0.5}})
    keys = {p for p, _ in info.value.problems}
    assert {"novelty.threshold", "novelty.half_life_windows"} <= keys
    with pytest.raises(ConfigError, match="also an event label"):
        parse_config({"events": [{"label": "novelty", "prompts": ["x"], "threshold": 0.1}],
                      "novelty": {"enabled": True}})
    config = parse_config({"events": [{"label": "a", "prompts": ["x"], "threshold": 0.1}],
                           "novelty": {"enabled": True}, "sinks": [{"type": "stdout", "labels": ["novelty"]}]})
    assert config.novelty.label == "novelty"


def test_every_feature_together_on_the_run_path_without_torch(tiny_model, tmp_path):
    import sqlite3

    wav = write_tone_scene(tmp_path / "t.wav", seconds=6.0)
    write_tone(tmp_path / "tone.wav")
    out, db = tmp_path / "o.jsonl", tmp_path / "e.db"
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model, [
        {"label": "tone", "examples": ["tone.wav"], "prompts": ["a beeping alarm"], "example_weight": 0.9,
         "threshold": 0.5}],
        sinks=[{"type": "jsonl", "path": str(out)}, {"type": "sqlite", "path": str(db)}, {"type": "stdout"}],
        scoring={"mode": "softmax", "background": BACKGROUND}, vocabulary={"file": "audioset", "top_k": 2},
        novelty={"enabled": True, "warmup_windows": 2}, prompt_cache=str(tmp_path / "cache"))
    result = run_cli_without_torch("run", "--config", str(cfg), "--input", str(wav))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["label"], r["phase"]) for r in records] == [("tone", "start"), ("tone", "end")]
    assert all(len(r["sounds_like"]) == 2 and 0.5 <= r["peak_score"] <= 1.0 for r in records)
    assert "sounds like: " in result.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 2


def test_reload_switches_scoring_vocabulary_and_novelty(tiny_model, tmp_path):
    events = [{"label": "dog", "prompts": ["a dog barking"], "threshold": 0.3}]
    detector, _ = make_detector(tiny_model, events, prompt_cache=str(tmp_path / "cache"))
    stream = detector.open_stream("s", live=True)
    assert stream.novelty is None and detector.bank.vocabulary is None
    new = parse_config({"model": str(tiny_model), "events": events, **CPU, "prompt_cache": str(tmp_path / "cache"),
                        "scoring": {"mode": "softmax", "background": ["silence"]},
                        "vocabulary": {"file": "audioset"}, "novelty": {"enabled": True, "threshold": 0.5}})
    detector.reload(new)
    assert stream.novelty is not None and stream.novelty.tracker.rules.threshold == 0.5
    assert detector.bank.background_texts == ("silence",) and len(detector.bank.vocabulary_names) == 527
    detector.reload(new.model_copy(update={"novelty": new.novelty.model_copy(update={"enabled": False})}))
    assert stream.novelty is None
