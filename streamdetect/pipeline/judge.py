"""One window's scores -> its ``WindowResult``, and the result -> what each event tracker needs to know.

The privacy verdict is made here, once, so the result every listener sees and the records the trackers emit
agree on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamdetect.pipeline.events import EventRules, WindowScore
from streamdetect.pipeline.gates import holds_speech
from streamdetect.pipeline.results import WindowResult
from streamdetect.pipeline.scoring import Scores
from streamdetect.pipeline.streams import StreamState
from streamdetect.pipeline.windows import Window
from streamdetect.prompts.bank import PromptBank


def scored(stream: StreamState, window: Window, scores: Scores, b: int, bank: PromptBank,
           rules: Sequence[EventRules], privacy_threshold: float, store_audio: bool) -> WindowResult:
    """The result of window ``b`` of a scored batch. Nothing derived from speech is kept: a private window
    carries no embedding."""
    gated = scores.gated is not None and bool(scores.gated[b])
    embedding = None if scores.embeddings is None or gated else scores.embeddings[b]
    private = None if bank.privacy is None else holds_speech(embedding, bank.privacy, privacy_threshold)
    row = scores.event[b].copy()
    row.flags.writeable = False  # one array shared by every listener
    return WindowResult(
        stream=stream.name, start_s=window.start_s, end_s=window.end_s, start_sample=window.start_sample,
        end_sample=window.start_sample + window.n_samples, wall=stream.wall(window.end_s), labels=bank.labels,
        scores=row, suppressed_by=tuple(scores.vetoed_by[b]), thresholds=tuple(r.threshold for r in rules),
        top=scores.top(b), sounds_like=scores.sounds_like[b] if scores.sounds_like is not None else (),
        gated=gated, private=private, embedding=None if private else embedding, store_audio=store_audio)


def scheduled_out(stream: StreamState, window: Window, bank: PromptBank, rules: Sequence[EventRules],
                  store_audio: bool) -> WindowResult:
    """The result of a window in which no event is listened for: never encoded, so never known to be free of
    speech (private while the filter is on)."""
    return WindowResult(
        stream=stream.name, start_s=window.start_s, end_s=window.end_s, start_sample=window.start_sample,
        end_sample=window.start_sample + window.n_samples, wall=stream.wall(window.end_s), labels=bank.labels,
        scores=np.zeros(0, np.float32), suppressed_by=(), thresholds=tuple(r.threshold for r in rules),
        private=None if bank.privacy is None else True, store_audio=store_audio, scheduled_out=True)


def tracker_input(result: WindowResult, e: int) -> WindowScore:
    """What event ``e``'s tracker needs of a window; the peak's embedding only where audio may be stored."""
    return WindowScore(result.start_s, result.end_s, float(result.scores[e]), result.suppressed_by[e], result.top,
                       result.wall, embedding=result.embedding if result.store_audio else None,
                       sounds_like=result.sounds_like, private=result.private)
