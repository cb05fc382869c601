"""Name -> class registries for sources and sinks.

Built-ins are listed explicitly by their registries (so a source checkout works without installation);
third parties add entries through the ``streamdetect.sources`` / ``streamdetect.sinks`` entry-point groups
without touching this package.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)


class UnknownPluginError(KeyError):
    """Raised for a ``type`` that no built-in or entry point provides."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} type {name!r}; known types: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


@dataclass
class Registry:
    """Maps a plugin name to ``module:Class``, loading the class only when it is used."""

    kind: str
    entry_point_group: str
    builtins: dict[str, str]
    _loaded: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(set(self.builtins) | {ep.name for ep in self._entry_points()})

    def get(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        target = self.builtins.get(name)
        if target is not None:
            module, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
        else:
            matches = [ep for ep in self._entry_points() if ep.name == name]
            if not matches:
                raise UnknownPluginError(self.kind, name, self.names())
            cls = matches[0].load()
        self._loaded[name] = cls
        return cls

    def _entry_points(self) -> list[Any]:
        return list(entry_points(group=self.entry_point_group))


# The registry tables live here, below the config, so validating a config never imports a sink or a source
# module until an entry names its type.
SOURCES = Registry(
    kind="source",
    entry_point_group="streamdetect.sources",
    builtins={
        "ffmpeg": "streamdetect.sources.ffmpeg:FfmpegSource",
        "file": "streamdetect.sources.file:FileSource",
        "microphone": "streamdetect.sources.microphone:MicrophoneSource",
    },
)

SINKS = Registry(
    kind="sink",
    entry_point_group="streamdetect.sinks",
    builtins={
        "stdout": "streamdetect.sinks.stdout:StdoutSink",
        "jsonl": "streamdetect.sinks.jsonl:JsonlSink",
        "webhook": "streamdetect.sinks.webhook:WebhookSink",
        "sqlite": "streamdetect.sinks.sqlite:SqliteSink",
        "command": "streamdetect.sinks.command:CommandSink",
        "mqtt": "streamdetect.sinks.mqtt:MqttSink",
        "clips": "streamdetect.sinks.clips:ClipsSink",
        "apprise": "streamdetect.sinks.apprise:AppriseSink",
    },
)
