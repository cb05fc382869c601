"""Feedback on stored events, and Rocchio-style refinement of an event's prompt embedding from it.

``streamdetect feedback`` marks a record of the sqlite store as confirmed or rejected. ``streamdetect refine``
moves each event's prompt ensemble toward the mean embedding of its confirmed peak windows and away from the
rejected ones: ``normalize(e + alpha * mean(confirmed) - beta * mean(rejected))``, with the angle to the plain
ensemble capped, so a handful of clicks cannot turn "dog barking" into something else. Every refinement is a
new version under ``<model>/refinements/<label>/`` (``vN.npy`` + ``vN.json``); the prompt bank applies the
newest one whose prompts still match the config, and ``--undo`` retires the newest version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamdetect.embed.vectors import normalize
from streamdetect.model.manifest import ModelBundle
from streamdetect.prompts.bank import PromptBank
from streamdetect.store import connect, events_matching, marked_records, set_feedback
from streamdetect.util.files import atomic_write
from streamdetect.util.names import safe_name
from streamdetect.util.times import iso_of

log = logging.getLogger(__name__)

VERDICTS = ("confirmed", "rejected")


class FeedbackError(ValueError):
    """Feedback that cannot be recorded or used (unknown id, no store); the message says what to do."""


def mark_feedback(db_path: Path, event_id: str, verdict: str, relabel: str | None = None) -> tuple[str, str]:
    """Mark every record of an event (an id or a unique prefix of at least 6 characters); returns (id, label).

    ``relabel`` (only with ``rejected``): the label the sound really is; refinement counts it as confirmed there.
    """
    if relabel is not None and verdict != "rejected":
        raise FeedbackError("a relabelled event is rejected for its own label: use the verdict rejected")
    if verdict not in VERDICTS:
        raise FeedbackError(f"verdict must be one of {VERDICTS}, found {verdict!r}")
    if not Path(db_path).is_file():
        raise FeedbackError(f"no event database at {db_path} (a `sqlite` sink writes one)")
    if len(event_id) < 6 or not re.fullmatch(r"[0-9a-f]+", event_id):
        raise FeedbackError(f"{event_id!r}: give at least 6 hex characters of an event id (see `streamdetect events`)")
    db = connect(Path(db_path))
    try:
        rows = events_matching(db, event_id)
        if not rows:
            raise FeedbackError(f"no event with id {event_id!r} in {db_path}")
        if len(rows) > 1:
            raise FeedbackError(f"{event_id!r} matches {len(rows)} events; give more of the id")
        full_id, label = rows[0]
        if relabel == label:
            raise FeedbackError(f"event {full_id} is already labelled {label!r}")
        set_feedback(db, full_id, verdict, iso_of(time.time()), relabel)
        return full_id, label
    finally:
        db.close()


@dataclass
class Feedback:
    confirmed: np.ndarray  # (n, dim) float32 peak-window embeddings
    rejected: np.ndarray
    without_embedding: int  # marked records that carry no embedding (written before it was stored)
    from_clips: int = 0  # events whose saved clip was embedded instead of using the stored embedding


def feedback_embeddings(db_path: Path, label: str,
                        clip_embedding: Callable[[str], np.ndarray | None] | None = None) -> Feedback:
    """Embeddings of the marked events of one label: the event's saved clip embedded afresh where
    ``clip_embedding(event_id)`` finds one (the whole event, and by the current model), else the stored
    peak-window embedding (the ``end`` record's peak when there is one)."""
    db = connect(Path(db_path))
    try:
        rows = marked_records(db, label)
    finally:
        db.close()
    best: dict[str, tuple[str, bytes | None]] = {}
    for event_id, _phase, verdict, blob in rows:  # the 'end' row sorts last and wins when it has an embedding
        if blob is not None or event_id not in best:
            best[event_id] = (verdict, blob)
    out: dict[str, list[np.ndarray]] = {v: [] for v in VERDICTS}
    missing = from_clips = 0
    for event_id, (verdict, blob) in best.items():
        from_clip = clip_embedding(event_id) if clip_embedding is not None else None
        if from_clip is not None:
            out[verdict].append(np.asarray(from_clip, np.float32))
            from_clips += 1
        elif blob is None:
            missing += 1
        else:
            out[verdict].append(np.frombuffer(blob, dtype=np.float16).astype(np.float32))

    def stack(rows_: list[np.ndarray]) -> np.ndarray:
        return np.stack(rows_) if rows_ else np.zeros((0, 0), np.float32)

    return Feedback(stack(out["confirmed"]), stack(out["rejected"]), missing, from_clips)


@dataclass(frozen=True)
class RefineParams:
    alpha: float = 0.5  # weight of the confirmed mean, in [0, 1]
    beta: float = 0.25  # weight of the rejected mean, in [0, 1]
    max_angle_deg: float = 20.0  # the refined vector stays within this angle of the plain prompt ensemble

    def __post_init__(self) -> None:
        if not (0 <= self.alpha <= 1 and 0 <= self.beta <= 1 and 0 < self.max_angle_deg <= 90):
            raise FeedbackError(f"need 0 <= alpha <= 1, 0 <= beta <= 1, 0 < max angle <= 90; found {self}")


def rocchio(base: np.ndarray, confirmed: np.ndarray, rejected: np.ndarray, params: RefineParams) -> np.ndarray:
    """The refined unit vector; capped at ``max_angle_deg`` from ``base`` (moved along the same great circle)."""
    base = normalize(base.astype(np.float64))
    moved = base.copy()
    if confirmed.size:
        moved += params.alpha * normalize(confirmed.astype(np.float64)).mean(axis=0)
    if rejected.size:
        moved -= params.beta * normalize(rejected.astype(np.float64)).mean(axis=0)
    moved = normalize(moved)
    cap = np.deg2rad(params.max_angle_deg)
    if np.arccos(np.clip(moved @ base, -1.0, 1.0)) > cap:
        direction = normalize(moved - (moved @ base) * base)
        moved = np.cos(cap) * base + np.sin(cap) * direction
    return normalize(moved).astype(np.float32)


def prompt_key(prompts: list[str] | tuple[str, ...], text_key: str) -> str:
    """Identifies the prompt ensemble a refinement was computed from (a changed prompt voids it)."""
    return hashlib.sha256(json.dumps([text_key, list(prompts)]).encode("utf-8")).hexdigest()[:32]


def _legacy_label_dir(label: str) -> str:
    """The folder name versions before ``safe_name`` gave every label (always with a sha256 part). Only looked
    up, never used for a new label, so refinements saved by those versions are still found and extended."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:60] + "-" + hashlib.sha256(label.encode()).hexdigest()[:8]


class RefinementStore:
    """Versioned refinement vectors per label; undone versions are renamed, not deleted, so history stays."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _folder(self, label: str) -> Path:
        """``safe_name(label)``, or the folder an older version made for the label if only that exists."""
        folder, legacy = self.directory / safe_name(label), self.directory / _legacy_label_dir(label)
        return legacy if not folder.is_dir() and legacy.is_dir() else folder

    def _versions(self, label: str, include_undone: bool = False) -> list[int]:
        folder = self._folder(label)
        pattern = r"v(\d+)\.npy(\.undone)?" if include_undone else r"v(\d+)\.npy"
        found = [re.fullmatch(pattern, p.name) for p in folder.glob("v*")] if folder.is_dir() else []
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self, label: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        versions = self._versions(label)
        if not versions:
            return None
        base = self._folder(label) / f"v{versions[-1]}"
        return np.load(base.with_suffix(".npy"), allow_pickle=False), json.loads(base.with_suffix(".json").read_text())

    def save(self, label: str, vector: np.ndarray, meta: dict[str, Any]) -> int:
        folder = self._folder(label)
        folder.mkdir(parents=True, exist_ok=True)
        version = max(self._versions(label, include_undone=True), default=0) + 1
        meta = {**meta, "label": label, "version": version}
        (folder / f"v{version}.json").write_text(json.dumps(meta, indent=2) + "\n")
        # the .npy last: it is what makes a version live
        atomic_write(folder / f"v{version}.npy", lambda fh: np.save(fh, vector.astype(np.float32)))
        return version

    def undo(self, label: str) -> int | None:
        """Retire the newest version; returns the version now in force (None: the plain prompt ensemble)."""
        versions = self._versions(label)
        if not versions:
            raise FeedbackError(f"no refinement of {label!r} to undo in {self.directory}")
        path = self._folder(label) / f"v{versions[-1]}.npy"
        os.replace(path, path.with_name(path.name + ".undone"))
        return versions[-2] if len(versions) > 1 else None


def apply_refinements(bank: PromptBank, prompts: list[list[str]], store: RefinementStore, text_key: str,
                      ) -> PromptBank:
    """The bank with each event's row replaced by its newest refinement, where that matches its prompts."""
    if not store.directory.is_dir():
        return bank
    matrix = bank.events.copy()
    changed = False
    for i, (label, texts) in enumerate(zip(bank.labels, prompts, strict=True)):
        found = store.latest(label)
        if found is None:
            continue
        vector, meta = found
        if meta.get("prompt_key") != prompt_key(texts, text_key) or vector.shape != matrix[i].shape:
            log.warning("refinement v%s of %r was made for other prompts or another model; using the plain "
                        "prompts (run `streamdetect refine` again)", meta.get("version"), label)
            continue
        matrix[i], changed = vector, True
        log.info("event %r: using refined prompt embedding v%s", label, meta.get("version"))
    return replace(bank, events=matrix) if changed else bank


def refinements_dir(bundle: ModelBundle) -> Path:
    """Where a model's refinements live: beside its prompt cache, so they follow the model folder."""
    return bundle.directory / "refinements"


@dataclass(frozen=True)
class Refined:
    """What one refinement run did to one label (``version`` None: no feedback, unchanged)."""

    label: str
    version: int | None = None
    confirmed: int = 0
    rejected: int = 0
    angle_deg: float = 0.0
    without_embedding: int = 0
    from_clips: int = 0


def refine_events(db_path: Path, events: list, base_vectors: np.ndarray, text_key: str, store: RefinementStore,
                  params: RefineParams, clip_embedding: Callable[[str], np.ndarray | None] | None = None,
                  ) -> list[Refined]:
    """Refine every event from its feedback and save a new version per changed label (``streamdetect refine``
    and the dashboard's "refine now"); ``base_vectors[i]`` is event i's plain (unrefined) prompt vector."""
    if not Path(db_path).is_file():
        raise FeedbackError(f"no event database at {db_path} (a `sqlite` sink writes one)")
    done: list[Refined] = []
    for event, base in zip(events, base_vectors, strict=True):
        fb = feedback_embeddings(db_path, event.label, clip_embedding)
        if not fb.confirmed.size and not fb.rejected.size:
            done.append(Refined(event.label, without_embedding=fb.without_embedding))
            continue
        vector = rocchio(base, fb.confirmed, fb.rejected, params)
        angle = float(np.degrees(np.arccos(np.clip(vector @ base, -1, 1))))
        version = store.save(event.label, vector, {
            "prompt_key": prompt_key(event.prompts, text_key), "prompts": list(event.prompts),
            "confirmed": int(fb.confirmed.shape[0]), "rejected": int(fb.rejected.shape[0]),
            "alpha": params.alpha, "beta": params.beta, "max_angle_deg": params.max_angle_deg,
            "angle_deg": round(angle, 3), "time": iso_of(time.time(), "seconds")})
        done.append(Refined(event.label, version, int(fb.confirmed.shape[0]), int(fb.rejected.shape[0]), angle,
                            fb.without_embedding, fb.from_clips))
    return done
