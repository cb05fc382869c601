"""Finding an event's clip on disk, safely: the path is built from the store, never from the request.

A request names an event id; the clip is looked up among the files the clips sink writes (its name pattern)
in the label's own folder, and whatever is found must be a regular file (not a symlink) whose real path lies
inside the clips folder. So no id, however encoded, can make the server read anything else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streamdetect.sinks.clips import CLIP_NAME
from streamdetect.util.names import safe_name, short_id
from streamdetect.web.context import ClipsPlace

EVENT_ID = re.compile(r"^[0-9a-f]{6,64}$")


@dataclass(frozen=True)
class Clip:
    path: Path
    duration_s: float
    sample_rate: int
    extent_s: tuple[float, float]  # the event's start and end inside the clip


def find_clip(place: ClipsPlace, event: dict) -> Clip | None:
    folder = place.root / safe_name(event["label"])
    if folder.is_symlink() or not folder.is_dir():
        return None
    id8 = short_id(event["id"])
    root = place.root.resolve()
    for entry in os.scandir(folder):
        m = CLIP_NAME.match(entry.name)
        if m is None or m["id"] != id8 or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if not path.resolve().is_relative_to(root):
            continue
        info = sf.info(str(path))
        pre = min(place.pre_roll_s, float(event["start_s"]))
        length = (float(event["end_s"]) - float(event["start_s"])) if event["end_s"] is not None else 0.0
        return Clip(path, float(info.duration), int(info.samplerate), (pre, min(pre + length, float(info.duration))))
    return None


def clip_audio(clip: Clip) -> np.ndarray:
    samples, _ = sf.read(str(clip.path), dtype="float32", always_2d=True)
    return samples.mean(axis=1)
