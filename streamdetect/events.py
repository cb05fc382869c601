"""The import path third-party sinks use for ``EventRecord``; the event state machine lives in the pipeline."""

from streamdetect.pipeline.events import (
    EventRecord,
    EventRules,
    EventTracker,
    LabelScore,
    Phase,
    State,
    WindowScore,
)

__all__ = ["EventRecord", "EventRules", "EventTracker", "LabelScore", "Phase", "State", "WindowScore"]
