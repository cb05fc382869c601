"""Moved: ``streamdetect export --random-weights`` builds laion/clap-htsat-unfused's architecture with RANDOM
weights and exports it (its scores mean nothing; an export of real weights is never replaced). This shim runs
that command for old habits: --out as before, --reexport is its --force. --checkpoint and --windows are ignored:
the checkpoint now goes beside --out, and ``python -m bench.bench`` times the stages.

    python tools/random_full_size.py [--out models/clap-htsat-unfused] [--reexport]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamdetect.cli import main as cli_main
from streamdetect.model.manifest import DEFAULT_MODEL_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR,
                        help="exported model (default: %(default)s, where configs/*.yaml look)")
    parser.add_argument("--reexport", action="store_true", help="replace a random export already in --out")
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    print("tools/random_full_size.py: now `streamdetect export --random-weights`", file=sys.stderr)
    return cli_main(["export", "--random-weights", "--out", str(args.out), *(["--force"] if args.reexport else [])])


if __name__ == "__main__":
    raise SystemExit(main())
