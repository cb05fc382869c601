"""Novelty: a window unlike every prompt and unlike what this stream usually sounds like.

Each stream keeps a site profile, an exponential moving average of its window embeddings, so the profile
follows slow changes (day and night, a new air conditioner) while a sudden new sound stands out. A window is
novel when its cosine distance to the profile reaches ``novelty.threshold`` and no prompt of any kind (events,
negatives, background, vocabulary) is closer than ``novelty.max_prompt_similarity``: a known sound is reported by
its own event, not as novel. Novelty records go through the same state machine as events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamdetect.config import NoveltyConfig
from streamdetect.pipeline.events import EventRecord, EventRules, EventTracker, LabelScore, WindowScore

NOT_READY = -1.0  # score while the profile warms up or the window was gated: below any threshold


@dataclass
class SiteProfile:
    """Exponential moving average of a stream's window embeddings (per stream, never shared)."""

    half_life_windows: float
    mean: np.ndarray | None = None
    windows: int = 0

    @property
    def alpha(self) -> float:
        return 1.0 - 0.5 ** (1.0 / self.half_life_windows)

    def distance(self, embedding: np.ndarray) -> float:
        """Cosine distance (0 same direction .. 2 opposite) of an embedding to the profile."""
        if self.mean is None:
            raise ValueError("the profile has seen no window yet")
        norm = float(np.linalg.norm(self.mean)) * float(np.linalg.norm(embedding))
        return 1.0 - float(self.mean @ embedding) / max(norm, 1e-12)

    def update(self, embedding: np.ndarray) -> None:
        embedding = np.asarray(embedding, np.float64)
        self.mean = embedding.copy() if self.mean is None else (1 - self.alpha) * self.mean + self.alpha * embedding
        self.windows += 1


def novelty_rules(config: NoveltyConfig) -> EventRules:
    return EventRules(config.threshold, config.hysteresis, config.min_windows, config.cooldown_s)


@dataclass
class NoveltyState:
    """The profile and the novelty tracker of one stream."""

    config: NoveltyConfig
    profile: SiteProfile
    tracker: EventTracker

    @classmethod
    def create(cls, config: NoveltyConfig, stream: str) -> NoveltyState:
        return cls(config, SiteProfile(config.half_life_windows),
                   EventTracker(config.label, novelty_rules(config), stream=stream))

    def reconfigure(self, config: NoveltyConfig) -> None:
        """New settings on reload; the profile is kept (it describes the site, not the config)."""
        self.config = config
        self.profile.half_life_windows = config.half_life_windows
        self.tracker.rules = novelty_rules(config)

    def window(self, start_s: float, end_s: float, embedding: np.ndarray | None, closest: tuple[str, float],
               top: tuple[LabelScore, ...], sounds_like: tuple[LabelScore, ...], wall: float) -> list[EventRecord]:
        """Judge one window against the profile seen so far, then let the window join the profile.

        ``embedding`` None means the window was not encoded (energy gate): it scores below any threshold and
        leaves the profile as it was.
        """
        score, suppressed = NOT_READY, None
        if embedding is not None:
            if self.profile.windows >= self.config.warmup_windows:
                score = self.profile.distance(embedding)
            self.profile.update(embedding)
            prompt, similarity = closest
            if similarity >= self.config.max_prompt_similarity:
                suppressed = prompt
        return self.tracker.update(WindowScore(start_s, end_s, score, suppressed, top, wall, sounds_like=sounds_like))
