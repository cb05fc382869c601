"""Similarity over time for one recording: every window's score per event, the events the detector finds, and
a pooled waveform envelope and mel spectrogram for the plot, all in one pass with flat memory."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the plot extra: imported where a figure is drawn
    from matplotlib.figure import Figure

from streamdetect.analysis.replay import analyse_file
from streamdetect.embed.frontend import slaney_mel_filters
from streamdetect.model.manifest import FrontendParams
from streamdetect.pipeline.detector import Detector
from streamdetect.pipeline.events import EventRecord
from streamdetect.sources.file import FileOptions, FileSource
from streamdetect.util.stft import FLOOR_DB, Stft, decibels


class PooledMel:
    """Log-mel of a stream of any length in dBFS (the display STFT, ``util.stft``, through the model's mel
    filters), max-pooled in time to at most ``max_columns`` columns."""

    def __init__(self, params: FrontendParams, total_samples: int, max_columns: int = 3000):
        self.params = params
        self.filters = slaney_mel_filters(params).astype(np.float32)
        self.stft = Stft(params.n_fft, params.hop_length)
        n_frames = max(1, 1 + (total_samples - params.n_fft) // params.hop_length)
        self.pool = max(1, -(-n_frames // max_columns))
        self._frames: list[np.ndarray] = []  # mel frames not yet pooled (fewer than self.pool)
        self.columns: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        power = self.stft.push(block)
        if not power.shape[0]:
            return
        self._frames.append(decibels(power @ self.filters))
        pending = np.concatenate(self._frames)
        usable = (pending.shape[0] // self.pool) * self.pool
        if usable:
            self.columns.append(pending[:usable].reshape(-1, self.pool, self.params.n_mels).max(axis=1))
        self._frames = [pending[usable:]]

    def result(self) -> np.ndarray:
        """``(mels, columns)``."""
        rest = np.concatenate(self._frames) if self._frames else np.zeros((0, self.params.n_mels), np.float32)
        parts = self.columns + ([rest.max(axis=0, keepdims=True)] if rest.shape[0] else [])
        if not parts:
            return np.full((self.params.n_mels, 1), FLOOR_DB, np.float32)
        return np.concatenate(parts).T


class Envelope:
    """Min/max of the waveform in at most ``columns`` equal slices, for drawing hours of audio."""

    def __init__(self, total_samples: int, columns: int = 4000):
        self.per_column = max(1, -(-max(total_samples, 1) // columns))
        self._rest = np.zeros(0, dtype=np.float32)
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        data = np.concatenate([self._rest, block])
        usable = (data.shape[0] // self.per_column) * self.per_column
        if usable:
            shaped = data[:usable].reshape(-1, self.per_column)
            self.lo.append(shaped.min(axis=1))
            self.hi.append(shaped.max(axis=1))
        self._rest = data[usable:]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._rest.size:
            self.push(np.zeros(self.per_column - self._rest.size, np.float32))
        if not self.lo:
            return np.zeros(1, np.float32), np.zeros(1, np.float32)
        return np.concatenate(self.lo), np.concatenate(self.hi)


@dataclass
class ScanResult:
    path: Path
    duration_s: float
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    starts_s: np.ndarray  # (windows,)
    ends_s: np.ndarray
    scores: np.ndarray  # (windows, events)
    events: list[EventRecord]  # end records: one per detected event
    envelope: tuple[np.ndarray, np.ndarray]
    mel_db: np.ndarray
    score_name: str = "cosine similarity"  # or "probability" in softmax scoring mode
    random_weights: bool = False  # the model's manifest says it has random weights: the plot must say so

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["start_s", "end_s", *self.labels])
            for start, end, row in zip(self.starts_s, self.ends_s, self.scores, strict=True):
                writer.writerow([f"{start:.3f}", f"{end:.3f}", *(f"{v:.6f}" for v in row)])


def scan_file(detector: Detector, path: Path, progress: bool = True) -> ScanResult:
    """Run the detector's windows, prompts and event logic over a file, keeping every window's scores."""
    from tqdm import tqdm

    sample_rate = detector.bundle.sample_rate
    source = FileSource(FileOptions(path=str(path)), sample_rate)  # opened first: a bad file fails here
    total = int(source.duration_s * sample_rate)
    mel, envelope = PooledMel(detector.bundle.frontend_params, total), Envelope(total)
    total_s = round(source.duration_s, 1)
    with tqdm(total=total_s, unit="s", desc=f"scanning {source.name}", file=sys.stderr,
              disable=not progress, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:

        def on_block(block: np.ndarray) -> None:
            mel.push(block)
            envelope.push(block)
            # Resampled blocks can add up to a little more than the header's duration: past the total tqdm
            # warns ("clamping frac") and shows a negative time left.
            bar.update(max(0.0, min(block.shape[0] / sample_rate, total_s - bar.n)))

        stream, records = analyse_file(detector, Path(path), on_block)
    assert stream.score_log is not None  # analyse_file logs every window's scores
    starts, ends, scores, _ = stream.score_log.arrays(len(detector.bank.labels))
    return ScanResult(
        path=Path(path),
        duration_s=stream.seconds,
        labels=detector.bank.labels,
        thresholds=tuple(e.threshold for e in detector.config.events),
        starts_s=starts,
        ends_s=ends,
        scores=scores,
        events=[r for r in records if r.phase == "end"],
        envelope=envelope.result(),
        mel_db=mel.result(),
        score_name="probability" if detector.config.scoring.mode == "softmax" else "cosine similarity",
        random_weights=detector.bundle.random_weights,
    )


RANDOM_TITLE = "RANDOM WEIGHTS (this shows the tool, not detection)"


def plot_title(result: ScanResult, title: str | None) -> str:
    text = title or f"{result.path.name}: similarity of each window to each event's prompts"
    return f"{RANDOM_TITLE}\n{text}" if result.random_weights else text


def plot_scan(result: ScanResult, out: Path, title: str | None = None) -> None:
    import matplotlib.pyplot as plt

    fig = scan_figure(result, title)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def scan_figure(result: ScanResult, title: str | None = None) -> Figure:
    """Waveform on top, mel spectrogram in the middle, one similarity curve per event below; thresholds
    dashed, detected events shaded across all three panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_wave, ax_mel, ax_sim) = plt.subplots(
        3, 1, figsize=(14, 8.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3, 2]}, constrained_layout=True)
    duration = max(result.duration_s, 1e-6)
    lo, hi = result.envelope
    t_env = np.linspace(0, duration, lo.size)
    ax_wave.fill_between(t_env, lo, hi, color="0.3", linewidth=0)
    ax_wave.set_ylabel("waveform")
    ax_wave.set_title(plot_title(result, title), color="firebrick" if result.random_weights else "black")
    ax_mel.imshow(result.mel_db, origin="lower", aspect="auto", extent=(0, duration, 0, result.mel_db.shape[0]),
                  cmap="magma", vmin=max(result.mel_db.min(), result.mel_db.max() - 80), vmax=result.mel_db.max())
    ax_mel.set_ylabel("mel band")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    centres = (result.starts_s + result.ends_s) / 2
    n = len(result.labels)
    for i, label in enumerate(result.labels):
        colour = colours[i % len(colours)]
        ax_sim.plot(centres, result.scores[:, i], marker=".", color=colour, label=label)
        # Each threshold dashed in its curve's colour; the dashes of different events interleave (offset i of
        # n), so equal thresholds show every colour in turn instead of the last one drawn.
        ax_sim.axhline(result.thresholds[i], color=colour, linewidth=1.5, linestyle=(4 * i, (4, 4 * (n - 1) or 4)),
                       label=f"{label} threshold {result.thresholds[i]:g}")
        for event in (e for e in result.events if e.label == label):
            for ax in (ax_wave, ax_mel, ax_sim):
                ax.axvspan(event.start_s, event.end_s, color=colour, alpha=0.15, linewidth=0)
    ax_sim.set_ylabel(result.score_name)
    ax_sim.set_xlabel("time (s)")
    ax_sim.set_xlim(0, duration)
    ax_sim.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)  # off the curves
    ax_sim.grid(alpha=0.3)
    return fig
