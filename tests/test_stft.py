"""The display STFT (``util.stft``): blocks give the frames of the whole signal, and every spectrogram a person
sees reads a tone at the same level in dBFS."""

from __future__ import annotations

import numpy as np
import pytest

from streamdetect.sinks.spectrogram import stft_db
from streamdetect.util.stft import FLOOR_DB, Stft, decibels, power
from streamdetect.web.spectro import CEIL_DB, SpectrogramParams, columns
from streamdetect.web.spectro import FLOOR_DB as COLUMN_FLOOR_DB

SR = 48_000


def tone(level: float, hz: float = 3000.0, seconds: float = 1.0) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def test_blocks_of_any_size_give_the_frames_of_the_whole_signal():
    signal = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    stft = Stft(1024, 333)
    parts = [stft.push(signal[i : i + 777]) for i in range(0, signal.size, 777)]
    np.testing.assert_allclose(np.concatenate(parts), power(signal, 1024, 333), rtol=1e-5, atol=1e-9)
    assert power(signal[:1000]).shape == (0, 513)
    assert decibels(power(np.zeros(4096))).max() == FLOOR_DB


def test_a_full_scale_sine_reads_0_db_and_pcm16_reads_as_float():
    hz = 48 * SR / 1024  # the centre of bin 48
    assert decibels(power(tone(1.0, hz)))[:, 48].mean() == pytest.approx(0.0, abs=0.01)
    pcm = np.round(tone(0.1, hz) * 32767).astype(np.int16)
    assert decibels(power(pcm))[:, 48].mean() == pytest.approx(-20.0, abs=0.01)


def test_the_clip_image_and_the_browser_columns_share_one_reference():
    hz = 52 * SR / 1024  # the centre of bin 52, inside band 6 (bins 48-55) with both neighbours
    image_db = stft_db(tone(0.1, hz))[52].mean()
    band = int(hz / (SR / 2) * 64)
    level = columns(tone(0.1, hz), SR, SpectrogramParams())[:, band].mean()
    column_db = COLUMN_FLOOR_DB + level / 255 * (CEIL_DB - COLUMN_FLOOR_DB)
    # a band averages 8 bins: the tone's bin and its Hann neighbours (-6 dB each) hold its power
    band_db = 10 * np.log10((1 + 2 * 0.25) / 8) - 20
    assert image_db == pytest.approx(-20.0, abs=0.05) and column_db == pytest.approx(band_db, abs=0.5)
