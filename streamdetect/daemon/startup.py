"""What the daemon checks before any audio is opened: every path it will write, and the control API token.

A sqlite file that is read-only, a jsonl file in a folder the service user cannot write, a spool folder that
cannot be created: each used to be a traceback from deep inside a sink's constructor. Here they are all found
at once, one line each naming the config key, the path and the user.
"""

from __future__ import annotations

from pathlib import Path

from streamdetect.config import Config
from streamdetect.util.writable import OutputPath, output_problems


class StartupError(RuntimeError):
    """The daemon cannot start as configured; one line per problem."""


def config_outputs(config: Config) -> list[OutputPath]:
    """Every file and folder the configured sinks and the embedding log will write."""
    from streamdetect.sinks import SINKS

    outputs = []
    for i, entry in enumerate(config.sinks):
        cls = SINKS.get(entry.type)
        for out in cls.outputs(entry.options):
            outputs.append(OutputPath(f"sinks[{i}].{out.key}", out.path, out.kind, out.what))
    if config.embedding_log.dir is not None:
        outputs.append(OutputPath("embedding_log.dir", Path(config.embedding_log.dir), "dir", "embedding log folder"))
    return outputs


def check_outputs(config: Config) -> None:
    """Raise ``StartupError`` listing every output path this process cannot write."""
    problems = output_problems(config_outputs(config))
    if problems:
        raise StartupError("\n".join(problems))
