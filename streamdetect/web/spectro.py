"""Spectrogram columns for the browser: power in dB on a linear frequency axis, quantised to one byte per bin.

The live view and the clip views draw the same columns on a canvas, so one function computes them, from the
one display STFT (``util.stft``, dB relative to a full-scale sine). A byte per
bin keeps a live view at about a kilobyte per second per stream.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from streamdetect.util.stft import Stft, decibels

FLOOR_DB, CEIL_DB = -100.0, 0.0


@dataclass(frozen=True)
class SpectrogramParams:
    n_fft: int = 1024
    n_bins: int = 64  # n_fft / 2 bins averaged into this many bands
    columns_per_s: float = 16.0


def hop_samples(params: SpectrogramParams, sample_rate: int) -> int:
    return max(1, int(round(sample_rate / params.columns_per_s)))


def stft(params: SpectrogramParams, sample_rate: int) -> Stft:
    """The streaming transform behind ``columns``: one per live stream, so its columns continue across blocks."""
    return Stft(params.n_fft, hop_samples(params, sample_rate))


def quantise(power: np.ndarray, n_bins: int) -> np.ndarray:
    """(frames, n_bins) uint8 levels of ``Stft`` power frames: the Nyquist bin dropped, the rest averaged into
    ``n_bins`` bands, ``FLOOR_DB``..``CEIL_DB`` mapped onto 0..255."""
    bands = power[:, :-1].reshape(power.shape[0], n_bins, (power.shape[1] - 1) // n_bins).mean(axis=2)
    return np.clip((decibels(bands) - FLOOR_DB) / (CEIL_DB - FLOOR_DB) * 255, 0, 255).astype(np.uint8)


def columns(samples: np.ndarray, sample_rate: int, params: SpectrogramParams) -> np.ndarray:
    """(frames, n_bins) uint8 levels of every full frame of ``samples`` taken every hop (frames start at 0)."""
    return quantise(stft(params, sample_rate).push(samples), params.n_bins)


def encode(cols: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(cols, np.uint8).tobytes()).decode("ascii")


def payload(samples: np.ndarray, sample_rate: int, params: SpectrogramParams, max_columns: int = 4000) -> dict:
    """A whole clip's spectrogram as JSON, with what the axes need; long clips use a longer hop."""
    duration = samples.shape[0] / sample_rate
    if duration * params.columns_per_s > max_columns:
        params = SpectrogramParams(params.n_fft, params.n_bins, max_columns / max(duration, 1e-9))
    cols = columns(samples, sample_rate, params)
    return {"columns": encode(cols), "frames": int(cols.shape[0]), "bins": params.n_bins,
            "hop_s": hop_samples(params, sample_rate) / sample_rate, "max_hz": sample_rate / 2,
            "duration_s": duration, "floor_db": FLOOR_DB, "ceil_db": CEIL_DB}
