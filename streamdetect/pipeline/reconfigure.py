"""A config reload applied to one stream's trackers: kept labels keep their state (an active event stays active
under the new threshold), removed labels have their open events closed, new labels start idle; novelty follows
its own settings. Returns the records of what was closed, for the detector to emit."""

from __future__ import annotations

import logging
from collections.abc import Callable

from streamdetect.config import Config, NoveltyConfig
from streamdetect.pipeline.events import EventRecord, EventRules, EventTracker
from streamdetect.pipeline.novelty import NoveltyState
from streamdetect.pipeline.streams import StreamState
from streamdetect.prompts.bank import PromptBank

log = logging.getLogger(__name__)

BankFor = Callable[[Config], PromptBank]  # a reloaded config -> its prompt bank

RESTART_KEYS = ("windows", "runtime", "sources", "source", "sinks", "model", "metrics", "control",
                "embedding_log", "summary", "web")


def warn_restart_only(old: Config, new: Config) -> None:
    """Window, runtime, source and sink settings need a restart: say so for each one that changed."""
    for key in RESTART_KEYS:
        if getattr(new, key) != getattr(old, key):
            log.warning("config reload: %s changed, which takes effect only after a restart", key)


def retrack(stream: StreamState, labels: tuple[str, ...], rules: list[EventRules],
            novelty: NoveltyConfig) -> list[EventRecord]:
    """Give the stream one tracker per new label (keeping those of kept labels); close what goes."""
    wall = stream.wall(stream.seconds)
    old = {t.label: t for t in stream.trackers}
    records: list[EventRecord] = []
    for label in set(old) - set(labels):
        records += old[label].finish(wall)
    stream.trackers = []
    for label, rule in zip(labels, rules, strict=True):
        tracker = old.get(label) or EventTracker(label, rule, stream=stream.name)
        tracker.rules = rule
        stream.trackers.append(tracker)
    if stream.novelty is not None and (not novelty.enabled or novelty.label != stream.novelty.config.label):
        records += stream.novelty.tracker.finish(wall)
        stream.novelty = None
    if novelty.enabled and stream.novelty is None:
        stream.novelty = NoveltyState.create(novelty, stream.name)
    elif novelty.enabled and stream.novelty is not None:
        stream.novelty.reconfigure(novelty)
    return records
