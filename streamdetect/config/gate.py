"""What applying a config to the running daemon answers, and the gate every front door applies it through.

SIGHUP, the control API's ``PUT /events``, the dashboard's settings page and its playground all hand a new config
to one ``ConfigGate`` (``streamdetect.daemon.reload.ReloadGate``) and get one ``ReloadResult`` back. The types
live here, below both ``web`` and ``daemon``, so the dashboard is handed the gate without importing the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from streamdetect.config.root import Config


class Outcome(str, Enum):
    APPLIED = "applied"  # the inference thread runs the new config
    REJECTED = "rejected"  # the config is invalid (``problems`` says where); nothing changed
    FAILED = "failed"  # valid, but applying it failed (``error``); the previous config keeps running
    PENDING = "pending"  # not applied within the gate's wait; it will be once the inference thread gets to it
    STOPPED = "stopped"  # the daemon is stopping; nothing more is applied


# One status per outcome for every HTTP front door (the control API and the dashboard answer the same).
HTTP_STATUS = {Outcome.APPLIED: 200, Outcome.REJECTED: 400, Outcome.FAILED: 500, Outcome.PENDING: 202,
               Outcome.STOPPED: 503}


@dataclass(frozen=True)
class ReloadResult:
    outcome: Outcome
    config: Config | None = None  # the config asked for (None when it could not be built)
    problems: tuple[tuple[str, str], ...] = ()  # REJECTED: the ConfigError's (key path, message) pairs
    error: str | None = None  # FAILED: why applying failed

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.outcome]

    def problem_list(self) -> list[dict[str, str]]:
        """The problems as the HTTP answers carry them: ``[{"key": ..., "message": ...}]``."""
        return [{"key": key, "message": message} for key, message in self.problems]


# A new config, or a change that builds one from the running config (it may raise ``ConfigError``).
Change = Config | Callable[[Config], Config]


class ConfigGate(Protocol):
    """Applies a config to the running detector, between two batches, and waits (bounded) for the answer."""

    def current(self) -> Config:
        """The config the detector runs now."""
        ...

    def apply(self, change: Change, who: str) -> ReloadResult:
        """Build the config (a ``ConfigError`` becomes REJECTED), apply it and wait; ``who`` prefixes the log."""
        ...
