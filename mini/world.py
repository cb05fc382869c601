"""The synthetic sound world the mini CLAP is trained and measured in: twelve generated classes, captions, scenes.

One module for the trainer (``mini/train.py``), the quality tests and the figures, so that training
and evaluation draw from the same world with different seeds: training uses seeds below ``EVAL_SEED_BASE``,
every evaluation clip or scene a seed at or above it. A class is a generator with random parameters (level,
duration 0.3-3 s, onset, pitch, rate...); a clip is a 3 s window (the detector's window) of quiet room tone with
the event placed in it at 0-30 dB SNR.

``bell`` is generated but never captioned, never trained on: the query-by-example check needs a sound whose
name the text tower has never seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SR = 48_000
WINDOW_S = 3.0
EVAL_SEED_BASE = 1_000_000  # evaluation seeds start here; training seeds stay below

# Canonical prompt of each class (what a user would type), then further phrasings used in captions.
PHRASES: dict[str, list[str]] = {
    "beep": ["a steady beep", "beeping", "an electronic beep", "a beeping tone", "beep beep"],
    "rising_chirp": ["a rising chirp", "an upward sweep", "a rising tone", "a chirp going up", "a sweeping tone"],
    "falling_chirp": ["a falling chirp", "a downward sweep", "a falling tone", "a chirp going down",
                      "a sweeping tone"],
    "siren": ["a siren", "a wailing siren", "an ambulance siren", "a police siren", "a sweeping tone"],
    "hum": ["a low hum", "electrical hum", "a humming drone", "mains hum", "a low buzz"],
    "hiss": ["hissing white noise", "a hiss", "white noise", "static hiss", "steam hissing"],
    "knocking": ["knocking", "someone knocking on a door", "a knock knock", "knocks on wood", "thumping"],
    "clicks": ["clicks", "fast clicking", "a ticking clock", "ticking", "a clicking sound"],
    "trill": ["a bird-like trill", "a bird singing", "birdsong", "a warbling bird", "a chirping bird"],
    "water": ["running water", "a flowing stream", "water flowing", "a tap running", "splashing water"],
    "bark": ["a dog barking", "a dog bark", "barking", "a barking dog", "woof woof"],
    "silence": ["silence", "a quiet room", "quiet room tone", "nothing", "near silence"],
}
CLASSES = list(PHRASES)  # the captioned classes, in a fixed order
HELD_OUT = "bell"  # generated but never captioned nor trained on
TEMPLATES = ["{}", "{}", "the sound of {}", "a recording of {}", "{} in the background", "i hear {}",
             "there is {}", "{} nearby"]
MIX_TEMPLATES = ["{} and {}", "{} with {}", "{} together with {}", "both {} and {}"]


def prompt(label: str) -> str:
    """The prompt a user would type for a class (its first phrasing)."""
    return PHRASES[label][0]


def caption(rng: np.random.Generator, labels: tuple[str, ...]) -> str:
    """One random phrasing of the classes in a clip; silence is not named in a mixture."""
    named = [lab for lab in labels if lab != "silence" or len(labels) == 1]
    names = [PHRASES[lab][rng.integers(len(PHRASES[lab]))] for lab in named]
    if len(names) == 1:
        return TEMPLATES[rng.integers(len(TEMPLATES))].format(names[0])
    return MIX_TEMPLATES[rng.integers(len(MIX_TEMPLATES))].format(*names)


def caption_corpus() -> list[str]:
    """Every phrase and template combination, for training the tokenizer."""
    out = [t.format(p) for phrases in PHRASES.values() for p in phrases for t in TEMPLATES]
    out += [t.format(a[0], b[0]) for t in MIX_TEMPLATES for a in PHRASES.values() for b in PHRASES.values()]
    return out


# ---- the generators: each returns a clip of ``n`` samples at roughly unit RMS while the sound is on ----

def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _fade(x: np.ndarray, fade_s: float = 0.005) -> np.ndarray:
    k = min(int(fade_s * SR), x.size // 2)
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _tone_of_freq(freq: np.ndarray, harmonics: tuple[float, ...] = (1.0,)) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return sum(a * np.sin((h + 1) * phase) for h, a in enumerate(harmonics))


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n)


def _moving_average(x: np.ndarray, k: int) -> np.ndarray:
    """Soft edges for an on/off gate (a running mean over ``k`` samples, same length)."""
    c = np.concatenate([np.zeros(k // 2 + 1), np.cumsum(x), np.full(k - k // 2, x.sum())])
    return (c[k:k + x.size] - c[: x.size]) / k


def _smooth_random(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """A random positive envelope that changes about ``rate_hz`` times a second."""
    k = max(int(n / SR * rate_hz) + 2, 2)
    return np.interp(np.linspace(0, k - 1, n), np.arange(k), rng.uniform(0.2, 1.0, k))


def beep(rng, n):
    f, on, off = rng.uniform(500, 4000), rng.uniform(0.06, 0.3), rng.uniform(0.05, 0.25)
    x = np.sin(2 * np.pi * f * _t(n))
    gate = ((_t(n) % (on + off)) < on).astype(float)
    return x * _moving_average(gate, 240)


def _sweeps(rng, n, up: bool):
    x, pos = np.zeros(n), 0
    while pos < n:
        m = min(int(rng.uniform(0.2, 1.0) * SR), n - pos)
        f0, ratio = rng.uniform(300, 1500), rng.uniform(2.5, 5.0)
        freq = f0 * ratio ** (np.arange(m) / max(m - 1, 1))
        x[pos : pos + m] = _fade(_tone_of_freq(freq if up else freq[::-1], (1.0, 0.3)), 0.01)
        pos += m + int(rng.uniform(0.05, 0.3) * SR)
    return x


def rising_chirp(rng, n):
    return _sweeps(rng, n, up=True)


def falling_chirp(rng, n):
    return _sweeps(rng, n, up=False)


def siren(rng, n):
    period, centre, depth = rng.uniform(0.8, 1.25), rng.uniform(700, 1300), rng.uniform(0.25, 0.45)
    freq = centre * (1 + depth * np.sin(2 * np.pi * _t(n) / period + rng.uniform(0, 2 * np.pi)))
    return _tone_of_freq(freq, (1.0, 0.5, 0.25))


def hum(rng, n):
    f0 = rng.uniform(50, 200)
    return _tone_of_freq(np.full(n, f0), tuple(rng.uniform(0.2, 1.0) / (h + 1) for h in range(6)))


def hiss(rng, n):
    return rng.standard_normal(n)


def knocking(rng, n):
    x, count = np.zeros(n), int(rng.integers(3, 7))
    spacing = min(rng.uniform(0.12, 0.35), n / SR / count)
    f, decay = rng.uniform(80, 250), rng.uniform(0.02, 0.06)
    m = int(0.25 * SR)
    knock = np.exp(-_t(m) / decay) * (np.sin(2 * np.pi * f * _t(m)) + 0.3 * rng.standard_normal(m)
                                      * np.exp(-_t(m) / 0.004))
    for i in range(count):
        at = int(i * spacing * SR)
        if at >= n:
            break
        seg = knock[: n - at]
        x[at : at + seg.size] += seg
    return x * 4


def clicks(rng, n):
    x = np.zeros(n)
    x[:: int(SR / rng.uniform(8, 30))] = 1.0
    return np.convolve(x, np.hanning(48) * np.sign(np.sin(np.arange(48))), mode="same") * 12


def trill(rng, n):
    carrier, rate, dev = rng.uniform(2000, 6000), rng.uniform(12, 30), rng.uniform(200, 800)
    freq = carrier + dev * np.sin(2 * np.pi * rate * _t(n))
    syllable = rng.uniform(0.15, 0.5)
    env = 0.5 + 0.5 * np.cos(np.pi * ((_t(n) % syllable) / syllable * 2 - 1)) ** 2
    return _tone_of_freq(freq) * env


def water(rng, n):
    lo = rng.uniform(200, 600)
    return _band_noise(rng, n, lo, lo * rng.uniform(4, 8)) * _smooth_random(rng, n, rng.uniform(4, 12)) * 20


def bark(rng, n):
    x, pos = np.zeros(n), 0
    while pos < n:
        m = min(int(rng.uniform(0.1, 0.3) * SR), n - pos)
        t = _t(m)
        f = rng.uniform(300, 1200) * (1 + 0.2 * np.sin(np.pi * t / max(t[-1], 1e-3)))
        burst = _tone_of_freq(f, (1.0, 0.7, 0.5, 0.3)) + 0.6 * rng.standard_normal(m)
        x[pos : pos + m] = burst * np.exp(-t / rng.uniform(0.05, 0.12)) * np.minimum(1, t / 0.01)
        pos += m + int(rng.uniform(0.1, 0.4) * SR)
    return x * 2


def silence(rng, n):
    return np.zeros(n)


def bell(rng, n):
    x, f0 = np.zeros(n), rng.uniform(300, 900)
    strikes = np.sort(rng.uniform(0, max(n / SR - 0.3, 0.01), int(rng.integers(1, 3))))
    m = int(1.5 * SR)
    t = _t(m)
    ring = sum(a * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t / d)
               for r, a, d in ((1.0, 1.0, 0.8), (2.76, 0.6, 0.4), (5.40, 0.4, 0.25), (8.93, 0.25, 0.15)))
    for s in strikes:
        at = int(s * SR)
        seg = ring[: n - at]
        x[at : at + seg.size] += seg
    return x * 2


GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "beep": beep, "rising_chirp": rising_chirp, "falling_chirp": falling_chirp, "siren": siren, "hum": hum,
    "hiss": hiss, "knocking": knocking, "clicks": clicks, "trill": trill, "water": water, "bark": bark,
    "silence": silence, "bell": bell,
}


def room_tone(rng: np.random.Generator, n: int, level_db: float | None = None) -> np.ndarray:
    """Quiet pinkish background (fan, room) at ``level_db`` dBFS RMS, -75 to -45 when not given."""
    size = 1 << int(np.ceil(np.log2(max(n, 2))))  # a power of two: the FFT is the cost here
    spec = np.fft.rfft(rng.standard_normal(size).astype(np.float32))
    f = np.fft.rfftfreq(size, 1 / SR)
    spec /= np.sqrt(np.maximum(f, 20.0)) * (1 + (f / 4000.0) ** 2)
    x = np.fft.irfft(spec, size)[:n]
    level = rng.uniform(-75, -45) if level_db is None else level_db
    return x / (np.std(x) + 1e-12) * 10 ** (level / 20)


def event(rng: np.random.Generator, label: str, seconds: float | None = None) -> np.ndarray:
    """One event of a class, 0.3-3 s long (continuous classes) at unit RMS."""
    n = int((rng.uniform(0.3, 3.0) if seconds is None else seconds) * SR)
    x = _fade(GENERATORS[label](rng, n).astype(np.float64))
    rms = np.sqrt(np.mean(x**2))
    return x / rms if rms > 0 else x


def place(rng: np.random.Generator, background: np.ndarray, clip: np.ndarray, onset: int,
          snr_db: float) -> np.ndarray:
    """Add ``clip`` to ``background`` at ``onset`` samples, at ``snr_db`` over the background's RMS."""
    out = background.copy()
    clip = clip[: max(out.size - onset, 0)]
    if clip.size and np.any(clip):
        bg_rms = np.sqrt(np.mean(background**2)) + 1e-9
        out[onset : onset + clip.size] += clip * bg_rms * 10 ** (snr_db / 20)
    return out


def _finish(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random overall gain (level varies), then keep it unclipped."""
    x = x * 10 ** (rng.uniform(-10, 6) / 20)
    peak = np.abs(x).max()
    return (x * (0.98 / peak) if peak > 0.98 else x).astype(np.float32)


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # float32, WINDOW_S seconds at SR
    labels: tuple[str, ...]


def make_clip(rng: np.random.Generator, labels: tuple[str, ...], seconds: float = WINDOW_S,
              cut: float = 0.0) -> Clip:
    """A window with each class of ``labels`` placed at a random onset and 0-30 dB SNR over room tone.

    ``cut``: the share of events that run over the window's start or end, with 0.3 s or more of them inside.
    Windows cut from a stream every hop hold such partial sounds most of the time; a model that never saw them
    takes the tail of a chirp for a siren and a sound that stops for a beep."""
    n = int(seconds * SR)
    x = room_tone(rng, n)
    for label in labels:
        if label == "silence":
            continue
        clip = event(rng, label, min(rng.uniform(0.3, 3.0), seconds))
        if cut and rng.random() < cut:
            keep = int(rng.integers(min(int(0.3 * SR), clip.size), clip.size + 1))
            clip, onset = (clip[-keep:], 0) if rng.random() < 0.5 else (clip[:keep], n - keep)
        else:
            onset = int(rng.integers(0, n - min(clip.size, n) + 1))
        x = place(rng, x, clip, onset, rng.uniform(0, 30))
    return Clip(_finish(x, rng), labels)


def training_labels(rng: np.random.Generator, mix_fraction: float = 0.25) -> tuple[str, ...]:
    """One class, or (``mix_fraction`` of the time) two different non-silent classes."""
    if rng.random() < mix_fraction:
        sounding = [c for c in CLASSES if c != "silence"]
        a, b = rng.choice(len(sounding), 2, replace=False)
        return tuple(sorted((sounding[a], sounding[b])))
    return (CLASSES[rng.integers(len(CLASSES))],)


@dataclass(frozen=True)
class SceneEvent:
    label: str
    onset_s: float
    offset_s: float


def make_scene(rng: np.random.Generator, seconds: float, labels: list[str], n_events: int,
               snr_db: tuple[float, float] = (10.0, 25.0), gap_s: float = 2.0,
               event_s: tuple[float, float] = (1.5, 3.0)) -> tuple[np.ndarray, list[SceneEvent]]:
    """A longer recording of room tone with ``n_events`` events of ``labels``, apart by at least ``gap_s``, so
    that each is a clean strong label (no two events overlap)."""
    n = int(seconds * SR)
    x = room_tone(rng, n, rng.uniform(-70, -50))
    bg_level = x.copy()
    placed: list[SceneEvent] = []
    pos = rng.uniform(0.5, 2.0)
    for _ in range(n_events):
        label = labels[rng.integers(len(labels))] if len(labels) > 1 else labels[0]
        length = rng.uniform(*event_s)
        if pos + length > seconds - 0.5:
            break
        clip = event(rng, label, length)
        x = x + place(rng, np.zeros_like(x) + bg_level, clip, int(pos * SR), rng.uniform(*snr_db)) - bg_level
        placed.append(SceneEvent(label, round(pos, 3), round(pos + length, 3)))
        pos += length + rng.uniform(gap_s, gap_s + 3.0)
    peak = np.abs(x).max()
    return (x * (0.98 / peak) if peak > 0.98 else x).astype(np.float32), placed
