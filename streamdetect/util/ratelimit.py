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

    def __call__(self, msg: str, *args: object, key: Hashable = None) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``interval_s`` ago; True when it was logged."""
        with self._lock:
            now, last = self.clock(), self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            suppressed = self._suppressed.pop(key, 0)
            self._last[key] = now
        if suppressed:
            msg, args = msg + " (%d not logged since the last message)", (*args, suppressed)
        self.logger.log(self.level, msg, *args, stacklevel=2)  # the caller's line, not ours
        return True
