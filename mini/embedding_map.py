"""How clips and their class prompts sit in CLAP's joint space.

Draws (1) a UMAP scatter of clip embeddings (circles) and class-prompt embeddings (triangles), with a line from
each clip to its class prompt, coloured by major category, and (2) an audio x prompt cosine-similarity heatmap
ordered by category; prints per-class zero-shot top-1 accuracy and the most frequent confusions.

Datasets:
  - ESC-50 layout: ``DIR/audio/*.wav`` + ``DIR/meta/esc50.csv`` (or ``--meta FILE``) with ``filename`` and
    ``category`` columns; a ``target`` column (0-49) gives ESC-50's five major categories;
  - a folder per class: ``DIR/<class>/*.wav``, or ``DIR/<major>/<class>/*.wav`` for major categories.

    python -m mini.embedding_map DIR --model models/clap-htsat-unfused --out map.png --heatmap sim.png
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from streamdetect.config import EventConfig  # noqa: E402
from streamdetect.embed.clip import clip_embedding  # noqa: E402
from streamdetect.embed.encoder import open_audio_encoder
from streamdetect.embed.encoder.base import RuntimeOptions  # noqa: E402
from streamdetect.embed.frontend import LogMelFrontend  # noqa: E402
from streamdetect.model.manifest import ModelBundle  # noqa: E402
from streamdetect.prompts.assemble import prompt_bank_for  # noqa: E402
from streamdetect.sources.file import AUDIO_SUFFIXES

ESC50_MAJOR = ["animals", "natural soundscapes", "human non-speech", "interior/domestic", "exterior/urban"]


def read_dataset(root: Path, meta: Path | None) -> list[tuple[Path, str, str]]:
    """(file, class, major category) for every clip."""
    meta = meta or (root / "meta" / "esc50.csv")
    if meta.is_file():
        rows = []
        with open(meta, newline="") as fh:
            for row in csv.DictReader(fh):
                major = ESC50_MAJOR[int(row["target"]) // 10] if "target" in row else row["category"]
                rows.append((root / "audio" / row["filename"], row["category"], major))
        return rows
    rows = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        parts = path.relative_to(root).parts
        if len(parts) == 2:
            rows.append((path, parts[0], parts[0]))
        elif len(parts) == 3:
            rows.append((path, parts[1], parts[0]))
    if not rows:
        raise SystemExit(f"{root}: no ESC-50 meta CSV and no DIR/<class>/<audio> files found")
    return rows


def class_silhouette(embeddings: np.ndarray, classes: np.ndarray) -> float:
    """Silhouette score (cosine) of the clips grouped by class: 1 when every clip is far nearer its own class than
    any other, 0 when the classes overlap. NaN with fewer than two classes."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(classes)) < 2 or len(np.unique(classes)) >= len(classes):
        return float("nan")
    return float(silhouette_score(embeddings, classes, metric="cosine"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", type=Path, default=Path("models/clap-htsat-unfused"))
    parser.add_argument("--meta", type=Path, help="ESC-50 style CSV (default DATASET/meta/esc50.csv)")
    parser.add_argument("--prompt-template", default="The sound of a {}.")
    parser.add_argument("--out", type=Path, default=Path("embedding_map.png"))
    parser.add_argument("--heatmap", type=Path, default=Path("similarity_heatmap.png"))
    parser.add_argument("--json", type=Path, help="write accuracies and confusions as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--title", help="prefix for the plot titles (default: the model's source)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm import tqdm
    from umap import UMAP

    rows = read_dataset(args.dataset, args.meta)
    classes = sorted({c for _, c, _ in rows}, key=lambda c: (next(m for _, k, m in rows if k == c), c))
    major_of = {c: m for _, c, m in rows}
    majors = sorted(set(major_of.values()), key=lambda m: classes.index(next(c for c in classes if major_of[c] == m)))
    bundle = ModelBundle.load(args.model)
    options = RuntimeOptions()
    frontend, encoder = LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, options)
    rows = sorted(rows, key=lambda r: (classes.index(r[1]), str(r[0])))
    audio = np.stack([clip_embedding(p, frontend, encoder) for p, _, _ in tqdm(rows, desc="embedding clips",
                                                                                  unit="clip", file=sys.stderr)])
    events = [EventConfig(label=c, prompts=[args.prompt_template.format(c.replace("_", " "))], threshold=0.0)
              for c in classes]
    prompts = prompt_bank_for(bundle, events, None, options).events
    truth = np.array([classes.index(c) for _, c, _ in rows])
    sims = audio @ prompts.T
    predicted = sims.argmax(axis=1)

    accuracy = {c: float((predicted[truth == i] == i).mean()) for i, c in enumerate(classes)}
    confusions = Counter((classes[t], classes[p]) for t, p in zip(truth, predicted, strict=True) if t != p)
    overall = float((predicted == truth).mean())
    separation = class_silhouette(audio, truth)
    print(f"zero-shot top-1 accuracy {overall:.3f} over {len(rows)} clips, {len(classes)} classes; "
          f"silhouette {separation:.3f}")
    for c in classes:
        print(f"  {c:24s} {accuracy[c]:.3f}")
    for (t, p), n in confusions.most_common(10):
        print(f"  confused {t} -> {p}: {n}")

    points = np.concatenate([audio, prompts])
    reducer = UMAP(n_neighbors=max(2, min(15, len(points) - 1)), metric="cosine", random_state=args.seed,
                   init="random")
    xy = reducer.fit_transform(points)
    clip_xy, prompt_xy = xy[: len(audio)], xy[len(audio) :]
    colours = plt.get_cmap("tab10" if len(majors) <= 10 else "tab20")
    colour = {m: colours(i % colours.N) for i, m in enumerate(majors)}
    fig, ax = plt.subplots(figsize=(11, 9), constrained_layout=True)
    for (x, y), t in zip(clip_xy, truth, strict=True):
        px, py = prompt_xy[t]
        ax.plot([x, px], [y, py], color=colour[major_of[classes[t]]], alpha=0.25, linewidth=0.8)
    for m in majors:
        idx = [i for i, t in enumerate(truth) if major_of[classes[t]] == m]
        ax.scatter(clip_xy[idx, 0], clip_xy[idx, 1], s=28, marker="o", color=colour[m], label=m, alpha=0.8)
    for i, c in enumerate(classes):
        ax.scatter(*prompt_xy[i], s=140, marker="^", color=colour[major_of[c]], edgecolors="black", linewidths=0.8)
        ax.annotate(c, prompt_xy[i], fontsize=7, xytext=(4, 4), textcoords="offset points")
    source = args.title or bundle.manifest["source"]["model"]
    ax.set_title(f"{source}: clips (circles) and prompts '{args.prompt_template}' (triangles), "
                 f"silhouette {separation:.2f}")
    ax.legend(title="major category", fontsize="small")
    fig.savefig(args.out, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 9), constrained_layout=True)
    image = ax.imshow(sims, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    bounds = np.flatnonzero(np.diff(truth)) + 0.5
    ax.set_yticks(np.concatenate([[0], bounds + 0.5]), [classes[t] for t in np.unique(truth)], fontsize=7)
    for b in bounds:
        ax.axhline(b, color="white", linewidth=0.3)
    ax.set_xlabel("class prompt")
    ax.set_ylabel("audio clips, grouped by class")
    ax.set_title(f"{source}: audio x prompt cosine similarity (top-1 accuracy {overall:.2f})")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(args.heatmap, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out} and {args.heatmap}")
    if args.json:
        args.json.write_text(json.dumps({"top1": overall, "silhouette": separation, "per_class": accuracy,
                                         "confusions": [[t, p, n] for (t, p), n in confusions.most_common()]},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
