"""Edits of a running config that arrive as data (the control API's PUT /events, the dashboard's playground):
each returns a new, fully validated ``Config``, so an edit is checked exactly like a config file.
"""

from __future__ import annotations

from typing import Any

from streamdetect.config.loader import ConfigError, parse_config
from streamdetect.config.root import Config


def events_payload(config: Config) -> dict[str, Any]:
    return {"events": [e.model_dump() for e in config.events]}


def replace_events(config: Config, body: Any) -> Config:
    """The running config with its events replaced; raises ``ConfigError`` with key paths on mistakes."""
    events = body.get("events") if isinstance(body, dict) else body
    if not isinstance(events, list):
        raise ConfigError("PUT /events", [("", "expected a JSON list of events (or {\"events\": [...]})")])
    data = config.model_dump(exclude_unset=False)
    data["events"] = events
    return parse_config(data, "PUT /events")
