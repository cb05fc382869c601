"""The one editor of the user's YAML file: the settings page's changes and ``calibrate``'s thresholds are written
with the file's comments, key order, quoting and list indentation kept.

ruamel.yaml's round-trip mode keeps comments, key order and quoting; block lists keep the file's indentation (as
ruamel guesses it), or are written as configs/*.yaml and the docs write them (``  - label: dog``) in a file that
has none yet; mappings are written with 2 spaces. Only the values that changed are touched, so a diff of the file
shows exactly what was edited. Files are replaced atomically.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

from streamdetect.util.files import atomic_write

REMOVE = object()  # as a value in the new data: take this key out of the file


def _written(value: Any) -> Any:
    """``value`` as it goes into the file where nothing was before (``REMOVE`` keys dropped)."""
    if isinstance(value, dict):
        return {k: _written(v) for k, v in value.items() if v is not REMOVE}
    return [_written(v) for v in value] if isinstance(value, list) else value


def _merge_map(node: CommentedMap, new: dict[str, Any], managed: set[str] | None) -> None:
    for key, value in new.items():
        if value is REMOVE:
            node.pop(key, None)
        elif key in node and isinstance(node[key], CommentedMap) and isinstance(value, dict):
            _merge_map(node[key], value, None)
        elif key in node and isinstance(node[key], CommentedSeq) and isinstance(value, list):
            _merge_seq(node[key], value, None)
        elif key not in node or node[key] != value:
            node[key] = _written(value)
    if managed is not None:  # a managed key the form left out went back to its default
        for key in [k for k in node if k in managed and k not in new]:
            del node[key]


def _merge_seq(node: CommentedSeq, new: list[Any], managed: set[str] | None) -> None:
    """Entries with a ``label`` are matched by label (an event removed from the middle must not hand its
    examples or comments to the next one); other entries by position."""
    if all(isinstance(v, dict) and "label" in v for v in new) and all(isinstance(n, CommentedMap) for n in node):
        by_label = {n.get("label"): n for n in node}
        merged = []
        for value in new:
            entry = by_label.get(value["label"])
            if entry is None:
                entry = CommentedMap()
            _merge_map(entry, value, managed)
            merged.append(entry)
        node[:] = merged
        return
    for i, value in enumerate(new):
        if i < len(node) and isinstance(node[i], CommentedMap) and isinstance(value, dict):
            _merge_map(node[i], value, managed)
        elif i >= len(node):
            node.append(_written(value))
        elif node[i] != value:
            node[i] = _written(value)
    del node[len(new):]


def edit_yaml(text: str, change: Callable[[CommentedMap], None], where: str | Path) -> str:
    """``text`` with ``change`` applied to its round-trip document, dumped in the file's own layout."""
    yaml = YAML()
    yaml.preserve_quotes = True
    # ruamel keeps comments but writes block lists in its own indentation; keep the file's ("  - label: dog")
    _, sequence, offset = load_yaml_guess_indent(text)
    if sequence is not None and offset is not None and sequence >= offset + 2:
        yaml.indent(mapping=2, sequence=sequence, offset=offset)
    else:
        yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(text)
    if not isinstance(doc, CommentedMap):
        raise ValueError(f"{where}: the top level is not a mapping")
    change(doc)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def update_yaml(path: Path, sections: dict[str, Any], managed: dict[str, set[str]]) -> None:
    """Set top-level ``sections`` (plain data) in the YAML file at ``path``; ``managed[section]`` names the keys
    of each list entry (or mapping) the caller owns: those missing from the new data are removed."""

    def change(doc: CommentedMap) -> None:
        for section, value in sections.items():
            keys = managed.get(section)
            if section in doc and isinstance(doc[section], CommentedSeq) and isinstance(value, list):
                _merge_seq(doc[section], value, keys)
            elif section in doc and isinstance(doc[section], CommentedMap) and isinstance(value, dict):
                _merge_map(doc[section], value, keys)
            elif value or section in doc:
                doc[section] = _written(value)

    atomic_write(path, edit_yaml(Path(path).read_text(encoding="utf-8"), change, path))


CALIBRATED = "# calibrated by streamdetect"


def write_thresholds(config: Path, out: Path, thresholds: dict[str, float], note: str) -> None:
    """``calibrate``'s output: a copy of ``config`` with each event's threshold set and ``note`` as a comment
    at the top (a re-calibration replaces the old note)."""
    source = Path(config).read_text(encoding="utf-8")
    if source.startswith(CALIBRATED):
        source = source.split("\n", 1)[1] if "\n" in source else ""

    def change(doc: CommentedMap) -> None:
        for event in doc.get("events") or []:
            if isinstance(event, CommentedMap) and event.get("label") in thresholds:
                event["threshold"] = round(float(thresholds[event["label"]]), 6)

    atomic_write(out, f"# {note}\n" + edit_yaml(source, change, config))
