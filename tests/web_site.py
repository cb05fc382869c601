"""A dashboard app in-process, for the route tests: ``build_app`` over a ``WebContext`` of temporary files (a
sqlite store with three events, a clips folder with one clip, a commented config file), a prompt bank from a fake
text embedder (its vectors land in the prompt cache, so "refine now" never opens a model), the dashboard's own
``TextQueries`` over that cache and embedder for typed queries, and a reload that is applied at once. No daemon,
no model, no port: requests go through Starlette's ``TestClient``."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from starlette.applications import Starlette
from starlette.testclient import TestClient

from streamdetect.config import Config, load_config
from streamdetect.daemon.reload import ReloadGate
from streamdetect.model.manifest import MANIFEST_VERSION, TEXT_ENCODER, TOKENIZER, ModelBundle
from streamdetect.prompts.bank import PromptBank
from streamdetect.prompts.cache import PromptCache
from streamdetect.store import connect, insert_record
from streamdetect.util.ratelimit import TokenBucket
from streamdetect.web.app import TextQueries, build_app
from streamdetect.web.auth import Auth
from streamdetect.web.context import ClipsPlace, WebContext
from streamdetect.web.live import LiveHub

ADMIN, VIEWER = "admin-token-" + "a" * 20, "viewer-token-" + "v" * 20
COMMENT = "# site config: keep this comment"
DIM = 8
RATE = 16_000
CLIP_SECONDS = 4.0
CLIPPED, UNCLIPPED, OPEN = "a1" * 16, "b2" * 16, "c3" * 16  # event ids: with a clip, without, still open


def text_vectors(texts: list[str]) -> np.ndarray:
    """A fixed unit vector per text (a digest of it), standing in for a text encoder."""
    rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], np.uint8).astype(np.float32) - 127.5
            for t in texts]
    out = np.stack(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@dataclass
class Ticket:
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Reloads:
    """The running config, and every config handed over to be applied (applied at once, as a detector would;
    with ``held`` set, its ticket stays open until the test sets ``done`` of ``tickets[-1]``)."""

    def __init__(self, config: Config):
        self.config, self.applied, self.tickets = config, [], []
        self.held = False

    def current(self) -> Config:
        return self.config

    def __call__(self, config: Config) -> Ticket:
        self.config = config
        self.applied.append(config)
        ticket = Ticket()
        self.tickets.append(ticket)
        if not self.held:
            ticket.done.set()
        return ticket


@dataclass
class Site:
    folder: Path
    config_path: Path
    db_path: Path
    clips: Path
    ctx: WebContext
    app: Starlette
    reloads: Reloads
    times: dict[str, str]  # event id -> its start time

    def client(self, token: str | None = None, **kwargs) -> TestClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return TestClient(self.app, headers=headers, **kwargs)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def _record(phase: str, event_id: str, label: str, stream: str, when: datetime, peak: float,
            embedding: np.ndarray | None = None) -> dict:
    end = phase == "end"
    return {"id": event_id, "phase": phase, "label": label, "stream": stream, "start_s": 10.0,
            "end_s": 12.0 if end else None, "peak_score": peak, "peak_time_s": 11.0,
            "time": _iso(when + timedelta(seconds=2) if end else when), "top": '[["tone", 0.5]]',
            "embedding": None if embedding is None else embedding.astype(np.float16).tobytes()}


def write_store(path: Path, now: datetime) -> dict[str, str]:
    """Three events of the last hours: a closed ``tone`` in the garden (with its peak embedding), a closed
    ``tone`` on the porch, and a ``dog`` in the garden that has not ended yet."""
    starts = {CLIPPED: now - timedelta(hours=1), UNCLIPPED: now - timedelta(hours=2), OPEN: now - timedelta(hours=3)}
    db = connect(path)
    try:
        insert_record(db, _record("start", CLIPPED, "tone", "garden", starts[CLIPPED], 0.42))
        insert_record(db, _record("end", CLIPPED, "tone", "garden", starts[CLIPPED], 0.61,
                                  text_vectors(["a steady tone"])[0]))
        insert_record(db, _record("start", UNCLIPPED, "tone", "porch", starts[UNCLIPPED], 0.35))
        insert_record(db, _record("end", UNCLIPPED, "tone", "porch", starts[UNCLIPPED], 0.38))
        insert_record(db, _record("start", OPEN, "dog", "garden", starts[OPEN], 0.5))
    finally:
        db.close()
    return {k: _iso(v) for k, v in starts.items()}


def write_clip(clips: Path, event_id: str, when: str) -> Path:
    """The clips sink's file for the event (its name pattern), a 3 kHz tone in noise."""
    stamp = datetime.fromisoformat(when).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = clips / "tone" / f"{stamp}_garden_0.610_{event_id[:8]}.flac"
    path.parent.mkdir(parents=True)
    t = np.arange(int(CLIP_SECONDS * RATE)) / RATE
    audio = 0.3 * np.sin(2 * np.pi * 3000 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, audio.astype(np.float32), RATE, format="FLAC")
    return path


def write_config(folder: Path, model: Path, login: str) -> Path:
    data = {"model": str(model), "prompt_cache": str(folder / "prompt_cache"),
            "events": [{"label": "tone", "prompts": ["a steady tone", "a beep"], "threshold": 0.3},
                       {"label": "dog", "prompts": ["a dog barking"], "threshold": 0.4}],
            "sinks": [{"type": "sqlite", "path": str(folder / "events.db")},
                      {"type": "clips", "dir": str(folder / "clips"), "pre_roll_s": 1.0}],
            "web": {"port": 0, "login": login, "max_body_kb": 16, "max_upload_kb": 64}}
    path = folder / "site.yaml"
    text = yaml.safe_dump(data, sort_keys=False).replace("events:\n", "events:  # what to listen for\n")
    path.write_text(f"{COMMENT}\n{text}")
    return path


def fake_bundle(folder: Path) -> ModelBundle:
    """A model folder's manifest, enough for what the routes read of it (its text key and dimension)."""
    folder.mkdir(parents=True)
    return ModelBundle(folder, {"format_version": MANIFEST_VERSION, "embedding_dim": DIM, "sample_rate": RATE,
                                "frontend": {}, "files": {TEXT_ENCODER: "t" * 64, TOKENIZER: "k" * 64}})


def build_site(folder: Path, login: str = "always", guesses: TokenBucket | None = None) -> Site:
    now = datetime.now(timezone.utc)
    bundle = fake_bundle(folder / "model")
    config_path = write_config(folder, bundle.directory, login)
    config = load_config(config_path)
    times = write_store(folder / "events.db", now)
    write_clip(folder / "clips", CLIPPED, times[CLIPPED])
    cache = PromptCache(folder / "prompt_cache", bundle.text_key, DIM)
    bank = PromptBank.build(config.events, cache, lambda: text_vectors)
    reloads = Reloads(config)
    hub = LiveHub(config.web.history_s, config.web.stale_after_s, max_clients=2)
    ctx = WebContext(config.web, reloads.current, lambda: bank, ReloadGate(reloads.current, reloads, 5.0), bundle,
                     hub, TextQueries(cache, lambda: text_vectors), folder / "events.db",
                     ClipsPlace(folder / "clips", 1.0), config_path)
    app = build_app(ctx, Auth(config.web, {"admin": ADMIN, "viewer": VIEWER}, guesses))
    return Site(folder, config_path, folder / "events.db", folder / "clips", ctx, app, reloads, times)
