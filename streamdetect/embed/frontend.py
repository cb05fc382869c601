"""CLAP log-mel front end in numpy.

It reproduces ``transformers.ClapFeatureExtractor`` as the unfused checkpoints configure it
(``truncation="rand_trunc"``, ``padding="repeatpad"``, Slaney mel filters) so that the ONNX encoder sees the
features it was trained on, without torch at run time. The numbers come from the model's manifest, never from
library defaults: ``ClapFeatureExtractor()`` defaults differ from the checkpoints (``frequency_min`` 0 instead
of 50, fusion truncation).
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from streamdetect.model.manifest import FrontendParams


def _hz_to_mel_slaney(freq: np.ndarray | float) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels = np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * (27.0 / np.log(6.4)), mels)
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    return np.where(log_region, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), freq)


def slaney_mel_filters(params: FrontendParams) -> np.ndarray:
    """Triangular Slaney-normalised filters, shape ``(n_fft // 2 + 1, n_mels)`` (librosa's ``mel(htk=False)``)."""
    n_bins = params.n_fft // 2 + 1
    mel_points = np.linspace(
        _hz_to_mel_slaney(params.f_min), _hz_to_mel_slaney(params.f_max), params.n_mels + 2
    )
    filter_hz = _mel_to_hz_slaney(mel_points)
    fft_hz = np.linspace(0, params.sample_rate // 2, n_bins)
    filter_diff = np.diff(filter_hz)
    slopes = filter_hz[None, :] - fft_hz[:, None]
    down = -slopes[:, :-2] / filter_diff[:-1]
    up = slopes[:, 2:] / filter_diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (filter_hz[2 : params.n_mels + 2] - filter_hz[: params.n_mels]))[None, :]
    return filters


def repeat_pad(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """CLAP's ``repeatpad``: whole repeats of a short clip, then zeros up to ``n_samples``."""
    if waveform.shape[0] >= n_samples:
        return waveform[:n_samples]
    if waveform.shape[0] == 0:
        return np.zeros(n_samples, dtype=waveform.dtype)
    repeats = n_samples // waveform.shape[0]
    tiled = np.tile(waveform, repeats)
    return np.pad(tiled, (0, n_samples - tiled.shape[0]))


class LogMelFrontend:
    """Turns windows of 48 kHz mono audio into the ``(batch, 1, frames, mels)`` tensor the encoder takes.

    Holds reusable buffers: use one instance per thread.
    """

    def __init__(self, params: FrontendParams):
        if params.padding != "repeatpad":
            raise ValueError(f"front end supports padding='repeatpad' only, the manifest asks for {params.padding!r}")
        self.params = params
        self._mel_filters = slaney_mel_filters(params)
        self._window = np.hanning(params.n_fft + 1)[:-1]  # periodic Hann, as torch.stft and HF use
        # Reused between calls: fresh multi-megabyte arrays per window cost more than the FFTs themselves.
        self._signal = np.zeros(params.max_samples + params.n_fft, dtype=np.float64)
        self._frames = np.empty((params.n_frames, params.n_fft), dtype=np.float64)
        self._starts = np.arange(params.n_frames) * params.hop_length

    def __call__(self, windows: list[np.ndarray] | np.ndarray) -> np.ndarray:
        if isinstance(windows, np.ndarray) and windows.ndim == 1:
            windows = [windows]
        feats = np.empty((len(windows), 1, self.params.n_frames, self.params.n_mels), dtype=np.float32)
        for i, window in enumerate(windows):
            feats[i, 0] = self.log_mel(window)
        return feats

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """Log-mel in dB of one clip of at most ``max_length_s``, shape ``(frames, mels)``.

        A short clip is repeat-padded, so most STFT frames of the padded signal are exact copies of each other
        (a 3 s window has 300 distinct frames out of 1001). Each distinct frame is transformed once and the
        result gathered, which gives the same numbers as transforming every frame.
        """
        if waveform.ndim != 1:
            raise ValueError(f"front end expects mono audio of shape (samples,), got shape {waveform.shape}")
        p = self.params
        if waveform.shape[0] > p.max_samples:
            raise ValueError(
                f"window of {waveform.shape[0] / p.sample_rate:.2f} s is longer than the model's "
                f"{p.max_length_s:g} s input"
            )
        signal = self._padded_signal(np.asarray(waveform, dtype=np.float32))
        _, index, inverse = np.unique(self._distinct_frames(waveform.shape[0]), return_index=True, return_inverse=True)
        frames = self._frames[: index.shape[0]]
        np.multiply(np.lib.stride_tricks.sliding_window_view(signal, p.n_fft)[self._starts[index]], self._window,
                    out=frames)
        # HF stores the STFT as complex64 before taking the power; rounding the same way keeps parity at 1e-3 dB.
        spectrum = np.fft.rfft(frames, axis=-1).astype(np.complex64)
        power = np.abs(spectrum, dtype=np.float64) ** 2
        mel_db = (10.0 * np.log10(np.maximum(power @ self._mel_filters, 1e-10))).astype(np.float32)
        return mel_db[inverse.reshape(-1)]

    def _padded_signal(self, clip: np.ndarray) -> np.ndarray:
        """``np.pad(repeat_pad(clip), n_fft // 2, mode="reflect")`` in float64, written into a reused buffer."""
        p, half, out = self.params, self.params.n_fft // 2, self._signal
        body = out[half : half + p.max_samples]
        n = clip.shape[0]
        if n == 0:
            body[:] = 0.0
        elif n >= p.max_samples:
            body[:] = clip[: p.max_samples]
        else:
            repeats = p.max_samples // n
            body[: repeats * n].reshape(repeats, n)[:] = clip
            body[repeats * n :] = 0.0
        out[:half] = body[half:0:-1]
        out[half + p.max_samples :] = body[-2 : -half - 2 : -1]
        return out

    def _distinct_frames(self, n_samples: int) -> np.ndarray:
        """A key per STFT frame; frames with equal keys hold identical samples of the padded signal."""
        p = self.params
        frame = np.arange(p.n_frames)
        if n_samples == 0 or n_samples >= p.max_samples:
            return frame
        offset = frame * p.hop_length - p.n_fft // 2  # first sample of each frame, in the unpadded clip
        tiled_end = (p.max_samples // n_samples) * n_samples  # repeats end here, zeros follow
        in_repeats = (offset >= 0) & (offset + p.n_fft <= tiled_end)
        in_zeros = (offset >= tiled_end) & (offset + p.n_fft <= p.max_samples)
        keys = np.where(in_repeats, offset % n_samples, -1 - frame - n_samples)
        return np.where(in_zeros, -1, keys)


class ParallelFrontend:
    """The front end over a batch of windows on several threads, one ``LogMelFrontend`` (and its buffers) each.

    numpy's FFT and matrix product release the GIL: two threads gave 1.56x on 2 cores. One thread computes about
    780 windows per second, which would cap a GPU encoder at that many 1 s-hop streams; with ``threads`` 1 this
    is the plain front end, which is what a CPU encoder wants (it needs the cores itself).
    """

    def __init__(self, params: FrontendParams, threads: int = 1):
        self.params, self.threads = params, threads
        self._single = LogMelFrontend(params)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="frontend") if threads > 1 else None
        if self._pool is not None:
            weakref.finalize(self, self._pool.shutdown, wait=False)

    def _own(self) -> LogMelFrontend:
        frontend = getattr(self._local, "frontend", None)
        if frontend is None:
            frontend = self._local.frontend = LogMelFrontend(self.params)
        return frontend

    def __call__(self, windows: list[np.ndarray] | np.ndarray) -> np.ndarray:
        if self._pool is None or isinstance(windows, np.ndarray) and windows.ndim == 1 or len(windows) < 2:
            return self._single(windows)
        feats = np.empty((len(windows), 1, self.params.n_frames, self.params.n_mels), dtype=np.float32)

        def one(i: int) -> None:
            feats[i, 0] = self._own().log_mel(windows[i])

        for _ in self._pool.map(one, range(len(windows))):  # re-raises a window's error here
            pass
        return feats
