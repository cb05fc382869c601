"""A whole-call deadline for a blocking call into a library that does its own network I/O (Apprise).

Such a library sets timeouts per socket operation: a server that accepts and then answers one byte per second
never trips a 4 s read timeout and holds the caller for as long as it likes. The call cannot be cancelled from
outside, so it runs in a daemon thread and the caller waits for it at most ``timeout_s``; past that the call is
abandoned (it ends when the library's own timeouts or the server let it) and counted as a failure.

At most one call is in flight per ``ThreadDeadline``: while an abandoned one still runs, the next call fails at
once instead of starting another thread, so a server that stalls every request holds one thread per target, not
one per attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from streamdetect.util.deadline_http import RequestFailed

T = TypeVar("T")


class ThreadDeadline(Generic[T]):
    """Runs ``call()`` in a worker thread named ``name`` and waits for it at most ``timeout_s``; raises
    ``RequestFailed`` (``timed_out``) when it takes longer or when the previous abandoned call is still running.
    An exception raised by the call is raised in the caller. Used from one thread at a time (a sink's worker)."""

    def __init__(self, timeout_s: float, name: str):
        self.timeout_s, self.name = timeout_s, name
        self._abandoned: threading.Thread | None = None  # the last call that ran past its deadline

    @property
    def busy(self) -> bool:
        """Whether an abandoned call still runs."""
        return self._abandoned is not None and self._abandoned.is_alive()

    def __call__(self, call: Callable[[], T]) -> T:
        if self.busy:
            raise RequestFailed(f"the previous call, past its {self.timeout_s:g} s deadline (timeout_s), still "
                                "runs", timed_out=True)
        outcome: list[tuple[bool, object]] = []

        def run() -> None:
            try:
                outcome.append((True, call()))
            except BaseException as e:  # handed to the caller, who decides
                outcome.append((False, e))

        worker = threading.Thread(target=run, name=self.name, daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if not outcome:  # still running (join timed out): leave it, and say so at the next call
            self._abandoned = worker
            raise RequestFailed(f"no answer within {self.timeout_s:g} s (timeout_s)", timed_out=True)
        self._abandoned = None
        ok, value = outcome[0]
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]
