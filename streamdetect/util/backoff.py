"""Capped exponential back-off with jitter, for everything that retries: cameras, microphones, webhooks.

Retrying at once hammers a receiver or device that is down; retrying at a fixed pace makes every source that
failed together (a router reboot takes all cameras) retry in lock-step and fail together again. So each wait
doubles from ``min_s`` up to ``max_s`` and is multiplied by a random factor in [0.5, 1] ("equal jitter": it
spreads the retries, but never shortens a wait below half, so a long outage still means long waits).
"""

from __future__ import annotations

import random


class Backoff:
    """The waits before retry 1, 2, ...: ``next_delay`` counts a failure and says how long to wait, ``reset``
    starts over after a success (or a connection that stayed healthy long enough).

    ``floor_s`` is the shortest wait ever returned (the jitter is applied before it): the ffmpeg source never
    restarts a process faster than ``reconnect_min_s``. ``rng`` can be seeded for tests. A ``max_s`` below
    ``min_s`` caps every wait at ``max_s``.
    """

    def __init__(self, min_s: float, max_s: float, *, floor_s: float = 0.0, rng: random.Random | None = None):
        self.min_s, self.max_s, self.floor_s = min_s, max_s, floor_s
        self.rng = rng if rng is not None else random.Random()
        self.failures = 0

    def delay(self, attempt: int) -> float:
        """The (jittered) wait before retry number ``attempt`` (1, 2, ...), without counting anything."""
        full = min(self.max_s, self.min_s * 2.0 ** min(max(attempt, 1) - 1, 60))
        return max(self.floor_s, full * self.rng.uniform(0.5, 1.0))

    def next_delay(self) -> float:
        """Count one more failure in a row and return the wait before the next try."""
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        """The next failure waits ``min_s`` (jittered) again."""
        self.failures = 0
