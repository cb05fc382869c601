"""Paths written in the config, expanded without surprises.

``Path("~nosuchuser/a.wav").expanduser()`` raises ``RuntimeError`` and a 5,000-character name raises
``OSError`` from ``is_file()``; inside a pydantic validator either would escape validation as a traceback
instead of a key-path error. Every config path goes through here, so each such case is a ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

from streamdetect.util.files import file_problem


def expand_path(text: str, base_dir: str | Path | None = None) -> Path:
    """``~`` and ``~user`` expanded; a relative path taken from ``base_dir`` (the config file's folder) if given.
    Raises ``ValueError`` saying what is wrong with the text."""
    if "\x00" in text:
        raise ValueError("a path must not contain a NUL character")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        user = text[1:].split("/", 1)[0]
        raise ValueError(f"cannot expand {text!r}: " + (f"there is no user {user!r}" if user else
                                                        "the home directory is unknown (HOME is unset)")) from None
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def existing_file(text: str, base_dir: str | Path | None, what: str, hint: str = "") -> Path:
    """``expand_path`` that must name an existing file; ``what`` names it in the message, ``hint`` ends it."""
    path = expand_path(text, base_dir)
    if (problem := file_problem(path)) is not None:
        raise ValueError(f"{what} {str(path)[:200]!r} {problem}{hint}")
    return path
