"""SIGHUP reloads: asked for from a signal handler, carried out by a thread of their own.

A signal handler runs in the main thread between two bytecodes, wherever that thread is (joining the feeding
threads, or embedding prompts during start-up). Anything raised there leaves through that code and ends the
process, so the handler only calls ``request``, which cannot fail. The ``Reloader`` thread reads and validates
the file, and hands the new config to the running service once it is ``attach``-ed: a SIGHUP that arrives
while the daemon is still starting is queued and applied as soon as detection runs, never dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from streamdetect.config import Config, ConfigError

log = logging.getLogger(__name__)


class Ticket(Protocol):
    """What applying a reload hands back (``streamdetect.daemon.engine.ReloadTicket``)."""

    done: threading.Event
    error: str | None


class Reloader:
    """Reloads ``load()`` each time ``request()`` is called; results are logged, one line per problem.

    ``apply_timeout_s`` bounds the wait for the inference thread to take the new config. Requests that arrive
    while one is being handled fold into one more reload (the file is read again, so the newest wins).
    """

    def __init__(self, load: Callable[[], Config], what: str, apply_timeout_s: float = 120.0):
        self._load, self._what, self._apply_timeout_s = load, what, apply_timeout_s
        self._cond = threading.Condition()
        self._pending = 0
        self._apply: Callable[[Config], Ticket] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="config-reload", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a reload; safe to call from a signal handler at any moment, never raises."""
        with self._cond:
            self._pending += 1
            self._cond.notify_all()

    def attach(self, apply: Callable[[Config], Ticket]) -> None:
        """The service is running: apply queued and later reloads through ``apply``."""
        with self._cond:
            self._apply = apply
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._pending)
                if self._closed:
                    return
                if self._apply is None:
                    log.info("SIGHUP: start-up is not finished; the reload of %s is queued and applied once "
                             "detection runs", self._what)
                    self._cond.wait_for(lambda: self._closed or self._apply is not None)
                    if self._closed:
                        return
                self._pending, apply = 0, self._apply
            try:
                self._reload(apply)
            except Exception:  # noqa: BLE001 - a reload must never end the daemon
                log.exception("SIGHUP: config reload failed; the running config stays")

    def _reload(self, apply: Callable[[Config], Ticket]) -> None:
        log.info("SIGHUP: reloading %s", self._what)
        try:
            config = self._load()
        except ConfigError as e:
            log.error("SIGHUP: config reload rejected, the running config stays (%d problem(s))", len(e.problems))
            for path, message in e.problems:
                log.error("SIGHUP: %s: %s%s", e.source, f"{path}: " if path else "", message)
            return
        ticket = apply(config)
        deadline = time.monotonic() + self._apply_timeout_s
        while not ticket.done.wait(0.2) and not self._closed and time.monotonic() < deadline:
            pass  # the daemon may stop meanwhile: then there is nothing left to report
        if self._closed and not ticket.done.is_set():
            return
        if not ticket.done.is_set():
            log.warning("SIGHUP: the new config is not applied after %.0f s; it will be once the inference thread "
                        "gets to it", self._apply_timeout_s)
            return
        if ticket.error is not None:
            log.error("SIGHUP: config reload failed, the running config stays: %s", ticket.error)
            return
        log.info("SIGHUP: config reload applied: events %s", ", ".join(e.label for e in config.events))
