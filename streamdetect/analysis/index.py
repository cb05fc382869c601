"""Text-to-audio search over a folder: every file's windows embedded once, cached by file content.

The index lives in ``<folder>/.streamdetect/`` and is keyed by the audio encoder's sha256, so a different model
never reuses it. Re-indexing embeds only new or changed files (by sha256 of their bytes) and forgets deleted
ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.embed.encoder.base import AudioEncoder
from streamdetect.embed.frontend import LogMelFrontend
from streamdetect.embed.vectors import normalize
from streamdetect.model.manifest import MANIFEST_NAME, ModelBundle, ModelError, sha256_file
from streamdetect.pipeline.windows import Window, Windower
from streamdetect.sources.base import SourceError
from streamdetect.sources.file import audio_files, read_blocks
from streamdetect.util.files import atomic_write

INDEX_DIR = ".streamdetect"


@dataclass
class Entry:
    sha256: str
    duration_s: float
    starts_s: np.ndarray  # (windows,)
    ends_s: np.ndarray
    embeddings: np.ndarray  # (windows, dim) float16, L2-normalised


@dataclass(frozen=True)
class Hit:
    path: str
    score: float
    start_s: float
    end_s: float


def embed_windows(path: Path, frontend: LogMelFrontend, encoder: AudioEncoder, window_s: float,
                  hop_s: float, batch: int = 8) -> Entry:
    sample_rate = frontend.params.sample_rate
    windower = Windower(window_s, hop_s, sample_rate)
    windows: list[Window] = []
    for block in read_blocks(path, sample_rate):
        windows += windower.push(block)
    windows += windower.finish()
    if not windows:
        raise SourceError(f"{path} holds no audio")
    emb = np.concatenate([encoder(frontend([w.samples for w in windows[i : i + batch]]))
                          for i in range(0, len(windows), batch)])
    return Entry("", windower.total_samples / sample_rate, np.array([w.start_s for w in windows]),
                 np.array([w.end_s for w in windows]), normalize(emb).astype(np.float16))


class AudioIndex:
    def __init__(self, folder: Path, bundle: ModelBundle, encoder_file: str, window_s: float = 3.0,
                 hop_s: float = 1.0):
        self.folder, self.bundle = folder, bundle
        self.window_s, self.hop_s = window_s, hop_s
        digest = bundle.file_digest(encoder_file)
        if digest is None:
            raise ModelError(f"{bundle.directory / MANIFEST_NAME} lists no file {encoder_file!r}; export again")
        key = digest[:16]
        self.path = folder / INDEX_DIR / f"index-{key}-{window_s:g}s-{hop_s:g}s.npz"
        self.entries: dict[str, Entry] = {}

    def load(self) -> AudioIndex:
        if not self.path.is_file():
            return self
        with np.load(self.path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            offsets = data["offsets"]
            for i, (name, sha, duration) in enumerate(meta):
                a, b = offsets[i], offsets[i + 1]
                self.entries[name] = Entry(sha, duration, data["starts"][a:b], data["ends"][a:b],
                                           data["embeddings"][a:b])
        return self

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(self.entries)
        entries = [self.entries[n] for n in names]
        offsets = np.cumsum([0] + [e.embeddings.shape[0] for e in entries])
        dim = self.bundle.embedding_dim
        atomic_write(self.path, lambda fh: np.savez(
            fh, meta=json.dumps([[n, e.sha256, e.duration_s] for n, e in zip(names, entries, strict=True)]),
            offsets=offsets,
            starts=np.concatenate([e.starts_s for e in entries]) if entries else np.zeros(0),
            ends=np.concatenate([e.ends_s for e in entries]) if entries else np.zeros(0),
            embeddings=np.concatenate([e.embeddings for e in entries]) if entries else np.zeros((0, dim), np.float16)))

    def update(self, frontend: LogMelFrontend, encoder: AudioEncoder, progress: bool = True) -> dict[str, list]:
        """Embed new and changed files, drop deleted ones; returns what happened to which file."""
        from tqdm import tqdm

        files = {p.relative_to(self.folder).as_posix(): p for p in audio_files(self.folder)
                 if INDEX_DIR not in p.relative_to(self.folder).parts}
        report: dict[str, list] = {"added": [], "updated": [], "unchanged": [], "removed": [], "failed": []}
        for name in sorted(set(self.entries) - set(files)):
            del self.entries[name]
            report["removed"].append(name)
        for name, path in tqdm(sorted(files.items()), desc="indexing", unit="file", file=sys.stderr,
                               disable=not progress):
            sha = sha256_file(path)
            old = self.entries.get(name)
            if old is not None and old.sha256 == sha:
                report["unchanged"].append(name)
                continue
            try:
                entry = embed_windows(path, frontend, encoder, self.window_s, self.hop_s)
            except (SourceError, ValueError) as e:
                report["failed"].append((name, str(e)))
                continue
            entry.sha256 = sha
            self.entries[name] = entry
            report["updated" if old is not None else "added"].append(name)
        return report

    def search(self, query: np.ndarray, top: int = 10) -> list[Hit]:
        """Files ranked by their best-matching window."""
        query = normalize(query.astype(np.float32))
        hits = []
        for name, entry in self.entries.items():
            scores = entry.embeddings.astype(np.float32) @ query
            best = int(np.argmax(scores))
            hits.append(Hit(name, round(float(scores[best]), 6), float(entry.starts_s[best]),
                            float(entry.ends_s[best])))
        return sorted(hits, key=lambda h: -h.score)[:top]
