"""Spectrogram columns for the browser: power in dB on a linear frequency axis, quantised to one byte per bin.

The live view and the clip views draw the same columns on a canvas, so one function computes them. A byte per
bin keeps a live view at about a kilobyte per second per stream.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

FLOOR_DB, CEIL_DB = -100.0, 0.0


@dataclass(frozen=True)
class SpectrogramParams:
    n_fft: int = 1024
    n_bins: int = 64  # n_fft / 2 bins averaged into this many bands
    columns_per_s: float = 16.0


def hop_samples(params: SpectrogramParams, sample_rate: int) -> int:
    return max(1, int(round(sample_rate / params.columns_per_s)))


def columns(samples: np.ndarray, sample_rate: int, params: SpectrogramParams) -> np.ndarray:
    """(frames, n_bins) uint8 levels of every full frame of ``samples`` taken every hop (frames start at 0)."""
    hop, n = hop_samples(params, sample_rate), params.n_fft
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    count = 0 if samples.size < n else 1 + (samples.size - n) // hop
    if count == 0:
        return np.zeros((0, params.n_bins), np.uint8)
    idx = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    frames = samples[idx] * np.hanning(n).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)[:, : n // 2]) ** 2 / (n / 4) ** 2  # full-scale sine ~ 0 dB
    bands = power.reshape(count, params.n_bins, -1).mean(axis=2)
    level = 10 * np.log10(np.maximum(bands, 1e-12))
    return np.clip((level - FLOOR_DB) / (CEIL_DB - FLOOR_DB) * 255, 0, 255).astype(np.uint8)


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
