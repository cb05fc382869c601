"""Reading the embedding log: the chunk files the daemon's writer leaves, by model and wall-time range, and the
stretches of adjacent windows that match a query (text search over past audio, the dashboard's similar-sounds).

The file layout is defined here, beside the reader, because the reader outlives any one writer: chunk files
``<dir>/<model key>/<stream>/<YYYYMMDDTHH>-<n>.npz`` with float16 embeddings, stream start/end seconds and wall
time as epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from streamdetect.model.manifest import AUDIO_ENCODER, ModelBundle
from streamdetect.util.times import iso_of


def log_key(bundle: ModelBundle) -> str:
    """The model's fp32 audio encoder hash: the int8 encoder's embeddings are comparable (cosine >= 0.999)."""
    return bundle.manifest["files"][AUDIO_ENCODER]


HOUR_FORMAT = "%Y%m%dT%H"
TIE_TOLERANCE = 1e-6  # of a cosine score: well above float32 rounding, far below any real difference


def chunk_hour(path: Path) -> float:
    try:
        return datetime.strptime(path.name[:11], HOUR_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return float("inf")  # not ours: never deleted


@dataclass
class LoggedWindows:
    streams: np.ndarray  # (n,) stream names
    starts_s: np.ndarray
    ends_s: np.ndarray
    wall: np.ndarray  # epoch seconds
    embeddings: np.ndarray  # (n, dim) float16


def read_log(directory: Path, model_key: str, since: float | None = None, until: float | None = None,
             ) -> LoggedWindows:
    """Logged windows of this model whose wall time lies in ``[since, until]`` (epoch seconds)."""
    root = Path(directory) / model_key[:16]
    if not root.is_dir():
        others = sorted(p.name for p in Path(directory).glob("*") if p.is_dir())
        raise FileNotFoundError(f"no embedding log of this model in {directory}"
                                + (f" (there are logs of other models: {', '.join(others)})" if others else ""))
    parts: list[LoggedWindows] = []
    for path in sorted(root.glob("*/*.npz")):
        hour = chunk_hour(path)
        if (since is not None and hour + 3600 < since) or (until is not None and hour > until):
            continue  # the whole chunk lies outside the range
        with np.load(path, allow_pickle=False) as data:
            keep = np.ones(data["wall"].shape, bool)
            if since is not None:
                keep &= data["wall"] >= since
            if until is not None:
                keep &= data["wall"] <= until
            parts.append(LoggedWindows(np.full(int(keep.sum()), str(data["stream"]), dtype=object),
                                       data["start_s"][keep], data["end_s"][keep], data["wall"][keep],
                                       data["embeddings"][keep]))
    if not parts:
        return LoggedWindows(np.zeros(0, object), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0), np.float16))
    return LoggedWindows(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("streams", "starts_s", "ends_s", "wall", "embeddings")))


@dataclass(frozen=True)
class Stretch:
    """A run of adjacent logged windows of one stream that match the query."""

    stream: str
    score: float  # best window's cosine
    start_s: float
    end_s: float
    time_from: str  # ISO wall time of the first window's end and the last window's end
    time_to: str
    windows: int


def _iso(epoch: float) -> str:
    return iso_of(epoch, "seconds")


def stretches(logged: LoggedWindows, scores: np.ndarray, top: int = 10, drop: float = 0.5) -> Iterator[Stretch]:
    """Best windows first, each grown over its stream's neighbouring windows that score above
    ``best - drop * (best - median score)``.

    The margin is relative to how far the best window stands out from a typical one, because the spread of
    cosine scores differs a lot between models and queries. Neighbours are windows of the same stream that
    overlap or touch in stream time; a window used by one stretch is not reported again.
    """
    typical = float(np.median(scores)) if scores.size else 0.0
    used = np.zeros(scores.shape[0], bool)
    order: dict[str, np.ndarray] = {}
    for name in set(logged.streams.tolist()):
        idx = np.flatnonzero(logged.streams == name)
        order[name] = idx[np.lexsort((logged.starts_s[idx], logged.wall[idx]))]
    found = 0
    for best in np.argsort(-scores, kind="stable"):
        if found >= top:
            return
        if used[best]:
            continue
        name = logged.streams[best]
        seq = order[name]
        pos = int(np.flatnonzero(seq == best)[0])
        lo = hi = pos
        # Identical logged windows can score a few float32 ulps apart (BLAS sums rows in different orders), so
        # the cut-off allows TIE_TOLERANCE below it: with the median at the best score it would otherwise drop
        # the best window's twin.
        floor = scores[best] - drop * max(float(scores[best]) - typical, 0.0) - TIE_TOLERANCE

        def fits(k: int, floor: float = floor) -> bool:
            return not used[k] and scores[k] >= floor

        def adjacent(earlier: int, later: int) -> bool:
            return logged.starts_s[earlier] <= logged.starts_s[later] <= logged.ends_s[earlier] + 1e-6

        while lo > 0 and fits(seq[lo - 1]) and adjacent(seq[lo - 1], seq[lo]):
            lo -= 1
        while hi + 1 < len(seq) and fits(seq[hi + 1]) and adjacent(seq[hi], seq[hi + 1]):
            hi += 1
        members = seq[lo : hi + 1]
        used[members] = True
        found += 1
        yield Stretch(str(name), round(float(scores[best]), 6), float(logged.starts_s[members].min()),
                      float(logged.ends_s[members].max()), _iso(float(logged.wall[members].min())),
                      _iso(float(logged.wall[members].max())), int(members.size))
