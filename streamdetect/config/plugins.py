"""Source and sink entries: a ``type`` chosen from the registries and that plugin's own options.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
)

from streamdetect.config.base import Strict
from streamdetect.config.runtime import GateConfig
from streamdetect.config.station import SCHEDULE_DESCRIPTION, check_periods


class PluginConfig(Strict):
    """A source or sink entry: ``type`` picks the plugin, the other keys are its options."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    type: str = Field(min_length=1, description="which plugin: a built-in (listed below) or an entry point's name")
    name: str | None = Field(None, min_length=1, max_length=100, description="stream name in records and topics")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SourceConfig(PluginConfig):
    """A source entry: the plugin's options plus settings the detector applies to that stream."""

    gate: GateConfig | None = Field(None, description="this stream's energy gate (default: the top-level gate)")
    events: list[str] | None = Field(None, min_length=1, description="labels of the events this stream listens "
                                     "for (default: all); streams can share events or have their own")
    schedule: list[str] | None = Field(None, max_length=50, description="when the stream is recorded: "
                                       + SCHEDULE_DESCRIPTION + "; outside it its audio is discarded unheard")

    _periods_parse = field_validator("schedule")(check_periods)
