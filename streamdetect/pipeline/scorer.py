"""Windows -> scores: the energy gate, the front end and the encoder for a batch of windows, with their time.

The detector's only path to the encoder; tools that want raw scores rather than events reach it through
``Detector.scores``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from streamdetect.embed.encoder.base import AudioEncoder
from streamdetect.embed.frontend import ParallelFrontend
from streamdetect.model.manifest import ModelBundle
from streamdetect.pipeline.gates import quiet
from streamdetect.pipeline.scoring import Scores, gated_scores, score
from streamdetect.pipeline.windows import Window
from streamdetect.prompts.bank import PromptBank


def frontend_threads(configured: int, encoder: AudioEncoder) -> int:
    """``runtime.frontend_threads`` made concrete: 0 gives one thread when the encoder runs on the CPU, and all
    cores but two (for the sources and sinks) when it runs on a GPU, where one thread's ~780 log-mel windows per
    second would be the limit on streams."""
    if configured:
        return configured
    return max(1, (os.cpu_count() or 1) - 2) if encoder.on_gpu else 1


class WindowScorer:
    """The front end and the encoder of one detector, and the seconds spent in each (the run summary's)."""

    def __init__(self, bundle: ModelBundle, encoder: AudioEncoder, threads: int):
        self.bundle, self.encoder = bundle, encoder
        self.frontend = ParallelFrontend(bundle.frontend_params, frontend_threads(threads, encoder))
        self.encoder_seconds = 0.0
        self.frontend_seconds = 0.0

    def scores(self, windows: list[Window], floors: Sequence[float | None], bank: PromptBank, mode: str,
               top_k: int) -> Scores:
        """Scores of a batch; windows quieter than their floor (``floors[i]``, None: no gate) skip the encoder
        and score -1."""
        if any(f is not None for f in floors):
            gated = quiet(windows, floors)
            if gated.any():
                open_windows = [w for w, g in zip(windows, gated, strict=True) if not g]
                return gated_scores(self.ungated(open_windows, bank, mode, top_k) if open_windows else None,
                                    gated, bank.labels)
        return self.ungated(windows, bank, mode, top_k)

    def ungated(self, windows: list[Window], bank: PromptBank, mode: str, top_k: int) -> Scores:
        t0 = time.perf_counter()
        feats = self.frontend([w.samples for w in windows])
        t1 = time.perf_counter()
        embeddings = self.encoder(feats)
        self.frontend_seconds += t1 - t0
        self.encoder_seconds += time.perf_counter() - t1
        return score(embeddings, bank, mode, self.bundle.logit_scale, top_k)
