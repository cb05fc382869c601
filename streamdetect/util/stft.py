"""The short-time Fourier transform behind every spectrogram a person looks at, with one dB reference.

The clip images, the dashboard's clip and live views and the ``scan`` plot all draw this transform, so a level
read on one reads the same on the others: power is relative to a full-scale sine, which reads 0 dB in its bin
(dBFS). It streams: blocks of any size go in, every frame whose samples have all arrived comes out, and the
frames are those of the whole signal transformed at once (frames start at sample 0, every ``hop``).

The model's own front end (``embed.frontend``) is not one of these: it reproduces the checkpoint's feature
extractor (reflect padding, its own float rounding) and must not move when a display does.
"""

from __future__ import annotations

import numpy as np

FLOOR_DB = -120.0  # what digital silence reads; below every display's colour scale


def hann(n: int) -> np.ndarray:
    """The periodic Hann window (as ``torch.stft`` and the model's front end use): its sum is exactly n / 2."""
    return np.hanning(n + 1)[:-1].astype(np.float32)


def as_float(samples: np.ndarray) -> np.ndarray:
    """Mono samples as float32 in [-1, 1]; PCM16 is scaled by 1/32768."""
    x = np.asarray(samples).reshape(-1)
    return x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32, copy=False)


class Stft:
    """Power spectra, ``(frames, n_fft // 2 + 1)``, of a signal that arrives in blocks.

    Keeps the samples of the next, incomplete frame between pushes; one instance per signal.
    """

    def __init__(self, n_fft: int = 1024, hop: int = 512):
        if n_fft < 2 or hop < 1:
            raise ValueError(f"an STFT needs n_fft >= 2 and hop >= 1, not {n_fft} and {hop}")
        self.n_fft, self.hop = n_fft, hop
        self.window = hann(n_fft)
        # |rfft| of a full-scale sine at a bin's centre is sum(window) / 2 = n_fft / 4
        self._scale = np.float32(1.0 / (n_fft / 4.0) ** 2)
        self._carry = np.zeros(0, np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Power of every frame completed by ``block``, relative to a full-scale sine."""
        x = as_float(block)
        signal = np.concatenate([self._carry, x]) if self._carry.size else x
        count = 0 if signal.size < self.n_fft else 1 + (signal.size - self.n_fft) // self.hop
        self._carry = signal[count * self.hop :].copy()
        if count == 0:
            return np.zeros((0, self.n_fft // 2 + 1), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(signal, self.n_fft)[:: self.hop][:count]
        spectrum = np.fft.rfft(frames * self.window, axis=1)
        return (spectrum.real**2 + spectrum.imag**2).astype(np.float32) * self._scale


def power(samples: np.ndarray, n_fft: int = 1024, hop: int = 512) -> np.ndarray:
    """The ``Stft`` of a whole signal at once: ``(frames, n_fft // 2 + 1)``, no frame when shorter than n_fft."""
    return Stft(n_fft, hop).push(samples)


def decibels(power: np.ndarray) -> np.ndarray:
    """Power relative to a full-scale sine in dB, silence at ``FLOOR_DB``."""
    return (10.0 * np.log10(np.maximum(power, 10.0 ** (FLOOR_DB / 10.0)))).astype(np.float32)
