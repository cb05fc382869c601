"""Text and audio search over past audio: ``index`` and ``search`` (a folder index or an embedding log)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used
    from streamdetect.analysis.index import AudioIndex
    from streamdetect.embed.encoder.base import RuntimeOptions

from streamdetect.cli.common import UsageError
from streamdetect.model.manifest import ModelBundle, default_model_dir
from streamdetect.util.times import epoch_of


def _index(args: argparse.Namespace, folder: Path) -> tuple[ModelBundle, RuntimeOptions, AudioIndex]:
    from streamdetect.analysis.index import AudioIndex
    from streamdetect.embed.encoder import chosen_encoder_file
    from streamdetect.embed.encoder.base import RuntimeOptions

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    bundle = ModelBundle.load(args.model or default_model_dir())
    options = RuntimeOptions()
    return bundle, options, AudioIndex(folder, bundle, chosen_encoder_file(bundle, options), args.window_s,
                                       args.hop_s).load()


def cmd_index(args: argparse.Namespace) -> int:
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.frontend import LogMelFrontend

    bundle, options, index = _index(args, args.folder)
    report = index.update(LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, options))
    index.save()
    for name, error in report["failed"]:
        print(f"streamdetect: skipped {name}: {error}", file=sys.stderr)
    print(f"{len(index.entries)} files indexed in {index.path}: {len(report['added'])} added, "
          f"{len(report['updated'])} changed, {len(report['unchanged'])} unchanged, "
          f"{len(report['removed'])} removed, {len(report['failed'])} failed")
    return 0


def _query_embedding(args: argparse.Namespace, bundle: ModelBundle, options: RuntimeOptions) -> np.ndarray:
    """The text query (through the prompt cache) or the ``--like`` example's embedding."""
    from streamdetect.config import EventConfig
    from streamdetect.embed.clip import clip_embedding
    from streamdetect.embed.encoder import open_audio_encoder
    from streamdetect.embed.frontend import LogMelFrontend
    from streamdetect.prompts.assemble import prompt_bank_for

    if args.like is not None:
        return clip_embedding(args.like, LogMelFrontend(bundle.frontend_params), open_audio_encoder(bundle, options))
    bank = prompt_bank_for(bundle, [EventConfig(label="q", prompts=[args.query], threshold=0.0)], None, options,
                           refined=False)
    return bank.events[0]


def cmd_search(args: argparse.Namespace) -> int:
    import json

    if (args.query is None) == (args.like is None):
        raise UsageError("give a text query or --like FILE (one of them)")
    if args.log is not None:
        return _search_log(args)
    if args.since or args.until:
        raise UsageError("--since/--until filter an embedding log: add --log DIR")
    bundle, options, index = _index(args, args.dir)
    if not index.entries:
        raise UsageError(f"no index for this model in {args.dir}; run: streamdetect index {args.dir}")
    query = _query_embedding(args, bundle, options)
    for rank, hit in enumerate(index.search(query, args.top), start=1):
        if args.json:
            print(json.dumps(hit.__dict__))
        else:
            print(f"{rank:3d}. {hit.score:.3f}  {hit.path}  (best window {hit.start_s:.1f}-{hit.end_s:.1f} s)")
    return 0


def _search_log(args: argparse.Namespace) -> int:
    import json

    from streamdetect.analysis.embedding_log import log_key, read_log, stretches
    from streamdetect.embed.encoder.base import RuntimeOptions
    from streamdetect.embed.vectors import normalize
    from streamdetect.store import parse_when

    try:
        since, until = (args.since and epoch_of(parse_when(args.since)),
                        args.until and epoch_of(parse_when(args.until)))
    except ValueError as e:
        raise UsageError(str(e)) from None
    bundle = ModelBundle.load(args.model or default_model_dir())
    try:
        logged = read_log(args.log, log_key(bundle), since or None, until or None)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    if not logged.wall.size:
        print("no logged windows in that time range", file=sys.stderr)
        return 0
    query = normalize(np.asarray(_query_embedding(args, bundle, RuntimeOptions()), np.float32))
    scores = logged.embeddings.astype(np.float32) @ query
    for rank, hit in enumerate(stretches(logged, scores, args.top, args.drop), start=1):
        if args.json:
            print(json.dumps(hit.__dict__))
        else:
            print(f"{rank:3d}. {hit.score:.3f}  {hit.stream}  {hit.start_s:.1f}-{hit.end_s:.1f} s  "
                  f"({hit.time_from} .. {hit.time_to}, {hit.windows} windows)")
    return 0
