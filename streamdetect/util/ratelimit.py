"""A log line that repeats at most once per interval, saying how many repeats it left out.

A failure that repeats with every record or window (a receiver down for an hour, a full disk, a machine that
cannot keep up) must still be seen at once, but must not bury the log under one line per occurrence and hide
everything else. Counting goes on elsewhere (metrics, ``failures`` counters); this only decides what is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable


class RateLimitedLog:
    """Logs the first occurrence of each ``key`` at once, then at most one line per ``interval_s`` per key;
    a line after suppressed ones ends with "(N not logged since the last message)". Keys are independent, so
    one noisy sink does not mute another. Thread-safe; ``clock`` is injectable for tests.
    """

    def __init__(self, logger: logging.Logger, interval_s: float, level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic):
        self.logger, self.interval_s, self.level, self.clock = logger, interval_s, level, clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable = None) -> int | None:
        """Whether a line for ``key`` may go out now: ``None`` if not (it is counted as left out), else how many
        were left out since the last one. For lines written by someone else (a library's logger, through a
        ``logging.Filter``)."""
        with self._lock:
            now, last = self.clock(), self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            if len(self._last) >= 10_000:  # keys taken from messages: bound them
                self._last.clear()
            self._last[key] = now
            return self._suppressed.pop(key, 0)

    def __call__(self, msg: str, *args: object, key: Hashable = None) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``interval_s`` ago; True when it was logged."""
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        if suppressed:
            msg, args = msg + " (%d not logged since the last message)", (*args, suppressed)
        self.logger.log(self.level, msg, *args, stacklevel=2)  # the caller's line, not ours
        return True


class OutageLog:
    """One line when a failure begins and one when it ends, none for the attempts in between.

    A spool that cannot be written, or a receiver that is away, fails on every retry for as long as the cause
    lasts; a line per retry buried the log (199 lines in 20 s on a full disk). The first failure is logged at
    ``level`` and the end of the outage at INFO with the number of failed attempts; ``failing`` says whether
    one is under way. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.ERROR):
        self.logger, self.level = logger, level
        self.failures = 0  # in the current outage
        self._lock = threading.Lock()

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, msg: str, *args: object) -> bool:
        """Count a failed attempt; log ``msg % args`` only if it begins an outage (then True)."""
        with self._lock:
            self.failures += 1
            first = self.failures == 1
        if first:
            self.logger.log(self.level, msg, *args, stacklevel=2)
        return first

    def recovered(self, msg: str, *args: object) -> bool:
        """An attempt succeeded: log ``msg % args`` (with the count of failed attempts) if it ends an outage."""
        with self._lock:
            failures, self.failures = self.failures, 0
        if failures:
            self.logger.info(msg + " (after %d failed attempt(s))", *args, failures, stacklevel=2)
        return failures > 0


class TokenBucket:
    """At most ``burst`` takes at once and ``rate_per_s`` a second after that, for every caller together.

    Shared by all the connections it guards, so a limit cannot be multiplied by opening more of them (a sleep
    per attempt slows one connection only: 256 of them made 241 login guesses a second). A caller takes a token
    before the work it bounds and may hand it back when the work turned out not to count. Thread-safe; ``clock``
    is injectable for tests.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate_per_s > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s, self.burst, self.clock = rate_per_s, burst, clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def _fill(self) -> None:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def take(self) -> float:
        """0.0 when a token was taken; else the seconds until the next one (and nothing is taken)."""
        with self._lock:
            self._fill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate_per_s

    def give_back(self) -> None:
        """Return a token taken for work that did not count (never above ``burst``)."""
        with self._lock:
            self._fill()
            self._tokens = min(float(self.burst), self._tokens + 1.0)
