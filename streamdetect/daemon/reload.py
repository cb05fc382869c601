"""The one reload gate, and SIGHUP reloads asked for from a signal handler and carried out by a thread.

Every front door (SIGHUP, the control API's ``PUT /events``, the dashboard's settings page and playground) applies
a config through ``ReloadGate.apply``: the config is built (a ``ConfigError`` is a REJECTED result with its key
paths), handed to the inference thread, which takes it between two batches, and waited for, bounded. One gate
means one wait, one status mapping and one log line per outcome, and one reload at a time: a change built from
the running config (``PUT /events``) cannot be overwritten by another built from the same stale config.

A signal handler runs in the main thread between two bytecodes, wherever that thread is (joining the feeding
threads, or embedding prompts during start-up). Anything raised there leaves through that code and ends the
process, so the handler only calls ``Reloader.request``, which cannot fail. The ``Reloader`` thread reads and
validates the file through the gate once the running service hands it over (``attach``): a SIGHUP that arrives
while the daemon is still starting is queued and applied as soon as detection runs, never dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from streamdetect.config import Config, ConfigError
from streamdetect.config.gate import Change, ConfigGate, Outcome, ReloadResult

log = logging.getLogger(__name__)


class Ticket(Protocol):
    """What handing a config to the inference thread gives back (``streamdetect.daemon.engine.ReloadTicket``)."""

    done: threading.Event
    error: str | None


class ReloadGate:
    """``ConfigGate`` over ``request`` (the engine's ``request_reload``); ``apply_timeout_s`` bounds each wait."""

    def __init__(self, current: Callable[[], Config], request: Callable[[Config], Ticket],
                 apply_timeout_s: float = 30.0):
        self._current, self._request, self.apply_timeout_s = current, request, apply_timeout_s
        self._one_at_a_time = threading.Lock()
        self._closed = threading.Event()

    def current(self) -> Config:
        return self._current()

    def close(self) -> None:
        """The daemon is stopping: waits end now (STOPPED) and later calls apply nothing."""
        self._closed.set()

    def apply(self, change: Change, who: str) -> ReloadResult:
        with self._one_at_a_time:
            if self._closed.is_set():
                return ReloadResult(Outcome.STOPPED)
            try:
                config = change if isinstance(change, Config) else change(self._current())
            except ConfigError as e:
                log.error("%s: config reload rejected, the running config stays (%d problem(s))", who,
                          len(e.problems))
                for path, message in e.problems:
                    log.error("%s: %s: %s%s", who, e.source, f"{path}: " if path else "", message)
                return ReloadResult(Outcome.REJECTED, problems=tuple(e.problems))
            ticket = self._request(config)
            deadline = time.monotonic() + self.apply_timeout_s
            while not ticket.done.wait(0.1):
                if self._closed.is_set():
                    return ReloadResult(Outcome.STOPPED, config)
                if time.monotonic() >= deadline:
                    log.warning("%s: the new config is not applied after %.0f s; it will be once the inference "
                                "thread gets to it", who, self.apply_timeout_s)
                    threading.Thread(target=self._report_late, args=(ticket, config, who), name="reload-late",
                                     daemon=True).start()
                    return ReloadResult(Outcome.PENDING, config)
            return self._outcome(ticket, config, who)

    def _outcome(self, ticket: Ticket, config: Config, who: str) -> ReloadResult:
        if ticket.error is not None:
            log.error("%s: config reload failed, the running config stays: %s", who, ticket.error)
            return ReloadResult(Outcome.FAILED, config, error=ticket.error)
        log.info("%s: config reload applied: events %s", who, ", ".join(e.label for e in config.events))
        return ReloadResult(Outcome.APPLIED, config)

    def _report_late(self, ticket: Ticket, config: Config, who: str) -> None:
        """A PENDING reload's outcome still reaches the log once the inference thread gets to it."""
        while not ticket.done.wait(0.5):
            if self._closed.is_set():
                return
        self._outcome(ticket, config, who)


class Reloader:
    """Reloads ``load()`` through the attached gate each time ``request()`` is called.

    Requests that arrive while one is being handled fold into one more reload (the file is read again, so the
    newest wins).
    """

    def __init__(self, load: Callable[[], Config], what: str):
        self._load, self._what = load, what
        self._cond = threading.Condition()
        self._pending = 0
        self._gate: ConfigGate | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="config-reload", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a reload; safe to call from a signal handler at any moment, never raises."""
        with self._cond:
            self._pending += 1
            self._cond.notify_all()

    def attach(self, gate: ConfigGate) -> None:
        """The service is running: apply queued and later reloads through ``gate``."""
        with self._cond:
            self._gate = gate
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
                if self._gate is None:
                    log.info("SIGHUP: start-up is not finished; the reload of %s is queued and applied once "
                             "detection runs", self._what)
                    self._cond.wait_for(lambda: self._closed or self._gate is not None)
                    if self._closed:
                        return
                self._pending, gate = 0, self._gate
            assert gate is not None
            log.info("SIGHUP: reloading %s", self._what)
            try:
                gate.apply(lambda _running: self._load(), "SIGHUP")  # the gate logs the outcome
            except Exception:  # noqa: BLE001 - a reload must never end the daemon
                log.exception("SIGHUP: config reload failed; the running config stays")
