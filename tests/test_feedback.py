"""Feedback on stored events and the Rocchio refinement of prompt embeddings (versioned, undoable)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, write_config, write_tone_scene

from streamdetect.config import parse_config
from streamdetect.embed.vectors import normalize
from streamdetect.model.manifest import ModelBundle
from streamdetect.prompts.assemble import prompt_bank_for
from streamdetect.prompts.refine import (
    FeedbackError,
    RefinementStore,
    RefineParams,
    feedback_embeddings,
    mark_feedback,
    prompt_key,
    refinements_dir,
    rocchio,
)
from streamdetect.store import connect


@pytest.fixture
def own_model(tiny_model, tmp_path):
    """A private copy of the tiny model: refinements are written into the model directory."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def unit(rng, n, dim=16):
    return normalize(rng.standard_normal((n, dim))).astype(np.float32)


def test_rocchio_moves_toward_confirmed_and_away_from_rejected_within_the_cap():
    rng = np.random.default_rng(1)
    base, confirmed, rejected = unit(rng, 1)[0], unit(rng, 5), unit(rng, 5)
    new = rocchio(base, confirmed, rejected, RefineParams(alpha=0.5, beta=0.5, max_angle_deg=90))
    c_mean, r_mean = normalize(confirmed.mean(0)), normalize(rejected.mean(0))
    assert new @ c_mean > base @ c_mean
    assert new @ r_mean < base @ r_mean
    assert abs(np.linalg.norm(new) - 1) < 1e-5
    capped = rocchio(base, confirmed, rejected, RefineParams(alpha=1.0, beta=1.0, max_angle_deg=5))
    assert np.degrees(np.arccos(np.clip(capped @ base, -1, 1))) == pytest.approx(5.0, abs=1e-3)
    assert capped @ c_mean > base @ c_mean  # the cap shortens the move, it does not change its direction
    assert np.allclose(rocchio(base, np.zeros((0, 0)), np.zeros((0, 0)), RefineParams()), base, atol=1e-6)
    with pytest.raises(FeedbackError):
        RefineParams(alpha=2.0)


def test_bank_uses_the_newest_matching_refinement_and_undo_restores_the_exact_matrix(own_model, tmp_path):
    bundle = ModelBundle.load(own_model)
    events = parse_config({"events": [{"label": "dog", "prompts": ["a dog barking"], "threshold": 0.1},
                                      {"label": "rain", "prompts": ["rain"], "threshold": 0.1}]}).events
    store = RefinementStore(refinements_dir(bundle))
    m0 = prompt_bank_for(bundle, events, tmp_path / "cache").events
    rng = np.random.default_rng(0)
    key = prompt_key(["a dog barking"], bundle.text_key)
    v1 = unit(rng, 1, m0.shape[1])[0]
    assert store.save("dog", v1, {"prompt_key": key}) == 1
    m1 = prompt_bank_for(bundle, events, tmp_path / "cache").events
    assert np.array_equal(m1[0], v1) and np.array_equal(m1[1], m0[1])
    v2 = unit(rng, 1, m0.shape[1])[0]
    assert store.save("dog", v2, {"prompt_key": key}) == 2
    assert np.array_equal(prompt_bank_for(bundle, events, tmp_path / "cache").events[0], v2)
    assert store.undo("dog") == 1
    assert np.array_equal(prompt_bank_for(bundle, events, tmp_path / "cache").events, m1)
    assert store.undo("dog") is None
    assert np.array_equal(prompt_bank_for(bundle, events, tmp_path / "cache").events, m0)
    with pytest.raises(FeedbackError, match="no refinement"):
        store.undo("dog")
    assert store.save("dog", v2, {"prompt_key": key}) == 3  # numbers are never reused
    edited = parse_config({"events": [{"label": "dog", "prompts": ["a big dog barking"], "threshold": 0.1},
                                      {"label": "rain", "prompts": ["rain"], "threshold": 0.1}]}).events
    plain = prompt_bank_for(bundle, edited, tmp_path / "cache", refined=False).events
    assert np.array_equal(prompt_bank_for(bundle, edited, tmp_path / "cache").events, plain)  # stale: ignored


def test_old_database_gets_the_new_columns_and_marks_without_embedding(tmp_path):
    db_path = tmp_path / "old.db"
    old = sqlite3.connect(db_path)
    old.executescript("""CREATE TABLE records (id TEXT NOT NULL, phase TEXT NOT NULL, label TEXT NOT NULL,
        stream TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL, peak_score REAL NOT NULL,
        peak_time_s REAL NOT NULL, time TEXT NOT NULL, top TEXT NOT NULL, PRIMARY KEY (id, phase));
        INSERT INTO records VALUES ('abcdef0123', 'end', 'dog', 's', 0, 3, 0.5, 1.5, '2026-01-01T00:00:00', '[]');""")
    old.commit()
    old.close()
    connect(db_path).close()
    columns = {r[1] for r in sqlite3.connect(db_path).execute("PRAGMA table_info(records)")}
    assert {"embedding", "feedback", "feedback_time"} <= columns
    assert mark_feedback(db_path, "abcdef", "confirmed") == ("abcdef0123", "dog")
    fb = feedback_embeddings(db_path, "dog")
    assert fb.without_embedding == 1 and fb.confirmed.size == 0
    with pytest.raises(FeedbackError, match="no event"):
        mark_feedback(db_path, "ffffff", "rejected")
    with pytest.raises(FeedbackError, match="6 hex"):
        mark_feedback(db_path, "ab%", "rejected")


def test_cli_feedback_refine_and_undo_on_recorded_events(own_model, tmp_path):
    tiny_model = own_model
    tone = write_tone_scene(tmp_path / "tone.wav", seconds=6.0, tone_at=(0.0, 6.0))
    noise = write_tone_scene(tmp_path / "noise.wav", seconds=6.0, tone_at=(10.0, 10.0), seed=3)
    db, out = tmp_path / "events.db", tmp_path / "out.jsonl"
    cache = tmp_path / "cache"
    cfg = write_config(tmp_path / "c.yaml", tiny_model, [
        {"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0}],
        sinks=[{"type": "sqlite", "path": str(db)}, {"type": "jsonl", "path": str(out)}], prompt_cache=str(cache))
    for wav in (tone, noise):
        result = run_cli("run", "--config", str(cfg), "--input", str(wav))
        assert result.returncode == 0, result.stderr
    assert "embedding" not in out.read_text()  # the JSON records (webhooks, MQTT ...) do not carry it
    rows = sqlite3.connect(db).execute("SELECT id, stream, embedding FROM records WHERE phase = 'end'").fetchall()
    ids = {stream: event_id for event_id, stream, _ in rows}
    stored = {stream: np.frombuffer(blob, np.float16).astype(np.float32) for _, stream, blob in rows}
    assert set(ids) == {"tone.wav", "noise.wav"}
    assert all(abs(np.linalg.norm(v) - 1) < 1e-2 for v in stored.values())
    bundle = ModelBundle.load(tiny_model)
    config = parse_config({"events": [{"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0}]})
    tone_v, noise_v = normalize(stored["tone.wav"]), normalize(stored["noise.wav"])

    def refine() -> np.ndarray:
        result = run_cli("refine", "--config", str(cfg), "--db", str(db), "--max-angle", "45")
        assert result.returncode == 0, result.stderr
        return prompt_bank_for(bundle, config.events, cache).events[0]

    before = prompt_bank_for(bundle, config.events, cache).events[0]
    assert run_cli("feedback", "--db", str(db), "--event", ids["tone.wav"][:8], "--confirm").returncode == 0
    v1 = refine()  # confirmed only: toward the tone's peak window
    assert v1 @ tone_v > before @ tone_v
    assert run_cli("feedback", "--db", str(db), "--event", ids["noise.wav"], "--reject").returncode == 0
    v2 = refine()  # and now away from the rejected noise window
    assert v2 @ noise_v < v1 @ noise_v
    assert v2 @ (tone_v - noise_v) > v1 @ (tone_v - noise_v) > before @ (tone_v - noise_v)
    meta = json.loads(next(refinements_dir(bundle).glob("dog*/v2.json")).read_text())
    assert meta["confirmed"] == 1 and meta["rejected"] == 1 and meta["alpha"] == 0.5 and meta["version"] == 2
    undo = run_cli("refine", "--config", str(cfg), "--undo", "dog")
    assert undo.returncode == 0 and "now using refinement v1" in undo.stdout
    assert np.array_equal(prompt_bank_for(bundle, config.events, cache).events[0], v1)
    undo = run_cli("refine", "--config", str(cfg), "--undo", "dog")
    assert undo.returncode == 0 and "now using its prompts from the config, unrefined" in undo.stdout
    assert np.array_equal(prompt_bank_for(bundle, config.events, cache).events[0], before)


def test_refine_embeds_saved_clips_when_a_clips_folder_is_given(own_model, tmp_path):
    """With --clips, a marked event's saved clip (the whole event, by the current model) replaces the stored
    peak embedding; an event without a clip falls back to the stored one."""
    from streamdetect.embed.clip import clip_embedding
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.frontend import LogMelFrontend

    tone = write_tone_scene(tmp_path / "tone.wav", seconds=6.0, tone_at=(0.0, 6.0))
    db, clips, cache = tmp_path / "events.db", tmp_path / "clips", tmp_path / "cache"
    events = [{"label": "dog", "prompts": ["a dog barking"], "threshold": -1.0}]
    cfg = write_config(tmp_path / "c.yaml", own_model, events, prompt_cache=str(cache),
                       sinks=[{"type": "sqlite", "path": str(db)}, {"type": "clips", "dir": str(clips)}])
    result = run_cli("run", "--config", str(cfg), "--input", str(tone))
    assert result.returncode == 0, result.stderr
    [event_id] = {r[0] for r in sqlite3.connect(db).execute("SELECT id FROM records")}
    [clip] = list(clips.glob(f"dog/*_{event_id[:8]}.flac"))
    assert run_cli("feedback", "--db", str(db), "--event", event_id, "--confirm").returncode == 0

    bundle = ModelBundle.load(own_model)
    config = parse_config({"events": events})
    base = prompt_bank_for(bundle, config.events, cache, refined=False).events[0]
    from_clip = clip_embedding(clip, LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, RuntimeOptions()))
    refined = run_cli("refine", "--config", str(cfg), "--db", str(db), "--clips", str(clips), "--max-angle", "45")
    assert refined.returncode == 0, refined.stderr
    assert "1 confirmed, 0 rejected, 1 from saved clips" in refined.stdout
    expected = rocchio(base, from_clip[None], np.zeros((0, 0)), RefineParams(max_angle_deg=45))
    np.testing.assert_allclose(prompt_bank_for(bundle, config.events, cache).events[0], expected, atol=1e-5)

    clip.unlink()  # no clip any more: the stored peak embedding is used
    again = run_cli("refine", "--config", str(cfg), "--db", str(db), "--clips", str(clips), "--max-angle", "45")
    assert again.returncode == 0 and "0 from saved clips" in again.stdout
    stored = feedback_embeddings(db, "dog").confirmed
    np.testing.assert_allclose(prompt_bank_for(bundle, config.events, cache).events[0],
                               rocchio(base, stored, np.zeros((0, 0)), RefineParams(max_angle_deg=45)), atol=1e-5)
    missing = run_cli("refine", "--config", str(cfg), "--db", str(db), "--clips", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
