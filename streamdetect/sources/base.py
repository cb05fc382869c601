"""What every audio source provides: float32 mono blocks at the model's sample rate, in order."""

from __future__ import annotations

import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import numpy as np
import soxr

from streamdetect.config.plugins import SourceOptions
from streamdetect.util.backoff import Backoff

__all__ = ["AudioSource", "Gap", "Resampler", "SourceError", "SourceOptions", "backoff_delay"]


class SourceError(RuntimeError):
    """A source that cannot be opened or stopped delivering; the message names it and says what to do."""


@dataclass(frozen=True)
class Gap:
    """Audio a live source lost (it was overwritten before it was read), in samples at the model rate."""

    n_samples: int


OptionsT = TypeVar("OptionsT", bound=SourceOptions)


class AudioSource(ABC, Generic[OptionsT]):
    """A named stream of audio. ``live`` sources run until stopped; others end by themselves. ``Options``
    validates the source's keys in the config; ``class MySource(AudioSource[MyOptions])`` types
    ``self.options`` as ``MyOptions``."""

    Options: ClassVar[type[SourceOptions]] = SourceOptions
    live: ClassVar[bool] = False

    def __init__(self, options: OptionsT, sample_rate: int, name: str):
        self.options: OptionsT = options
        self.sample_rate, self.name = sample_rate, name

    @abstractmethod
    def blocks(self, stop: threading.Event) -> Iterator[np.ndarray | Gap]:
        """Yield mono float32 blocks at ``sample_rate`` (or a ``Gap`` for lost audio) until the end or ``stop``."""

    def stats(self) -> dict[str, int]:
        """Counters worth reporting (dropped samples and the like)."""
        return {}


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """The wait before retry number ``attempt``; kept for third-party sources written against this module,
    it is ``streamdetect.util.backoff.Backoff`` (the one back-off every built-in source uses)."""
    return Backoff(min_s, max_s, rng=rng).delay(attempt)


class Resampler:
    """Streaming resampler to the model rate; a no-op when the rates already match."""

    def __init__(self, in_rate: float, out_rate: int):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = None if int(in_rate) == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, "float32", "HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self._stream is None:
            return block
        return self._stream.resample_chunk(block, last=last)
