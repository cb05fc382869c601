"""A clip's spectrogram as a PNG: time and frequency axes, the event's extent marked, one colour scale for all.

The colour scale is fixed in dB relative to full scale (``DB_RANGE``), not stretched to each clip's own range,
so a faint call looks faint and two images can be compared by eye. matplotlib (Agg, no display) is an optional
dependency: ``pip install 'streamdetect[plot]'``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from streamdetect.sinks.base import SinkError
from streamdetect.util.stft import as_float, decibels, power

DB_RANGE = (-110.0, -20.0)  # dBFS per STFT bin: the floor of PCM16 silence up to loud calls
PLOT_EXTRA = "pip install 'streamdetect[plot]'"


def require_matplotlib(who: str) -> None:
    """Fail at start-up, in one line naming the extra, rather than at the first clip."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise SinkError(f"{who}: spectrogram images need matplotlib, which is not installed ({PLOT_EXTRA})") from e


@dataclass(frozen=True)
class Marked:
    """A stretch of the clip to mark, in seconds from the clip's start."""

    start_s: float
    end_s: float
    label: str


def stft_db(samples: np.ndarray, n_fft: int = 1024, hop: int = 512) -> np.ndarray:
    """(bins, frames) in dBFS (``util.stft``); a clip shorter than one frame is padded to one."""
    x = as_float(samples)
    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    return decibels(power(x, n_fft, hop)).T


def spectrogram_png(samples: np.ndarray, sample_rate: int, marks: list[Marked], title: str,
                    max_hz: float | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    db = stft_db(samples)
    duration_s = samples.shape[0] / sample_rate
    top_hz = min(max_hz or sample_rate / 2, sample_rate / 2)
    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=DB_RANGE[0], vmax=DB_RANGE[1],
                      extent=(0.0, duration_s, 0.0, sample_rate / 2 / 1000))
    ax.set_ylim(0, top_hz / 1000)
    for mark in marks:
        ax.axvspan(mark.start_s, mark.end_s, facecolor="none", edgecolor="cyan", linewidth=1.5, linestyle="--")
        ax.text(mark.start_s, top_hz / 1000 * 0.97, f" {mark.label}", color="cyan", va="top", fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="dBFS", pad=0.01)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
